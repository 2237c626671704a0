"""Several machines (several RAG_HOMEs) writing and reading one index on a real `chroma run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import Engine
from rag.embed import factory
from rag.errors import IndexLockedError
from rag.store.remote import Lease
from tests.chroma_server import chroma_run
from tests.conftest import Cli, HashEmbedder, rag_on_terminal
from tests.helpers import wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

_WRITER = """
import os, sys, time
sys.path.insert(0, {root!r})
from tests.helpers import register_slow
from rag import Engine

def hold(batches):
    # Holding the lease (an ingest embeds under it) until the test creates this file.
    while os.environ.get("HOLD_UNTIL") and not os.path.exists(os.environ["HOLD_UNTIL"]):
        time.sleep(0.01)
    time.sleep(float(os.environ.get("EMBED_DELAY", "0.02")))

register_slow(hold)

# Freeze at a chosen point so the test can kill -9 there (it waits for "STALLED").
def stall(*args, **kwargs):
    print("STALLED", flush=True)
    time.sleep(600)

if os.environ.get("KILL_AT") == "before-commit":  # vectors written, generation not committed
    from rag.store.index import Index
    Index.commit_files = stall
elif os.environ.get("KILL_AT") == "after-server-commit":  # generation committed, this machine not told
    from rag.store.manifest import Manifest
    Manifest.commit_files = stall
engine = Engine(index="team", embedding__embedder="slow", store__chroma_url=sys.argv[2])
report = engine.ingest([sys.argv[1]])
print("DONE", report.chunks_total, flush=True)
"""


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_run(tmp_path_factory.mktemp("chroma-shared")) as url:
        yield url


@pytest.fixture
def fresh_index(chroma_server: str) -> Iterator[str]:
    """Each test starts without the shared index."""
    import chromadb

    host, port = chroma_server.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    for collection in client.list_collections():
        client.delete_collection(collection.name)
    yield chroma_server


def _client(url: str) -> object:
    import chromadb

    host, port = url.removeprefix("http://").split(":")
    return chromadb.HttpClient(host=host, port=int(port))


def _folder(root: Path, tag: str, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = " ".join(f"{tag}{i} sentence {j} mentions {tag}word{i} and thing{j}." for j in range(10))
        (root / f"{tag}{i:03d}.txt").write_text(body + "\n", encoding="utf-8")
    return root


def _writer(
    folder: Path,
    url: str,
    home: Path,
    *,
    delay: float = 0.02,
    ttl: float = 60,
    kill_at: str = "",
    hold_until: Path | None = None,
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KILL_AT": kill_at,
        "HOLD_UNTIL": str(hold_until or ""),
        "RAG_HOME": str(home),
        "EMBED_DELAY": str(delay),
        "RAG_LOCK_TIMEOUT": "120",
        "RAG_LEASE_TTL": str(ttl),
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER.format(root=str(ROOT))), str(folder), url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _server_ids(url: str) -> set[str]:
    collection = _client(url).get_collection("rag-team")  # type: ignore[attr-defined]
    return set(collection.get(include=[])["ids"])


@pytest.fixture(autouse=True)
def fast_machines() -> Iterator[None]:
    """Machines (``_machine``) in this process read the writers' vectors under their "slow" name, without the delay."""
    with factory.register("slow", lambda model, settings: HashEmbedder(provider="slow")):
        yield


def _machine(url: str, home: Path, monkeypatch: pytest.MonkeyPatch, lock_timeout: float = 10) -> Engine:
    """A machine that reads (and writes) the writers' index: same vectors, under their "slow" name."""
    monkeypatch.setenv("RAG_HOME", str(home))
    return Engine(index="team", embedding__embedder="slow", store__chroma_url=url, store__lock_timeout=lock_timeout)


def _check_machine(engine: Engine, server_ids: set[str], tags: dict[str, int]) -> None:
    """The machine's cache holds exactly the server's chunks, each findable both ways."""
    index = engine.open_index()
    assert index.live_ids() == server_ids
    assert index.keyword_ids() == server_ids
    for tag, n in tags.items():
        for i in range(n):
            word = f"{tag}word{i}"
            hits = engine.search(word, k=3, mode="keyword")
            assert hits and hits[0].source.endswith(f"{tag}{i:03d}.txt"), word
    for batch in index.iter_chunks():
        for chunk in batch:
            dense = engine.search(chunk.text, k=3, mode="dense")
            assert chunk.id in [h.chunk_id for h in dense], chunk.path


def test_two_machines_writing_at_once_end_with_exactly_the_union(
    fresh_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_index
    alpha, beta = _folder(tmp_path / "alpha", "alpha", 12), _folder(tmp_path / "beta", "beta", 12)
    go = tmp_path / "go"
    first = _writer(alpha, url, tmp_path / "machine-a", hold_until=go)
    # The second starts while the first holds the lease (the first waits for ``go`` under
    # it, so this cannot miss a short ingest), and the two really overlap.
    wait_for(lambda: Lease(_client(url), "team", ttl=1).holder() is not None, "the first writer's lease", timeout=120)
    second = _writer(beta, url, tmp_path / "machine-b")
    go.touch()
    out_a, err_a = first.communicate(timeout=300)
    out_b, err_b = second.communicate(timeout=300)
    assert first.returncode == 0, err_a
    assert second.returncode == 0, err_b

    ids = _server_ids(url)
    assert int(out_a.split()[-1]) < int(out_b.split()[-1]) == len(ids)  # the later writer saw the union
    for home in ("machine-a", "machine-b"):
        engine = _machine(url, tmp_path / home, monkeypatch)
        assert engine.open_index().file_count() == 24
        _check_machine(engine, ids, {"alpha": 12, "beta": 12})


@pytest.mark.parametrize("kill_at", ["before-commit", "after-server-commit"])
def test_a_writer_killed_holding_the_lease_is_taken_over_after_the_ttl(
    fresh_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_at: str
) -> None:
    url = fresh_index
    alpha, beta = _folder(tmp_path / "alpha", "alpha", 30), _folder(tmp_path / "beta", "beta", 5)
    doomed = _writer(alpha, url, tmp_path / "machine-a", ttl=5, kill_at=kill_at)
    assert doomed.stdout is not None
    line = doomed.stdout.readline()
    assert line.strip() == "STALLED", doomed.communicate()[1]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    lease = Lease(_client(url), "team", ttl=1).current()
    assert lease is not None and not lease.released and f"pid {doomed.pid}" in lease.owner
    orphans = _server_ids(url)
    assert orphans  # the dead writer's vectors are on the server

    # An impatient writer is told who holds the index; a patient one waits out the TTL.
    try:
        report = _machine(url, tmp_path / "machine-b", monkeypatch, lock_timeout=0).ingest([beta])
    except IndexLockedError as exc:
        assert f"pid {doomed.pid}" in str(exc)
        report = _machine(url, tmp_path / "machine-b", monkeypatch, lock_timeout=60).ingest([beta])
    assert time.time() >= lease.expires
    assert report.added == 5 and report.failed == []
    ids = _server_ids(url)
    if kill_at == "before-commit":
        assert not ids & orphans  # never committed: swept from the server
        expected = {"beta": 5}
    else:
        assert orphans <= ids  # committed: kept, and machine B has them
        expected = {"alpha": 30, "beta": 5}
    _check_machine(_machine(url, tmp_path / "machine-b", monkeypatch), ids, expected)

    # The killed machine's next run settles its own leftovers and finishes its folder.
    engine_a = _machine(url, tmp_path / "machine-a", monkeypatch)
    again = engine_a.ingest([alpha])
    assert again.added + again.unchanged == 30
    ids = _server_ids(url)
    _check_machine(engine_a, ids, {"alpha": 30, "beta": 5})
    _check_machine(_machine(url, tmp_path / "machine-b", monkeypatch), ids, {"alpha": 30, "beta": 5})


def test_a_reader_catches_up_over_three_generations_without_a_rebuild(
    fresh_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    url = fresh_index
    folder = _folder(tmp_path / "docs", "gamma", 6)
    writer = _machine(url, tmp_path / "writer", monkeypatch)
    writer.ingest([folder])
    reader = _machine(url, tmp_path / "reader", monkeypatch)
    first = reader.open_index().last_sync
    assert first is not None and first.rebuilt and first.fetched == len(_server_ids(url))
    seen = first.generation

    # Three ingests on the writer: a file added, a file changed, a file deleted.
    monkeypatch.setenv("RAG_HOME", str(tmp_path / "writer"))
    _folder(tmp_path / "extra", "delta", 1)
    (tmp_path / "extra" / "delta000.txt").rename(folder / "delta000.txt")
    added = writer.ingest([folder]).chunks_added
    (folder / "gamma001.txt").write_text("gamma1 was rewritten about zeppelins.\n", encoding="utf-8")
    changed = writer.ingest([folder]).chunks_added
    (folder / "gamma002.txt").unlink()
    assert writer.ingest([folder]).removed == 1

    # Before it looks again, the reader's cache is three generations behind, and says so.
    stale = reader.open_index().server_status()
    assert stale is not None and stale["behind"] == 3 and stale["lease_holder"] is None
    assert stale["server"] == url and stale["generation"] == seen + 3

    reader = _machine(url, tmp_path / "reader", monkeypatch)
    sync = reader.open_index().last_sync
    assert sync is not None and not sync.rebuilt
    assert sync.generation >= seen + 3
    assert sync.fetched == added + changed  # only what changed crossed the network
    ids = _server_ids(url)
    assert reader.open_index().live_ids() == ids == reader.open_index().keyword_ids()
    assert reader.search("zeppelins", k=1, mode="keyword")[0].source.endswith("gamma001.txt")
    assert reader.search("deltaword0", k=1, mode="keyword")[0].source.endswith("delta000.txt")
    assert not [h for h in reader.search("gammaword2", k=5, mode="keyword") if h.source.endswith("gamma002.txt")]

    monkeypatch.setenv("RAG_CHROMA_URL", url)
    code, out, _ = cli("status", "--json")
    assert code == 0
    (info,) = json.loads(out)["indexes"]
    assert info["server"] == {**stale, "cache_generation": seen + 3, "behind": 0}
    code, out, _ = cli("status")
    assert f"server {url}  generation {seen + 3}  this machine's cache: up to date  no writer" in out


def test_a_new_machine_shows_a_bar_while_it_caches_the_index_and_none_when_piped(
    fresh_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pexpect = pytest.importorskip("pexpect")
    _machine(fresh_index, tmp_path / "writer", monkeypatch).ingest([_folder(tmp_path / "docs", "eta", 40)])
    env = {**os.environ, "RAG_CHROMA_URL": fresh_index, "COLUMNS": "120"}

    piped = subprocess.run(
        [sys.executable, "-m", "rag", "status"],
        env={**env, "RAG_HOME": str(tmp_path / "piped")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert "caching from server" not in piped.stdout + piped.stderr and "40 files" in piped.stdout

    child = rag_on_terminal(
        "status",
        env={**env, "RAG_HOME": str(tmp_path / "terminal")},
        timeout=120,
    )
    child.expect("caching from server")  # drawn only on a terminal
    child.expect("40 files")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
