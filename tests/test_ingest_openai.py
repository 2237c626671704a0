"""Ingest through the real openai SDK against the fake server: what is paid for is never paid twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_server import FakeOpenAI, openai_server

KEY = "sk-test-secret-abcdef0123456789"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with openai_server(api_key=KEY) as server:
        yield server


def _env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": KEY,
        "RAG_EMBED_BATCH_SIZE": "4",
        "RAG_EMBED_CONCURRENCY": "2",
        "RAG_OPENAI_MAX_RETRIES": "0",
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


def _embedded(fake: FakeOpenAI, since: int = 0) -> list[str]:
    """Texts the server answered with vectors (successful requests only)."""
    done = [r for r in fake.requests_to("/embeddings")[since:] if r.status == 200]
    return [text for r in done for text in r.body["input"]]


def _rag(fake: FakeOpenAI, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=_env(fake, **env), timeout=120
    )


def _cached(home: Path, text: str) -> bool:
    import sqlite3

    from rag.store.cache import text_key

    with sqlite3.connect(home / "cache" / "embeddings.db") as db:
        return db.execute("SELECT 1 FROM vectors WHERE key = ?", (text_key(text),)).fetchone() is not None


def test_killed_ingest_rerun_pays_for_nothing_already_stored(fake: FakeOpenAI, tmp_path: Path, isolated: Path) -> None:
    folder = _folder(tmp_path / "notes")
    fake.latency = 0.3
    process = subprocess.Popen(
        [sys.executable, "-m", "rag", "ingest", str(folder)],
        env=_env(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while len(_embedded(fake)) < 12:
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the ingest never got going"
        time.sleep(0.05)
    process.kill()
    process.wait()
    paid = _embedded(fake)
    assert len(paid) < 31, "the ingest finished before it could be killed"
    # A response the killed process received but had not yet written is lost with it; at
    # most the requests in flight (2 x 4 texts).  Everything it stored must not be paid again.
    stored = [text for text in paid if _cached(isolated, text)]
    assert len(stored) >= len(paid) - 8

    fake.latency = 0.0
    before = len(fake.requests_to("/embeddings"))
    result = _rag(fake, "ingest", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    again = _embedded(fake, since=before)
    assert not set(again) & set(stored), "texts stored before the kill were requested again"
    assert len(again) == len(set(again)), "a text was embedded twice"
    assert report["files"]["added"] == 32 and report["from_cache"] >= len(stored)
    # Usage and cost are what the server reported for this run's requests.
    reported = [r.usage["prompt_tokens"] for r in fake.requests_to("/embeddings")[before:] if r.usage]
    assert report["usage"]["prompt_tokens"] == sum(reported)
    assert report["usage"]["requests"] == len(reported)
    assert report["usage"]["cost_usd"] == pytest.approx(sum(reported) * 0.02 / 1e6)
    assert report["embedder"] == "openai:text-embedding-3-small"

    status = json.loads(_rag(fake, "status", "--json").stdout)
    (usage,) = status["indexes"][0]["usage"]
    assert (usage["kind"], usage["model"], usage["prompt_tokens"]) == (
        "embedding",
        "text-embedding-3-small",
        sum(reported),
    )
    for output in (result.stdout, result.stderr):
        assert KEY not in output and "0123456789" not in output


def test_a_failing_api_stops_with_one_line_and_keeps_what_was_stored(fake: FakeOpenAI, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "notes")
    fake.error_next(1000, 500, message="upstream is down")
    failed = _rag(fake, "ingest", str(folder))
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "500" in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr and KEY not in failed.stderr

    fake.error_next(0, 500)  # recovered
    with fake._lock:
        fake._faults.clear()
    ok = _rag(fake, "ingest", str(folder), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["files"]["added"] == 32


def test_search_and_ask_use_the_index_embedder_and_the_chat_model(fake: FakeOpenAI, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "notes", n=5)
    assert _rag(fake, "ingest", str(folder)).returncode == 0
    fake.reply("Item 3 is on shelf 3 [1].")
    result = _rag(fake, "ask", "Where is item 3 stored?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "gpt-4o-mini" and answer["citations"] and not answer["refused"]
    assert answer["usage"]["prompt_tokens"] > 0 and answer["usage"]["cost_usd"] > 0
    query = fake.requests_to("/embeddings")[-1].body
    assert query["model"] == "text-embedding-3-small" and query["input"] == ["Where is item 3 stored?"]
    # The answer's tokens are added to the index's totals.
    kinds = {row["kind"] for row in json.loads(_rag(fake, "status", "--json").stdout)["indexes"][0]["usage"]}
    assert kinds == {"embedding", "chat"}
