"""``rag.watch.Watcher`` on real folders: catch-up, edits, deletes, renames, moves, a git
checkout, editor temp files, a file still being written, and a file that fails to parse.

Each test runs a watcher in a thread (real inotify through watchfiles, the ``hash``
embedder from conftest) and waits for its events, never for fixed sleeps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rag.engine import Engine
from rag.errors import UsageError
from rag.watch import Watcher, network_filesystem
from tests.conftest import FIXTURES, HashEmbedder
from tests.openai_server import FakeOpenAI

TIMEOUT = 60.0  # seconds; a loaded 2-core machine is slow, a passing test never waits this long

Event = dict[str, Any]


class Running:
    """A ``Watcher`` following folders in a thread; its events, and a way to wait for them."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        watcher._emit = self._on_event
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.watcher.watch(self._stop)
        except BaseException as exc:
            self.error = exc
            with self._changed:
                self._changed.notify_all()

    def _on_event(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, kind: str, where: Callable[[Event], bool] = lambda e: True, after: int = 0) -> Event:
        """The first ``kind`` event from the ``after``-th on that satisfies ``where``."""
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while True:
                for event in self.events[after:]:
                    if event["event"] == kind and where(event):
                        return event
                if self.error is not None:
                    raise AssertionError(f"the watcher failed: {self.error!r}")
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind} event in {TIMEOUT} s; events: {self.events}"
                self._changed.wait(left)

    def until(self, done: Callable[[], bool]) -> None:
        """Wait, event by event, until ``done()``."""
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while not done():
                if self.error is not None:
                    raise AssertionError(f"the watcher failed: {self.error!r}")
                left = deadline - time.monotonic()
                assert left > 0, f"not done in {TIMEOUT} s; events: {self.events}"
                self._changed.wait(min(left, 0.5))

    def mark(self) -> int:
        """Where the events stand now: wait for what comes after it."""
        with self._changed:
            return len(self.events)

    def batches(self, after: int = 0) -> list[Event]:
        with self._changed:
            return [e for e in self.events[after:] if e["event"] == "batch"]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


def _engine() -> Engine:
    return Engine(embedding__embedder="hash")


@contextmanager
def watching(engine: Engine, *folders: Path, **options: Any) -> Iterator[Running]:
    running = Running(Watcher(engine, folders, **options))
    try:
        running.wait_for("watching")
        yield running
    finally:
        running.stop()


def _indexed(engine: Engine) -> set[str]:
    return {d.source for d in engine.documents()}


def _on_disk(folder: Path) -> set[str]:
    return {
        str(p)
        for p in folder.resolve().rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder.resolve()).parts)
    }


def _consistent(engine: Engine) -> None:
    """Chroma, the keyword index and the manifest hold exactly the same chunks."""
    index = engine.open_index()
    assert index.vector_ids() == index.live_ids() == index.keyword_ids()


def _texts(engine: Engine, path: Path) -> str:
    return " ".join(c.text for c in engine.chunks(str(path.resolve())))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _sentences(topic: str, n: int = 6) -> str:
    return " ".join(f"The {topic} note {i} records fact {topic}{i} in full." for i in range(n)) + "\n"


def test_catch_up_then_edit_add_and_delete(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "volcano.txt", _sentences("volcano"))
    _write(docs / "glacier.txt", _sentences("glacier"))
    engine = _engine()
    engine.ingest([docs])
    # While nothing watched: one file deleted, one added.
    (docs / "glacier.txt").unlink()
    _write(docs / "desert.md", "# Deserts\n\n" + _sentences("desert"))

    with watching(engine, docs) as running:
        caught = running.wait_for("catchup")
        assert (caught["files"]["added"], caught["files"]["removed"], caught["files"]["unchanged"]) == (1, 1, 1)
        assert running.wait_for("watching")["files"] == 2

        mark = running.mark()
        _write(docs / "volcano.txt", _sentences("magma"))
        batch = running.wait_for("batch", after=mark)
        assert batch["files"]["updated"] == 1
        text = _texts(engine, docs / "volcano.txt")
        assert "magma3" in text and "volcano3" not in text

        mark = running.mark()
        _write(docs / "sub" / "new.txt", _sentences("forest"))
        assert running.wait_for("batch", after=mark)["files"]["added"] == 1

        mark = running.mark()
        (docs / "desert.md").unlink()
        batch = running.wait_for("batch", after=mark)
        assert batch["removed"] == [str((docs / "desert.md").resolve())]
        assert engine.search("desert", k=10, mode="keyword") == []
        assert _indexed(engine) == _on_disk(docs)
        assert running.watcher.status()[0]["files"] == 2
    _consistent(engine)
    assert running.watcher.status()[0]["state"] == "stopped"


def test_a_rename_and_moves_across_folders_embed_nothing_again(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "a" / "one.txt", _sentences("alpha"))
    _write(docs / "a" / "two.txt", _sentences("beta"))
    _write(docs / "a" / "deep" / "three.md", _sentences("gamma"))
    engine = _engine()
    with watching(engine, docs) as running:
        model = engine.embedder()
        assert isinstance(model, HashEmbedder)
        embedded = model.texts_embedded

        mark = running.mark()
        (docs / "a" / "one.txt").rename(docs / "a" / "uno.txt")
        batch = running.wait_for("batch", after=mark)
        assert batch["ingested"] == [str((docs / "a" / "uno.txt").resolve())]
        assert batch["removed"] == [str((docs / "a" / "one.txt").resolve())]
        assert batch["embedded"] == 0 and batch["from_cache"] == batch["chunks"]["added"] > 0

        mark = running.mark()
        (docs / "b").mkdir()
        shutil.move(docs / "a" / "two.txt", docs / "b" / "two.txt")  # a file to another folder
        (docs / "a" / "deep").rename(docs / "b" / "deeper")  # a folder, with what is in it
        expected = {str((docs / p).resolve()) for p in ("a/uno.txt", "b/two.txt", "b/deeper/three.md")}
        running.until(lambda: _indexed(engine) == expected)
        assert _on_disk(docs) == expected
        assert model.texts_embedded == embedded, "a moved file's text was embedded again"
        assert "gamma2" in _texts(engine, docs / "b" / "deeper" / "three.md")
    _consistent(engine)


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_checkout_of_another_branch_is_one_batch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for i in range(30):
        _write(repo / f"notes/n{i:02d}.md", f"# Note {i}\n\n" + _sentences(f"main{i}"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "main")
    _git(repo, "checkout", "-qb", "other")
    for i in range(10):
        _write(repo / f"notes/n{i:02d}.md", f"# Note {i}\n\n" + _sentences(f"other{i}"))  # changed
    for i in range(10, 20):
        (repo / f"notes/n{i:02d}.md").unlink()  # deleted
    for i in range(10):
        _write(repo / f"added/a{i}.txt", _sentences(f"added{i}"))  # new, in a new folder
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "other")
    _git(repo, "checkout", "-q", "main")

    engine = _engine()
    with watching(engine, repo) as running:
        assert _indexed(engine) == _on_disk(repo)
        mark = running.mark()
        _git(repo, "checkout", "-q", "other")
        batch = running.wait_for("batch", after=mark)
        # The one batch brought the index exactly to the new branch: nothing was split off.
        assert (batch["files"]["updated"], batch["files"]["removed"], batch["files"]["added"]) == (10, 10, 10)
        assert _indexed(engine) == _on_disk(repo)
        assert not any("/.git/" in p for p in _indexed(engine))
        assert "other3" in _texts(engine, repo / "notes" / "n03.md")
    assert len(running.batches(mark)) == 1
    _consistent(engine)


def test_editor_temp_files_and_partial_downloads_are_ignored(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "keep.txt", _sentences("kept"))
    _write(docs / "~$report.docx", "owner file Word keeps beside an open document")
    engine = _engine()
    with watching(engine, docs) as running:
        caught = running.wait_for("catchup")
        assert (caught["files"]["added"], caught["files"]["failed"]) == (1, 0)
        mark = running.mark()
        for name in ("notes.md.swp", "4913", "notes.md~", "#notes.md#", "paper.pdf.part", "book.epub.crdownload"):
            _write(docs / name, "temporary")
        _write(docs / ".#notes.md", "emacs lock")
        _write(docs / "draft.tmp", "temporary")
        _write(docs / "notes.md", _sentences("saved"))
        batch = running.wait_for("batch", after=mark)
        assert batch["changed"] == 1 and batch["ingested"] == [str((docs / "notes.md").resolve())]
        assert _indexed(engine) == {str((docs / n).resolve()) for n in ("keep.txt", "notes.md")}


def test_a_file_being_written_is_ingested_once_when_complete(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    engine = _engine()
    pieces = 12
    with watching(engine, docs) as running:
        mark = running.mark()
        with (docs / "log.txt").open("w", encoding="utf-8") as fh:
            # Written piece by piece, each well inside the quiet period after the last.
            for i in range(pieces):
                fh.write(_sentences(f"piece{i}", 2))
                fh.flush()
                time.sleep(0.1)
        batch = running.wait_for("batch", after=mark)
        assert batch["ingested"] == [str((docs / "log.txt").resolve())]
        text = _texts(engine, docs / "log.txt")
        assert "piece00" in text and f"piece{pieces - 1}1" in text, "ingested before it was complete"
    assert len(running.batches(mark)) == 1, "the half-written file was ingested on its way"


def test_a_file_that_fails_is_reported_once_and_retried_when_it_changes(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "fine.txt", _sentences("fine"))
    bad = docs / "paper.pdf"
    bad.write_bytes(b"%PDF-1.4\nthis is not really a PDF\n")
    engine = _engine()
    with watching(engine, docs) as running:
        failed = running.wait_for("failed")
        assert failed["path"] == str(bad.resolve())
        assert running.watcher.status()[0]["last_error"].startswith(str(bad.resolve()))

        mark = running.mark()
        os.utime(bad, (time.time() + 5, time.time() + 5))  # touched, not changed
        _write(docs / "other.txt", _sentences("other"))
        running.wait_for("batch", after=mark, where=lambda e: str(bad.resolve()) in e["ingested"])
        assert [e for e in running.events[mark:] if e["event"] == "failed"] == [], "reported twice"

        mark = running.mark()
        shutil.copy(FIXTURES / "pdf" / "google-doc_zen-of-python.pdf", bad)  # fixed: retried
        batch = running.wait_for("batch", after=mark, where=lambda e: str(bad.resolve()) in e["ingested"])
        assert batch["files"]["added"] == 1 and batch["errors"] == []
        assert str(bad.resolve()) in _indexed(engine)


def test_include_and_exclude_apply_as_in_ingest(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "keep.md", _sentences("kept"))
    _write(docs / "drafts" / "skip.md", _sentences("draft"))
    _write(docs / "notes.txt", _sentences("plain"))
    engine = _engine()
    with watching(engine, docs, include=["*.md"], exclude=["drafts"]) as running:
        assert _indexed(engine) == {str((docs / "keep.md").resolve())}
        mark = running.mark()
        _write(docs / "drafts" / "more.md", _sentences("draft2"))
        _write(docs / "other.txt", _sentences("plain2"))
        _write(docs / "deep" / "new.md", _sentences("new"))
        running.wait_for("batch", after=mark)
        assert _indexed(engine) == {str((docs / p).resolve()) for p in ("keep.md", "deep/new.md")}


def test_the_store_inside_a_watched_folder_is_not_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "a.txt", _sentences("alpha"))
    engine = Engine(store=docs / "store", embedding__embedder="hash")
    with watching(engine, docs) as running:
        mark = running.mark()
        _write(docs / "b.txt", _sentences("beta"))
        running.wait_for("batch", after=mark)
        assert _indexed(engine) == {str((docs / n).resolve()) for n in ("a.txt", "b.txt")}
    # The index's own writes (its keyword index's meta.json) set off no batch of their own.
    assert [len(b["ingested"]) for b in running.batches(mark)] == [1]


def test_a_locked_index_keeps_the_batch_and_retries(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "a.txt", _sentences("alpha"))
    engine = Engine(embedding__embedder="hash", store__lock_timeout=0.1)
    with watching(engine, docs) as running:
        index = engine.open_index()
        with index.write_lock(1.0):  # another writer
            mark = running.mark()
            _write(docs / "b.txt", _sentences("beta"))
            error = running.wait_for("error", after=mark)
            assert "being written" in error["error"] and error["queued"] == 1
            assert running.watcher.status()[0]["state"] == "error"
        batch = running.wait_for("batch", after=mark)
        assert batch["ingested"] == [str((docs / "b.txt").resolve())]
        assert running.watcher.status()[0]["state"] == "watching"


def test_watching_a_file_or_nothing_is_a_usage_error(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", "x")
    with pytest.raises(UsageError, match="is a file"):
        Watcher(_engine(), [tmp_path / "a.txt"])
    with pytest.raises(UsageError, match="no such folder"):
        Watcher(_engine(), [tmp_path / "missing"])


MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/team nfs4 rw,vers=4.2 0 0
//nas/share /mnt/nas\\040drive cifs rw 0 0
/dev/sdb1 /mnt/team/local ext4 rw 0 0
"""


def test_network_filesystems_are_found_from_the_mount_table(tmp_path: Path) -> None:
    assert network_filesystem(Path("/mnt/team/docs"), MOUNTS) == "nfs4"
    assert network_filesystem(Path("/mnt/nas drive/x"), MOUNTS) == "cifs"
    assert network_filesystem(Path("/mnt/team/local/x"), MOUNTS) is None  # a local disk mounted inside
    assert network_filesystem(Path("/home/me"), MOUNTS) is None
    assert network_filesystem(tmp_path) is None  # this machine's real table: a local disk


def test_polling_follows_changes_too(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "a.txt", _sentences("alpha"))
    engine = _engine()
    with watching(engine, docs, poll=True) as running:
        assert running.wait_for("watching")["polling"] is True
        _write(docs / "b.txt", _sentences("beta"))
        (docs / "a.txt").unlink()
        running.until(lambda: _indexed(engine) == {str((docs / "b.txt").resolve())})


def test_a_provider_outage_is_retried_until_the_folders_are_indexed(tmp_path: Path, openai_env: FakeOpenAI) -> None:
    docs = tmp_path / "docs"
    for name in ("a", "b", "c"):
        _write(docs / f"{name}.txt", _sentences(name))
    openai_env.error_next(1, 500, message="upstream is down", path="/embeddings")
    engine = Engine(embedding__embedder="openai")
    running = Running(Watcher(engine, [docs]))
    try:
        # The catch-up fails part-way; the folder is tried again, and is then all there.
        assert "upstream is down" in running.wait_for("error")["error"]
        assert running.watcher.status()[0]["state"] == "error"
        running.wait_for("batch")
        assert _indexed(engine) == _on_disk(docs)
        assert running.watcher.status()[0]["state"] == "watching"

        mark = running.mark()
        openai_env.error_next(1, 500, message="down again", path="/embeddings")
        _write(docs / "d.txt", _sentences("delta"))
        assert "down again" in running.wait_for("error", after=mark)["error"]
        running.wait_for("batch", after=mark, where=lambda e: e["files"]["added"] == 1)
        assert _indexed(engine) == _on_disk(docs)
        assert running.watcher.status()[0]["last_error"] is not None  # the last error stays shown
    finally:
        running.stop()
    _consistent(engine)


def test_a_file_with_a_fresh_mtime_waits_for_a_second_look(tmp_path: Path) -> None:
    """An mtime newer than the quiet period (or from a skewed clock on a network drive)
    means a writer may still be at it: the file is looked at again before it is read."""
    docs = tmp_path / "docs"
    docs.mkdir()
    engine = _engine()
    with watching(engine, docs) as running:
        mark = running.mark()
        path = _write(docs / "copied.txt", _sentences("copied"))
        ahead = time.time() + 3600
        os.utime(path, (ahead, ahead))
        waiting = running.wait_for("waiting", after=mark)
        assert waiting["paths"] == [str(path.resolve())]
        batch = running.wait_for("batch", after=mark)
        assert batch["ingested"] == [str(path.resolve())]


def test_a_file_indexed_with_a_warning_is_named_in_its_batch(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "fine.txt", _sentences("fine"))
    engine = _engine()
    with watching(engine, docs) as running:
        mark = running.mark()
        legacy = docs / "legacy.txt"
        legacy.write_bytes("Café crème coûte trois euros à la gare du Nord.\n".encode("cp1252") * 5)
        batch = running.wait_for("batch", after=mark, where=lambda e: str(legacy.resolve()) in e["ingested"])
        assert [w["path"] for w in batch["warnings"]] == [str(legacy.resolve())]
        assert "decoded as" in batch["warnings"][0]["warning"]
