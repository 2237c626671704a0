"""Ingest through the real openai SDK against the fake server: what is paid for is never paid twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import OPENAI_TEST_KEY
from tests.openai_server import FakeOpenAI

KEY = OPENAI_TEST_KEY


def _env(fake_openai: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": KEY,
        "RAG_EMBED_BATCH_SIZE": "4",
        "RAG_EMBED_CONCURRENCY": "2",
        "RAG_OPENAI_MAX_RETRIES": "0",
        # Named, so that the counts below hold no request of auto's check that the server embeds.
        "RAG_EMBEDDER": "openai",
        **extra,
    }


def _folder(root: Path, n: int = 30) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"note{i:02d}.md").write_text(
            f"# Note {i}\n\nItem {i} is stored on shelf {i % 7} in aisle {i * 3}. It was catalogued in {1900 + i}.\n",
            encoding="utf-8",
        )
    # Two identical files: their text must be embedded once.
    (root / "copy-a.txt").write_text("The same paragraph appears in two files.\n", encoding="utf-8")
    (root / "copy-b.txt").write_text("The same paragraph appears in two files.\n", encoding="utf-8")
    return root


def _embedded(fake_openai: FakeOpenAI, since: int = 0) -> list[str]:
    """Texts the server answered with vectors (successful requests only)."""
    done = [r for r in fake_openai.requests_to("/embeddings")[since:] if r.status == 200]
    return [text for r in done for text in r.body["input"]]


def _rag(fake_openai: FakeOpenAI, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=_env(fake_openai, **env), timeout=120
    )


def _cached(home: Path, text: str) -> bool:
    import sqlite3

    from rag.store.cache import text_key

    with sqlite3.connect(home / "cache" / "embeddings.db") as db:
        return db.execute("SELECT 1 FROM vectors WHERE key = ?", (text_key(text),)).fetchone() is not None


def _all_cached(home: Path, texts: list[str]) -> bool:
    """True once every text is in the embedding cache (False while the cache is not there yet)."""
    import sqlite3

    if not (home / "cache" / "embeddings.db").exists():
        return False
    try:
        return all(_cached(home, text) for text in texts)
    except sqlite3.OperationalError:  # the table is being created
        return False


def test_killed_ingest_rerun_pays_for_nothing_already_stored(
    fake_openai: FakeOpenAI, tmp_path: Path, isolated: Path
) -> None:
    folder = _folder(tmp_path / "notes")
    held = fake_openai.gate_requests("/embeddings", after=3)  # three batches answered, then held
    process = subprocess.Popen(
        [sys.executable, "-m", "rag", "ingest", str(folder)],
        env=_env(fake_openai),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert held.wait_for(2), "the ingest never got going"  # both request slots held
    paid = _embedded(fake_openai)
    assert len(paid) == 12
    # Each answered batch is written to the cache as it arrives: wait for the writes, then kill.
    deadline = time.monotonic() + 120
    while not _all_cached(isolated, paid):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "answered batches were never stored"
        time.sleep(0.02)
    process.kill()
    process.wait()
    stored = paid
    held.open()

    before = len(fake_openai.requests_to("/embeddings"))
    result = _rag(fake_openai, "ingest", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    again = _embedded(fake_openai, since=before)
    assert not set(again) & set(stored), "texts stored before the kill were requested again"
    assert len(again) == len(set(again)), "a text was embedded twice"
    assert report["files"]["added"] == 32 and report["from_cache"] >= len(stored)
    # Usage and cost are what the server reported for this run's requests.
    reported = [r.usage["prompt_tokens"] for r in fake_openai.requests_to("/embeddings")[before:] if r.usage]
    assert report["usage"]["prompt_tokens"] == sum(reported)
    assert report["usage"]["requests"] == len(reported)
    assert report["usage"]["cost_usd"] == pytest.approx(sum(reported) * 0.02 / 1e6)
    assert report["embedder"] == "openai:text-embedding-3-small"

    status = json.loads(_rag(fake_openai, "status", "--json").stdout)
    (usage,) = status["indexes"][0]["usage"]
    assert (usage["kind"], usage["model"], usage["prompt_tokens"]) == (
        "embedding",
        "text-embedding-3-small",
        sum(reported),
    )
    for output in (result.stdout, result.stderr):
        assert KEY not in output and "0123456789" not in output


def test_a_failing_api_stops_with_one_line_and_keeps_what_was_stored(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "notes")
    fake_openai.error_next(1000, 500, message="upstream is down")
    failed = _rag(fake_openai, "ingest", str(folder))
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "500" in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr and KEY not in failed.stderr

    fake_openai.error_next(0, 500)  # recovered
    with fake_openai._lock:
        fake_openai._faults.clear()
    ok = _rag(fake_openai, "ingest", str(folder), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["files"]["added"] == 32


def test_search_and_ask_use_the_index_embedder_and_the_chat_model(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "notes", n=5)
    assert _rag(fake_openai, "ingest", str(folder)).returncode == 0

    def embedding_requests() -> int:
        rows = json.loads(_rag(fake_openai, "status", "--json").stdout)["indexes"][0]["usage"]
        return sum(row["requests"] for row in rows if row["kind"] == "embedding")

    ingested = embedding_requests()
    assert _rag(fake_openai, "search", "shelf 3").returncode == 0
    assert embedding_requests() == ingested + 1  # the query's embedding is paid for too
    fake_openai.reply("Item 3 is on shelf 3 [1].")
    result = _rag(fake_openai, "ask", "Where is item 3 stored?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "gpt-4o-mini" and answer["citations"] and not answer["refused"]
    assert answer["usage"]["prompt_tokens"] > 0 and answer["usage"]["cost_usd"] > 0
    assert answer["usage"]["requests"] == 2  # the chat completion and the question's embedding
    assert embedding_requests() == ingested + 2
    query = fake_openai.requests_to("/embeddings")[-1].body
    assert query["model"] == "text-embedding-3-small" and query["input"] == ["Where is item 3 stored?"]
    # The answer's tokens are added to the index's totals.
    kinds = {row["kind"] for row in json.loads(_rag(fake_openai, "status", "--json").stdout)["indexes"][0]["usage"]}
    assert kinds == {"embedding", "chat"}
