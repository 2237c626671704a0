"""Ingest jobs for uploaded files: one queue per index, events for anyone watching.

Uploads to one index are ingested one job at a time, in order (an index has one writer);
other indexes, searches and questions carry on meanwhile.  Each job keeps the list of its
events, so a client that subscribes late, or reconnects, gets the whole story from the
start and then follows live.

An upload answered 202 is never lost: its job is written to ``RAG_HOME/jobs/ID.json``
before the answer, and held by its server (``ID.lock``) until it ends.  A job whose
server died or stopped first is run again by the next server to start, under the same
id; its record then says it was resumed.  A server that starts alone on its ``RAG_HOME``
also removes staged uploads no job knows of (a client cut off mid-upload, never
answered) and ingests uploaded files the index does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # Windows: a server never knows it is alone, and leaves uploads as they are
    fcntl = None  # type: ignore[assignment]

from rag.errors import RagError
from rag.jsonable import Jsonable, json_hook
from rag.serve.state import ServerState

log = logging.getLogger(__name__)


@dataclass
class FileState(Jsonable):
    json_order = ("name", "state", "chunks", "reason")

    name: str
    path: Path | None
    state: str = "queued"  # queued, loaded, stored, unchanged, failed
    reason: str | None = field(default=None, metadata=json_hook(omit_none=True))
    chunks: int = 0
    #: Where the upload waits until the job moves it to ``path``.
    staged: Path | None = None

    def to_record(self) -> dict[str, Any]:
        """What the job's file on disk keeps: where the upload is, too."""
        return {
            **self.to_dict(),
            "path": str(self.path) if self.path is not None else None,
            "staged": str(self.staged) if self.staged is not None else None,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> FileState:
        path, staged = data.get("path"), data.get("staged")
        return cls(
            name=str(data["name"]),
            path=Path(path) if path else None,
            state=str(data.get("state", "queued")),
            reason=data.get("reason"),
            chunks=int(data.get("chunks", 0)),
            staged=Path(staged) if staged else None,
        )


@dataclass
class Job(Jsonable):
    """One upload's ingest: its files, its events so far, and its report when done."""

    json_order = ("id", "index", "state", "files", "report", "resumed")

    id: str = field(metadata=json_hook(key="job"))
    index: str
    files: list[FileState]
    state: str = "running"  # running, done, failed
    report: dict[str, Any] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    #: Set when a server that started later ran this job again (its first server had stopped).
    resumed: bool = False
    #: For a job read from disk (another server's, or from before a restart): reads it again.
    reload: Callable[[], Job | None] | None = field(default=None, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        with self._changed:
            return super().to_dict()

    def to_record(self) -> dict[str, Any]:
        """What the job's file on disk keeps: when it was made, and where its uploads are."""
        with self._changed:  # reentrant: to_dict takes it too
            return {**self.to_dict(), "created": self.created, "files": [f.to_record() for f in self.files]}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        return cls(
            id=str(data["job"]),
            index=str(data["index"]),
            files=[FileState.from_record(f) for f in data.get("files", [])],
            state=str(data.get("state", "running")),
            report=data.get("report"),
            created=float(data.get("created", time.time())),
            resumed=bool(data.get("resumed", False)),
        )

    def emit(self, name: str, data: dict[str, Any]) -> None:
        with self._changed:
            self.events.append((name, data))
            waiters, self._waiters = self._waiters, []
        for loop, ready in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting
                loop.call_soon_threadsafe(ready.set)

    async def follow(self, heartbeat: float) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
        """Every event from the first, then live; None after ``heartbeat`` quiet seconds. Ends after ``done``."""
        seen = 0
        loop = asyncio.get_running_loop()
        while True:
            ready = asyncio.Event()
            with self._changed:
                fresh = self.events[seen:]
                seen += len(fresh)
                if not fresh:
                    self._waiters.append((loop, ready))
            for item in fresh:
                yield item
                if item[0] == "done":
                    return
            if not fresh:
                try:
                    await asyncio.wait_for(ready.wait(), heartbeat)
                except TimeoutError:
                    self._catch_up()
                    yield None

    def _catch_up(self) -> None:
        """A job another server runs: once its file says it ended, so does this copy."""
        if self.reload is None or self.state != "running":
            return
        fresh = self.reload()
        if fresh is not None and fresh.state != "running":
            with self._changed:
                self.files, self.resumed = fresh.files, fresh.resumed
                self.state, self.report = fresh.state, fresh.report
            self.emit("done", _done(self))

    def _file(self, path: str) -> FileState | None:
        return next((f for f in self.files if f.path is not None and str(f.path) == path), None)


class _JobProgress:
    """The ingest pipeline's progress calls, turned into job events."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.total = 0
        self.stored = 0

    def planned(self, files: int) -> None:
        self.job.emit("discovered", {"files": files})

    def file_loaded(self, path: str, chunks: int) -> None:
        found = self.job._file(path)
        if found is not None:
            found.state, found.chunks = "loaded", chunks
        self.job.emit("loaded", {"file": _name(found, path), "chunks": chunks})

    def file_failed(self, path: str, reason: str) -> None:
        found = self.job._file(path)
        if found is not None:
            found.state, found.reason = "failed", reason
        self.job.emit("failed", {"file": _name(found, path), "reason": reason})

    def file_done(self, path: str) -> None:
        found = self.job._file(path)
        if found is None or found.state == "failed":
            return
        if found.state == "queued":
            found.state = "unchanged"
            self.job.emit("unchanged", {"file": found.name})
            return
        found.state = "stored"
        self.job.emit("stored", {"file": found.name, "chunks": found.chunks})

    def chunks_queued(self, n: int) -> None:
        self.total += n

    def chunks_stored(self, n: int) -> None:
        self.stored += n
        self.job.emit("embedded", {"n": self.stored, "total": self.total})


def _move_into_place(files: list[FileState]) -> None:
    """Staged uploads become the index's files (a rename: never a half-written file)."""
    for f in files:
        if f.staged is None or f.path is None:
            continue
        if not f.staged.exists() and f.path.exists():
            continue  # moved before its server stopped: the job is being resumed
        try:
            os.replace(f.staged, f.path)
        except OSError as exc:
            f.state, f.reason = "failed", f"cannot store the upload: {exc.strerror or exc}"
    for folder in {f.staged.parent for f in files if f.staged is not None}:
        shutil.rmtree(folder, ignore_errors=True)


def _name(found: FileState | None, path: str) -> str:
    return found.name if found is not None else Path(path).name


class Jobs:
    """Runs ingest jobs, one index at a time each, and remembers the recent ones (on disk too)."""

    keep = 200

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, ThreadPoolExecutor] = {}
        self.folder = state.layout.home / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        #: The lock of each job this server runs, held until the job ends.
        self._held: dict[str, FileLock] = {}
        #: Set at shutdown: a job that fails from then on was cut short, and stays to be resumed.
        self._closing = threading.Event()
        # Held shared while this server runs: a server that gets it exclusively is alone.
        self._serving = _SharedFileLock(self.folder / "serving.lock")
        # Exclusive while it tidies, so that a server starting meanwhile stages nothing yet.
        alone = self._serving.try_exclusive()
        self._resume(alone)
        self._serving.share()

    def submit(self, index: str, files: list[FileState]) -> Job:
        job = Job(id=secrets.token_hex(8), index=index, files=files)
        self._hold(job.id)
        self._save(job)  # before the client is answered 202
        self._start(job)
        return job

    def _start(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            if len(self._jobs) > self.keep:
                for old in sorted(self._jobs.values(), key=lambda j: j.created)[: len(self._jobs) - self.keep]:
                    if old.state != "running":
                        del self._jobs[old.id]
        self._queue(job.index).submit(self._run, job)

    async def run(self, index: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` in ``index``'s queue, after the jobs already waiting there."""
        return await asyncio.wrap_future(self._queue(index).submit(work))

    def _queue(self, index: str) -> ThreadPoolExecutor:
        with self._lock:
            queue = self._queues.get(index)
            if queue is None:
                queue = self._queues[index] = ThreadPoolExecutor(1, thread_name_prefix=f"rag-ingest-{index}")
            return queue

    def get(self, job_id: str) -> Job | None:
        """A job of this server, or one on disk (another server's, or from before a restart)."""
        with self._lock:
            found = self._jobs.get(job_id)
        if found is not None or not _JOB_ID.match(job_id):
            return found
        return self._load(self.folder / f"{job_id}.json")

    # --- the jobs' files ------------------------------------------------------------------

    def _save(self, job: Job) -> None:
        path = self.folder / f"{job.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.to_record(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def _load(cls, path: Path) -> Job | None:
        """A job from its file; one that ended has its ``done`` event, one still running
        elsewhere reads its file again as it is followed."""
        try:
            job = Job.from_record(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if job.state == "running":
            job.reload = lambda: cls._load(path)
        else:
            job.events.append(("done", _done(job)))
        return job

    def _hold(self, job_id: str) -> bool:
        """Take a job's lock; False when another live server holds it."""
        lock = FileLock(str(self.folder / f"{job_id}.lock"), is_singleton=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        self._held[job_id] = lock
        return True

    def _let_go(self, job_id: str) -> None:
        lock = self._held.pop(job_id, None)
        if lock is not None:
            lock.release()
            (self.folder / f"{job_id}.lock").unlink(missing_ok=True)

    def _resume(self, alone: bool) -> None:
        """Run again the jobs a stopped server left unfinished; when ``alone``, tidy the uploads."""
        records = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        unfinished: list[Job] = []
        finished: list[Path] = []
        for path in records:
            job = self._load(path)
            if job is None:
                path.unlink(missing_ok=True)
            elif job.state == "running":
                if self._hold(job.id):
                    unfinished.append(job)
            else:
                finished.append(path)
        for path in finished[: max(0, len(finished) - self.keep)]:
            path.unlink(missing_ok=True)
        if alone:
            self._tidy_uploads(unfinished)
        for job in unfinished:
            job.resumed = True
            job.events.clear()
            for f in job.files:
                if f.state != "failed":
                    f.state, f.reason, f.chunks = "queued", None, 0
            log.warning("upload job %s did not finish before its server stopped; resuming it", job.id)
            self._save(job)
            self._start(job)

    def _tidy_uploads(self, unfinished: list[Job]) -> None:
        """With no other server running: staged uploads no job knows of go (they were never
        answered 202), and uploaded files the index does not hold are ingested."""
        staged = {f.staged.parent for job in unfinished for f in job.files if f.staged is not None}
        named = {f.path for job in unfinished for f in job.files if f.path is not None}
        uploads = self.state.layout.home / "uploads"
        if not uploads.is_dir():
            return
        for folder in sorted(p for p in uploads.iterdir() if p.is_dir()):
            for incoming in (folder / ".incoming").glob("*"):
                if incoming not in staged:
                    shutil.rmtree(incoming, ignore_errors=True)
            try:
                known = {d.source for d in self.state.documents(folder.name)}
            except RagError:
                known = set()
            strays = [
                p.resolve()
                for p in sorted(folder.iterdir())
                if p.is_file() and not p.name.startswith(".") and str(p.resolve()) not in known
            ]
            strays = [p for p in strays if p not in named]
            if strays:
                job = Job(
                    id=secrets.token_hex(8),
                    index=folder.name,
                    files=[FileState(p.name, p) for p in strays],
                    resumed=True,
                )
                log.warning("%d uploaded files of index '%s' are not indexed; ingesting them", len(strays), folder.name)
                self._hold(job.id)
                self._save(job)
                self._start(job)

    # --- running --------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        progress = _JobProgress(job)
        _move_into_place(job.files)
        for f in job.files:
            if f.state == "failed":  # refused at upload (e.g. unsupported type), or not storable
                job.emit("failed", {"file": f.name, "reason": f.reason or "failed"})
        paths = [f.path for f in job.files if f.path is not None and f.state != "failed"]
        try:
            report = self.state.ingest(job.index, paths, progress) if paths else None
        except RagError as exc:
            self._finish(job, "failed", {"error": str(exc)})
            return
        except Exception as exc:  # a bug must still end the job visibly, not hang its watchers
            self._finish(job, "failed", {"error": f"unexpected {type(exc).__name__}: {exc}"})
            return
        data = report.to_dict() if report is not None else {}
        if report is not None:
            for problem in [*report.failed, *report.skipped]:
                found = job._file(problem.path)
                if found is not None and found.state != "failed":
                    found.state, found.reason = "failed", problem.reason
                    job.emit("failed", {"file": found.name, "reason": problem.reason})
        self._drop_failed_uploads(job)
        if report is not None and report.interrupted:
            for f in job.files:
                if f.state not in ("failed", "stored", "unchanged"):
                    f.state, f.reason = "failed", report.interrupted
        failed = report is None or bool(report.interrupted) or all(f.state == "failed" for f in job.files)
        self._finish(job, "failed" if failed else "done", data)

    def _drop_failed_uploads(self, job: Job) -> None:
        """An uploaded file that could not be indexed goes, unless an earlier version of it
        is indexed: every file under ``uploads/`` is one the index lists."""
        failed = [f.path for f in job.files if f.state == "failed" and f.path is not None and f.path.exists()]
        if failed:
            try:
                known = {d.source for d in self.state.documents(job.index)}
            except RagError:  # the index was never created: nothing of it is listed
                known = set()
            for path in failed:
                if str(path) not in known:
                    path.unlink(missing_ok=True)

    def _finish(self, job: Job, state: str, report: dict[str, Any]) -> None:
        if state == "failed" and self._closing.is_set():
            log.warning("upload job %s was cut short by the shutdown; the next `rag serve` resumes it", job.id)
            self._let_go(job.id)
            return
        with job._changed:
            job.state, job.report = state, report
        self._save(job)
        self._let_go(job.id)
        job.emit("done", _done(job))

    def close(self) -> None:
        """Stop taking jobs.  The job under way in each queue ends; queued ones stay
        unfinished on disk, and the next server to start runs them."""
        self._closing.set()
        with self._lock:
            queues = list(self._queues.values())
            waiting = [j.id for j in self._jobs.values() if j.state == "running"]
        for queue in queues:
            queue.shutdown(wait=False, cancel_futures=True)
        if waiting:
            log.warning("%d upload jobs unfinished at shutdown; the next `rag serve` resumes them", len(waiting))
        self._serving.release()


_JOB_ID = re.compile(r"^[0-9a-f]{16}$")


def _done(job: Job) -> dict[str, Any]:
    """The ``done`` event's data."""
    return {"state": job.state, "report": job.report, "files": [f.to_dict() for f in job.files]}


class _SharedFileLock:
    """A lock every running server holds shared, so that one can tell whether it is alone."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_exclusive(self) -> bool:
        if fcntl is None:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def share(self) -> None:
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
