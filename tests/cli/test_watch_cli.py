"""``rag watch`` and ``rag serve --watch`` as processes: JSON events, the terminal status
line, stopping cleanly, ``kill -9`` mid-batch then a restart, and a server that serves a
file saved a moment earlier."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest

from rag.embed import factory
from rag.engine import Engine
from rag.watch import Watcher
from tests.conftest import HashEmbedder, deliver_ctrl_c
from tests.serve_process import rag_server, serve_env

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0  # seconds; generous for a loaded machine, a passing test never waits this long

# `rag watch` in a process of its own, with the ``slow`` embedder: once the file ARMED
# exists, it holds forever (until killed) in its HOLD_AFTER-th batch after that, with the
# batches before stored, and says so by creating HELD.
_WATCH = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.helpers import register_slow

ARMED, HELD = Path(os.environ["ARMED_FILE"]), Path(os.environ["HELD_FILE"])
HOLD_AFTER = int(os.environ["HOLD_AFTER"])
armed = []

def hold(batches):
    if ARMED.exists():
        armed.append(batches)
        if len(armed) > HOLD_AFTER:
            HELD.touch()
            while True:
                time.sleep(1)

register_slow(hold)
from rag.cli.main import main
sys.argv = ["rag", "watch", "--embedder", "slow", *sys.argv[1:]]
main()
"""


def _sentences(topic: str, n: int = 6) -> str:
    return " ".join(f"The {topic} note {i} records fact {topic}{i} in full." for i in range(n)) + "\n"


class WatchProcess:
    """``rag watch --json`` in a subprocess; its events, read as they come."""

    def __init__(self, tmp: Path, *args: str, hold_after: int = 10**6) -> None:
        self.armed, self.held = tmp / "armed", tmp / "held"
        env = {**os.environ, "ARMED_FILE": str(self.armed), "HELD_FILE": str(self.held)}
        env["HOLD_AFTER"] = str(hold_after)
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WATCH.format(root=str(ROOT))), "--json", *args],
            env=env,
            preexec_fn=deliver_ctrl_c,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"rag watch ended: {self.process.wait()} {self.process.stderr}")
            event = json.loads(line)  # every line is one JSON event
            self.events.append(event)
            if event["event"] == kind:
                return event

    def wait_until(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not done():
            if self.process.poll() is not None:
                raise AssertionError(f"rag watch ended: {self.process.communicate()}")
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)


def test_json_events_then_sigterm_and_ctrl_c_stop_cleanly(tmp_path: Path, isolated: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        docs = tmp_path / sig.name
        docs.mkdir()
        (docs / "a.txt").write_text(_sentences("alpha"), encoding="utf-8")
        watch = WatchProcess(tmp_path, str(docs))
        assert watch.wait_for("catchup")["files"]["added"] == 1
        assert watch.wait_for("watching")["files"] == 1
        (docs / f"{sig.name}.md").write_text(_sentences(sig.name), encoding="utf-8")
        assert watch.wait_for("batch")["files"]["added"] == 1
        watch.process.send_signal(sig)
        assert watch.wait_for("stopped")["event"] == "stopped"
        out, err = watch.process.communicate(timeout=TIMEOUT)
        assert watch.process.returncode == 0, err
        assert out == "" and err == ""


def test_kill_9_mid_batch_then_a_restart_leaves_the_index_matching_the_folder(
    tmp_path: Path, isolated: Path, request: pytest.FixtureRequest
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"old{i}.txt").write_text(_sentences(f"old{i}"), encoding="utf-8")
    watch = WatchProcess(tmp_path, str(docs), hold_after=5)
    watch.wait_for("watching")
    watch.armed.touch()
    for i in range(40):
        (docs / f"new{i:02d}.txt").write_text(_sentences(f"new{i}"), encoding="utf-8")
    watch.wait_for("ingesting")
    watch.wait_until(watch.held.exists)  # five batches embedded and stored, the sixth held
    watch.process.kill()
    watch.process.wait(timeout=TIMEOUT)

    # While nothing watches: a file deleted, one changed, one added.
    (docs / "old0.txt").unlink()
    (docs / "new05.txt").write_text(_sentences("changed"), encoding="utf-8")
    (docs / "late.md").write_text(_sentences("late"), encoding="utf-8")

    request.addfinalizer(factory.register("slow", lambda model, settings: HashEmbedder(provider="slow")).undo)
    engine = Engine()
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if event["event"] == "watching":
            stop.set()  # caught up: stop at once

    Watcher(engine, [docs], on_event=on_event).watch(stop)
    caught = next(e for e in events if e["event"] == "catchup")
    assert caught["repaired"] > 0, "the killed batch left nothing to settle: it was not mid-batch"
    assert caught["errors"] == []

    index = engine.open_index()
    on_disk = {str(p) for p in docs.resolve().iterdir()}
    assert {d.source for d in engine.documents()} == on_disk
    assert index.vector_ids() == index.live_ids() == index.keyword_ids()
    for path in on_disk:  # each file's chunks exactly once, in order
        positions = [c.position for c in index.chunks_of(path)]
        assert positions == list(range(len(positions))) and positions
    assert "changed3" in " ".join(c.text for c in index.chunks_of(str((docs / "new05.txt").resolve())))


def test_the_status_line_on_a_terminal(tmp_path: Path, isolated: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(_sentences("alpha"), encoding="utf-8")
    script = textwrap.dedent(_WATCH.format(root=str(ROOT)))
    env = {**os.environ, "ARMED_FILE": str(tmp_path / "armed"), "HELD_FILE": str(tmp_path / "held")}
    env["HOLD_AFTER"] = "0"
    child = pexpect.spawn(
        sys.executable, ["-c", script, str(docs)], env=env, encoding="utf-8", use_poll=True, timeout=TIMEOUT
    )
    try:
        child.expect("watching 1 file in ")
        child.expect(r"watching 1 file · last change none yet · queued 0")
        (docs / "b.txt").write_text(_sentences("beta"), encoding="utf-8")
        child.expect(r"\d\d:\d\d:\d\d 1 added")
        child.expect(r"watching 2 files · last change \d\d:\d\d:\d\d · queued 0")
        child.sendintr()
        child.expect("stopped")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_piped_output_has_no_status_line(tmp_path: Path, isolated: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(_sentences("alpha"), encoding="utf-8")
    env = {**os.environ, "ARMED_FILE": str(tmp_path / "armed"), "HELD_FILE": str(tmp_path / "held")}
    env["HOLD_AFTER"] = "0"
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WATCH.format(root=str(ROOT))), str(docs)],
        env=env,
        preexec_fn=deliver_ctrl_c,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]
    assert lines[1].startswith("watching 1 file in "), lines
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert "queued" not in out + err and "\x1b" not in out + err  # no status line, no escapes
    assert err == "stopped\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["watch", "FILE"], "is a file"), (["watch", "MISSING"], "no such folder"), (["serve", "--watch", "MISSING"], "")],
)
def test_bad_folders_are_one_line_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    args = [{"FILE": str(tmp_path / "a.txt"), "MISSING": str(tmp_path / "missing")}.get(a, a) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "rag", *args], capture_output=True, text=True, timeout=TIMEOUT, env=serve_env(tmp_path)
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    if message:
        assert len(result.stderr.strip().splitlines()) == 1


def test_serve_watch_serves_a_file_saved_a_moment_ago(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "volcano.txt").write_text("Volcanoes erupt molten rock called lava.\n", encoding="utf-8")
    env = serve_env(tmp_path / "home", RAG_LLM="none")
    with rag_server(env, "--watch", str(docs)) as server, server.client() as client:
        deadline = time.monotonic() + TIMEOUT

        def status() -> list[dict[str, Any]]:
            watched: list[dict[str, Any]] = client.get("/api/v1/status").json()["watch"]
            return watched

        while status()[0]["state"] != "watching":
            assert time.monotonic() < deadline, status()
            time.sleep(0.05)
        first = status()
        assert first == [
            {
                "index": "default",
                "path": str(docs.resolve()),
                "state": "watching",
                "files": 1,
                "queued": 0,
                "last_change": None,
                "last_error": None,
            }
        ]

        saved = docs / "fjords.md"
        saved.write_text("# Fjords\n\nGlaciers carved the fjords of Norway.\n", encoding="utf-8")
        saved_at = time.monotonic()
        while True:
            hits = client.post("/api/v1/search", json={"query": "fjords Norway", "k": 1}).json()["results"]
            if hits and hits[0]["source"] == "fjords.md":  # relative to the folder: clients never see server paths
                break
            assert time.monotonic() - saved_at < TIMEOUT, "the saved file never became searchable"
            time.sleep(0.05)
        seconds = time.monotonic() - saved_at
        served = client.get(f"/api/v1/documents/{hits[0]['document_id']}/file")
        assert served.status_code == 200 and "carved the fjords" in served.text
        now = status()[0]
        assert now["files"] == 2 and now["last_change"] is not None and now["state"] == "watching"
        print(f"saved to searchable through rag serve --watch: {seconds:.2f} s")


def test_serve_without_watch_lists_no_folders(offline_server: Any) -> None:
    with offline_server.server.client() as client:
        assert client.get("/api/v1/status").json()["watch"] == []


def test_ctrl_c_mid_batch_says_so_and_exits_130(tmp_path: Path, isolated: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    watch = WatchProcess(tmp_path, str(docs), hold_after=1)
    watch.wait_for("watching")
    watch.armed.touch()
    for i in range(20):
        (docs / f"new{i:02d}.txt").write_text(_sentences(f"new{i}"), encoding="utf-8")
    watch.wait_for("ingesting")
    watch.wait_until(watch.held.exists)
    watch.process.send_signal(signal.SIGINT)
    _, err = watch.process.communicate(timeout=TIMEOUT)
    assert watch.process.returncode == 130
    assert err.strip().splitlines() == ["error: interrupted: what was stored is kept; run rag watch again to finish"]


def test_the_watch_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/watch.py", "--files", "40", "--burst", "8", "--saves", "2", "--idle", "0.2"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line[:52].strip(): line[52:].split() for line in result.stdout.splitlines()[1:]}
    assert rows["burst of 8 rewrites: batches"][0] == "1"
    assert rows["burst of 8 renames: batches, embedded"][:2] == ["1,", "0"]
