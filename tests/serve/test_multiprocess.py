"""Several processes on one RAG_HOME: a running ``rag serve`` and a CLI ingest, or two servers.

Chroma's embedded client is thread-safe but not process-safe: a process keeps each
collection's vector index in memory, and another process's writes make it stale.  These
tests run real processes on one store and check that every reader sees every commit.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag import Engine
from tests.serve_process import RunningServer, rag_cli, rag_server, serve_env, sse_events, write_docs

pytestmark = [pytest.mark.slow]

MARSH = (
    "# Marsh Hollow\n\nThe Marsh Hollow spillway was rebuilt in 1987 after the spring flood "
    "undermined its old stone apron.\n\nThe reservoir behind it holds water for three villages.\n"
)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    env = serve_env(tmp_path / "home", RAG_LLM="none")
    docs = write_docs(tmp_path / "docs")
    done = rag_cli(env, "ingest", str(docs))
    assert done.returncode == 0, done.stderr
    yield env, tmp_path


def _search(server: RunningServer, query: str, mode: str, k: int = 5) -> list[str]:
    with server.client() as client:
        reply = client.post("/api/v1/search", json={"query": query, "k": k, "mode": mode})
    assert reply.status_code == 200, reply.text
    return [hit["source"] for hit in reply.json()["results"]]


def _found(server: RunningServer, query: str, mode: str, name: str) -> bool:
    """Whether the file called ``name`` is among the hits (sources may be relative to their folder)."""
    return any(Path(source).name == name for source in _search(server, query, mode))


def _ask(server: RunningServer, question: str) -> dict[str, object]:
    with server.client() as client:
        reply = client.post("/api/v1/ask", json={"question": question})
    assert reply.status_code == 200, reply.text
    data: dict[str, object] = reply.json()
    return data


def test_a_server_sees_a_cli_ingest_into_its_index_at_the_next_request(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    marsh = tmp / "marsh-report.md"
    marsh.write_text(MARSH, encoding="utf-8")
    with rag_server(env) as server:
        # The server has read the index before the other process writes it.
        assert _search(server, "volcanoes in Europe", "hybrid")
        _ask(server, "Which volcano is active in Sicily?")
        done = rag_cli(env, "ingest", str(marsh))
        assert done.returncode == 0, done.stderr
        for mode in ("dense", "keyword", "hybrid"):
            assert _found(server, "When was the Marsh Hollow spillway rebuilt?", mode, "marsh-report.md"), mode
        answer = _ask(server, "When was the Marsh Hollow spillway rebuilt?")
        assert "1987" in str(answer["answer"])


def test_an_upload_through_one_server_is_seen_by_another_at_its_next_request(
    home: tuple[dict[str, str], Path],
) -> None:
    env, _ = home
    with rag_server(env) as a, rag_server(env) as b:
        assert _search(a, "volcanoes in Europe", "dense")
        job = _upload(b, {"marsh-report.md": MARSH.encode()})
        assert _finished(b, job)["state"] == "done"
        for mode in ("dense", "keyword", "hybrid"):
            assert _found(a, "Marsh Hollow spillway rebuilt", mode, "marsh-report.md"), mode
        assert "1987" in str(_ask(a, "When was the Marsh Hollow spillway rebuilt?")["answer"])


def _upload(server: RunningServer, files: dict[str, bytes]) -> str:
    with server.client() as client:
        reply = client.post("/api/v1/documents", files=[("files", (n, data)) for n, data in files.items()])
    assert reply.status_code == 202, reply.text
    return str(reply.json()["job"])


def _finished(server: RunningServer, job: str) -> dict[str, Any]:
    """The job's state once it is done (its events followed to the end)."""
    deadline = time.monotonic() + 300
    with server.client() as client, client.stream("GET", f"/api/v1/jobs/{job}/events") as response:
        for name, _ in sse_events(response):
            assert time.monotonic() < deadline, "the job never ended"
            if name == "done":
                break
        status: dict[str, Any] = client.get(f"/api/v1/jobs/{job}").json()
    return status


def _long_markdown(paragraphs: int) -> bytes:
    return "\n\n".join(
        f"## Section {i}\n\nThe survey of bog number {i} counted {i * 7} herons and {i % 13} otters "
        f"along the levee, and noted that the sluice gate {i} was painted in year {1900 + i}."
        for i in range(paragraphs)
    ).encode()


def _settled(env: dict[str, str]) -> Engine:
    """The index as a new process sees it: every vector belongs to a live chunk, and each file is whole."""
    engine = Engine(store=env["RAG_HOME"])
    index = engine.open_index()
    assert index.vector_ids() == index.live_ids() == index.keyword_ids()
    for record in index.files().values():
        assert [c.position for c in index.chunks_of(record.path)] == list(range(record.chunk_count))
    return engine


@pytest.mark.parametrize("at", ["first-embedded", "loaded"])
def test_a_server_killed_mid_upload_resumes_the_job_at_its_next_start(
    home: tuple[dict[str, str], Path], at: str
) -> None:
    env, _ = home
    big = _long_markdown(900)
    with rag_server(env) as server:
        job = _upload(server, {"bog-survey.md": big})
        with server.client() as client, client.stream("GET", f"/api/v1/jobs/{job}/events") as response:
            for name, data in sse_events(response):
                if (at == "loaded" and name == "loaded") or (at == "first-embedded" and name == "embedded"):
                    assert name != "embedded" or data["n"] < data["total"]  # mid-way
                    server.process.send_signal(signal.SIGKILL)
                    break
        server.process.wait(timeout=30)
    with rag_server(env) as server:
        status = _finished(server, job)
        assert status["state"] == "done" and status["resumed"] is True
        assert [f["state"] for f in status["files"]] == ["stored"]
        assert _found(server, "bog number 451 herons otters sluice gate", "keyword", "bog-survey.md")
    engine = _settled(env)
    try:
        (doc,) = [d for d in engine.documents() if d.source.endswith("bog-survey.md")]
        assert doc.chunks > 512
    finally:
        engine.close()


def test_an_upload_queued_at_shutdown_runs_at_the_next_start(home: tuple[dict[str, str], Path]) -> None:
    env, _ = home
    with rag_server(env) as server:
        first = _upload(server, {"bog-survey.md": _long_markdown(300)})
        second = _upload(server, {"marsh-report.md": MARSH.encode()})
        server.process.send_signal(signal.SIGINT)  # Ctrl-C while the first runs and the second waits
        server.process.wait(timeout=60)
    record = json.loads((Path(env["RAG_HOME"]) / "jobs" / f"{second}.json").read_text())
    assert record["state"] == "running"
    with rag_server(env) as server:
        assert _finished(server, first)["state"] == "done"
        status = _finished(server, second)
        assert status["state"] == "done" and [f["state"] for f in status["files"]] == ["stored"]
        assert _found(server, "Marsh Hollow spillway", "keyword", "marsh-report.md")


def test_a_lone_server_removes_staged_uploads_no_job_knows_and_ingests_stray_files(
    home: tuple[dict[str, str], Path],
) -> None:
    env, _ = home
    uploads = Path(env["RAG_HOME"]) / "uploads" / "default"
    (uploads / ".incoming" / "0123456789abcdef").mkdir(parents=True)
    (uploads / ".incoming" / "0123456789abcdef" / "half.md").write_text("cut off mid-upload", encoding="utf-8")
    (uploads / "marsh-report.md").write_text(MARSH, encoding="utf-8")  # moved into place, never indexed
    with rag_server(env) as server:
        with server.client() as client:
            for _ in range(600):
                names = [d["name"] for d in client.get("/api/v1/documents").json()["documents"]]
                if "marsh-report.md" in names:
                    break
                time.sleep(0.1)
        assert "marsh-report.md" in names
        # A file that cannot be indexed is reported failed, and not kept unlisted.
        job = _upload(server, {"broken.pdf": b"not a PDF"})
        assert [f["state"] for f in _finished(server, job)["files"]] == ["failed"]
    assert not any((uploads / ".incoming").iterdir())
    assert sorted(p.name for p in uploads.iterdir() if p.is_file()) == ["marsh-report.md"]


def test_a_server_follows_a_cli_repair_and_drop_of_its_index(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    marsh = tmp / "marsh-report.md"
    marsh.write_text(MARSH, encoding="utf-8")
    with rag_server(env) as server:
        assert _search(server, "volcanoes in Europe", "hybrid")
        # The manifest is rebuilt (a new file), then written by an ingest: the server must
        # read the new file, not the one it opened.
        for args in (("repair",), ("ingest", str(marsh))):
            done = rag_cli(env, *args)
            assert done.returncode == 0, done.stderr
        for mode in ("dense", "keyword"):
            assert _found(server, "When was the Marsh Hollow spillway rebuilt?", mode, "marsh-report.md"), mode
        done = rag_cli(env, "drop", "default", "--yes")
        assert done.returncode == 0, done.stderr
        with server.client() as client:
            reply = client.post("/api/v1/search", json={"query": "volcanoes", "k": 5})
            assert reply.status_code == 404, reply.text
            assert "no index 'default'" in reply.json()["error"]


def test_a_job_of_one_server_can_be_followed_to_its_end_through_another(home: tuple[dict[str, str], Path]) -> None:
    env, _ = home
    with rag_server(env, "--heartbeat", "0.5") as a, rag_server(env) as b:
        job = _upload(b, {"bog-survey.md": _long_markdown(300)})
        status = _finished(a, job)  # A reads the job from disk, and sees it end
        assert status["state"] == "done" and [f["state"] for f in status["files"]] == ["stored"]
        assert _found(a, "bog number 251 herons otters sluice gate", "keyword", "bog-survey.md")
