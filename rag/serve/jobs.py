"""Ingest jobs for uploaded files: one queue per index, events for anyone watching.

Uploads to one index are ingested one job at a time, in order (an index has one writer);
other indexes, searches and questions carry on meanwhile.  Each job keeps the list of its
events, so a client that subscribes late, or reconnects, gets the whole story from the
start and then follows live.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import RagError
from rag.serve.state import ServerState


@dataclass
class FileState:
    name: str
    path: Path | None
    state: str = "queued"  # queued, loaded, stored, unchanged, failed
    reason: str | None = None
    chunks: int = 0
    #: Where the upload waits until the job moves it to ``path``.
    staged: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "state": self.state, "chunks": self.chunks}
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass
class Job:
    """One upload's ingest: its files, its events so far, and its report when done."""

    id: str
    index: str
    files: list[FileState]
    state: str = "running"  # running, done, failed
    report: dict[str, Any] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        with self._changed:
            return {
                "job": self.id,
                "index": self.index,
                "state": self.state,
                "files": [f.to_dict() for f in self.files],
                "report": self.report,
            }

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
                    yield None

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
        try:
            os.replace(f.staged, f.path)
        except OSError as exc:
            f.state, f.reason = "failed", f"cannot store the upload: {exc.strerror or exc}"
    for folder in {f.staged.parent for f in files if f.staged is not None}:
        shutil.rmtree(folder, ignore_errors=True)


def _name(found: FileState | None, path: str) -> str:
    return found.name if found is not None else Path(path).name


class Jobs:
    """Runs ingest jobs, one index at a time each, and remembers the recent ones."""

    keep = 200

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, ThreadPoolExecutor] = {}

    def submit(self, index: str, files: list[FileState]) -> Job:
        job = Job(id=secrets.token_hex(8), index=index, files=files)
        with self._lock:
            self._jobs[job.id] = job
            if len(self._jobs) > self.keep:
                for old in sorted(self._jobs.values(), key=lambda j: j.created)[: len(self._jobs) - self.keep]:
                    if old.state != "running":
                        del self._jobs[old.id]
        self._queue(index).submit(self._run, job)
        return job

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
        with self._lock:
            return self._jobs.get(job_id)

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
        failed = report is None or bool(report.interrupted) or all(f.state == "failed" for f in job.files)
        self._finish(job, "failed" if failed else "done", data)

    @staticmethod
    def _finish(job: Job, state: str, report: dict[str, Any]) -> None:
        with job._changed:
            job.state, job.report = state, report
        job.emit("done", {"state": state, "report": report, "files": [f.to_dict() for f in job.files]})

    def close(self) -> None:
        with self._lock:
            queues = list(self._queues.values())
        for queue in queues:
            queue.shutdown(wait=False, cancel_futures=True)
