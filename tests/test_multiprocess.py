"""Several processes on one RAG_HOME: a running ``rag serve`` and a CLI ingest, or two servers.

Chroma's embedded client is thread-safe but not process-safe: a process keeps each
collection's vector index in memory, and another process's writes make it stale.  These
tests run real processes on one store and check that every reader sees every commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve_process import RunningServer, rag_cli, rag_server, serve_env, write_docs

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
            assert str(marsh) in _search(server, "When was the Marsh Hollow spillway rebuilt?", mode), mode
        answer = _ask(server, "When was the Marsh Hollow spillway rebuilt?")
        assert "1987" in str(answer["answer"])
