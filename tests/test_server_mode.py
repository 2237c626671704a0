"""An index whose vectors live on a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import Engine
from rag.errors import StoreError

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    executable = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if executable is None:
        pytest.fail("the `chroma` command (installed with chromadb) is missing")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("w")
    process = subprocess.Popen(
        [executable, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"chroma run did not start: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


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
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(StoreError, match=f"cannot open Chroma at {url}"):
        Engine(embedding__embedder="hash", store__chroma_url=url).ingest([docs])
