"""An index whose vectors live on a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import Engine
from rag.errors import StoreError
from tests.chroma_server import chroma_run, free_port

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_run(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


def test_ingest_and_search_against_a_chroma_server(chroma_server: str, docs: Path, isolated: Path) -> None:
    engine = Engine(index="shared", embedding__embedder="hash", store__chroma_url=chroma_server)
    report = engine.ingest([docs])
    assert report.added == 3 and report.failed == []
    hits = engine.search("Etna volcano eruptions", k=2)
    assert hits and hits[0].source.endswith("volcanoes.txt")
    # Nothing went to a local Chroma: the vectors are on the server.
    assert not (isolated / "chroma").exists()
    import chromadb

    host, port = chroma_server.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    assert client.get_collection("rag-shared").count() == report.chunks_total

    again = engine.ingest([docs])
    assert again.unchanged == 3 and again.embedded == 0


def test_a_second_machine_sees_the_same_index(
    chroma_server: str, docs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Engine(index="team", embedding__embedder="hash", store__chroma_url=chroma_server)
    first.ingest([docs])
    # Another RAG_HOME stands for another machine with its own local state.
    monkeypatch.setenv("RAG_HOME", str(tmp_path / "other-machine"))
    second = Engine(index="team", store__chroma_url=chroma_server)
    hits = second.search("honey bees queen colony", k=1, mode="keyword")
    assert hits and hits[0].source.endswith("bees.md")
    assert second.embedder().name == "hash:v1"
    # It knows the files too, so re-ingesting the same folder changes nothing.
    assert second.ingest([docs]).unchanged == 3

    # When the first machine changes the index, the second one picks it up.
    (docs / "bees.md").write_text("# Bees\n\nBumblebees nest in the ground.\n", encoding="utf-8")
    assert first.ingest([docs]).updated == 1
    fresh = Engine(index="team", store__chroma_url=chroma_server)
    assert "Bumblebees" in fresh.search("bumblebees nest ground", k=1, mode="keyword")[0].text


def test_an_unreachable_server_is_one_clear_error(docs: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError, match=f"cannot open Chroma at {url}"):
        Engine(embedding__embedder="hash", store__chroma_url=url).ingest([docs])
