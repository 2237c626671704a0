"""The writer lease and the change log on a real `chroma run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.errors import IndexLockedError
from rag.store.remote import ChangeLog, Lease, LeaseLostError
from tests.chroma_server import chroma_run
from tests.helpers import wait_for

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with chroma_run(tmp_path_factory.mktemp("chroma-remote")) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


@pytest.fixture
def client(chroma_server: tuple[str, int]) -> object:
    import chromadb

    return chromadb.HttpClient(host=chroma_server[0], port=chroma_server[1])


def test_one_writer_at_a_time_and_the_second_is_told_who(client: object) -> None:
    first = Lease(client, "one", ttl=30, owner="machine-a pid 1")
    second = Lease(client, "one", ttl=30, owner="machine-b pid 2")
    first.acquire(timeout=0)
    with pytest.raises(IndexLockedError, match=r"being written by machine-a pid 1 \(lease expires in \d+ s\)"):
        second.acquire(timeout=0.5)
    assert second.holder() is not None and "machine-a" in str(second.holder())
    first.release()
    second.acquire(timeout=0)
    assert second.epoch == 2 and first.holder() and "machine-b" in str(first.holder())
    second.release()
    assert Lease(client, "one", ttl=30).holder() is None


def test_the_lease_is_renewed_while_held(client: object) -> None:
    lease = Lease(client, "renewed", ttl=0.6)
    lease.acquire(timeout=0)
    first = lease.current()
    assert first is not None
    wait_for(lambda: (lease.current() or first).expires > first.expires + 0.5, "two renewals")
    with pytest.raises(IndexLockedError):
        Lease(client, "renewed", ttl=0.6).acquire(timeout=0)
    lease.check()
    lease.release()


def test_a_stalled_writer_loses_the_lease_and_knows_it(client: object) -> None:
    stalled = Lease(client, "stalled", ttl=0.5, owner="stalled pid 1")
    stalled.acquire(timeout=0)
    stalled._stop.set()  # stands for a process frozen past its TTL
    assert stalled._thread is not None
    stalled._thread.join()
    taker = Lease(client, "stalled", ttl=30, owner="taker pid 2")
    taker.acquire(timeout=60)
    with pytest.raises(LeaseLostError, match="taker pid 2 took it over"):
        stalled.check()
    stalled.release()  # does not release the taker's lease
    assert "taker" in str(taker.holder())
    taker.release()


def test_a_killed_writers_lease_expires_and_the_next_one_proceeds(
    client: object, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    code = (
        "import chromadb, sys, time; from rag.store.remote import Lease;"
        f"c = chromadb.HttpClient(host='{host}', port={port});"
        "l = Lease(c, 'killed', ttl=1.5, owner='doomed pid 0'); l.acquire(timeout=0);"
        "print('held', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        waiter = Lease(client, "killed", ttl=30, owner="survivor pid 3")
        dead = waiter.current()
        assert dead is not None and dead.owner == "doomed pid 0" and not dead.released
        with pytest.raises(IndexLockedError, match="doomed pid 0"):
            waiter.acquire(timeout=0)
        waiter.acquire(timeout=60)
        assert time.time() >= dead.expires and waiter.epoch == dead.epoch + 1
        waiter.release()
    finally:
        child.kill()
        child.wait()


def test_the_change_log_gives_net_changes_since_a_generation(client: object) -> None:
    log = ChangeLog(client, "logged")
    assert log.state() == (0, 0)
    log.commit(1, added=["a", "b", "c"], removed=[])
    log.commit(2, added=["d"], removed=["b"])
    log.commit(3, added=["b2"], removed=["d", "x"])
    everything = log.changes(0)
    assert everything is not None and everything.head == 3 and everything.records == 3
    assert sorted(everything.added) == ["a", "b2", "c"] and sorted(everything.removed) == ["b", "d", "x"]
    later = log.changes(1)
    assert later is not None and later.records == 2
    assert sorted(later.added) == ["b2"] and sorted(later.removed) == ["b", "d", "x"]
    up_to_date = log.changes(3)
    assert up_to_date is not None and up_to_date.records == 0 and not up_to_date.added
    with pytest.raises(Exception, match="generation 5 on head 3"):
        log.commit(5, added=["y"], removed=[])
    assert log.removed_at(3) == ["d", "x"]


def test_big_generations_are_split_and_old_ones_trimmed(client: object) -> None:
    log = ChangeLog(client, "trimmed")
    log.keep = 2
    many = [f"id{i}" for i in range(12_000)]
    log.commit(1, added=many, removed=[])
    got = log.changes(0)
    assert got is not None and got.records == 3 and sorted(got.added) == sorted(many)
    for generation in range(2, 6):
        log.commit(generation, added=[f"g{generation}"], removed=[])
    head, trimmed = log.state()
    assert head == 5 and trimmed == 3
    assert log.changes(2) is None  # the log no longer reaches back there: rebuild
    tail = log.changes(3)
    assert tail is not None and sorted(tail.added) == ["g4", "g5"]
