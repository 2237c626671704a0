"""Parse files in worker processes that can be killed: no file can hang or crash an ingest.

Parsers of binary formats (pypdf, lxml under python-docx and openpyxl, pdfium, Tesseract)
can loop, exhaust memory or crash on a hostile file.  ``ParsePool`` runs each such file
in a worker process with a time limit (``RAG_PARSE_TIMEOUT``) and an address-space limit
(``RAG_PARSE_MEMORY_MB``, ``RLIMIT_AS`` on POSIX).  The time limit is on the time without
progress: a loader doing long work in steps (OCR, a page at a time) calls ``still_working``
after each step, which starts the clock again, so a 100-page scan is not killed for its
length (Tesseract reads a 300 dpi page in about 2 s here: a 60 s limit on the whole file
stopped scans at about 30 pages), while a parser hung on one step is stopped as before.
A worker over its time is killed with its whole process group (a Tesseract it started
dies with it); a worker that dies (a segfault, the kernel's OOM killer) or raises
MemoryError is replaced.  Either way the file
comes back as a ``DocumentError`` naming the reason, and the run goes on.

Results come back in the order the files were given, while workers parse up to ``ahead``
files in advance and a feeding thread collects their results as they finish, so parsing
overlaps with whatever the caller does between results (embedding).  Files whose type is
cheap and safe to parse (plain text formats) can be parsed in the calling process
instead, with no worker at all.

Workers are started by ``forkserver`` on Linux (``spawn`` elsewhere): forking the caller,
which may run ONNX Runtime and Chroma threads, is not safe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument

# Seconds a new worker may take to start (import its parser) before its file times out.
_STARTUP_GRACE = 60.0

# In a worker: its end of the pipe, for ``still_working``.
_progress: Connection | None = None


def still_working() -> None:
    """Tell the pool this worker made progress: its time limit starts again (no-op outside a worker)."""
    if _progress is not None:
        with contextlib.suppress(OSError, ValueError):
            _progress.send(("alive", None, 0.0))


#: Parses one file; must be a module-level function (it is sent to the workers by name).
ParseFunction = Callable[[Path, Any], LoadedDocument]


@dataclass(frozen=True)
class ParseLimits:
    #: Seconds one file may take from the moment a worker starts on it, or since it last
    #: reported progress (``still_working``).
    timeout: float = 60.0
    #: Address space of a worker in MB (0: no limit).
    memory_mb: int = 2048


@dataclass(frozen=True)
class Parsed:
    """One file's outcome: a document, or the error that says why there is none."""

    path: Path
    document: LoadedDocument | None = None
    error: DocumentError | None = None
    #: Seconds spent parsing (in the worker, or in-process).
    seconds: float = 0.0


def default_workers() -> int:
    """Half the cores, at least one and at most four: the other half embeds."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class _Worker:
    def __init__(self, context: Any, parse: ParseFunction, options: Any, memory_mb: int) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, parse, options, memory_mb), name="rag-parse", daemon=True
        )
        self.process.start()
        child.close()
        self.job: tuple[int, Path] | None = None  # (sequence number, path)
        self.sent = 0.0  # when the job was sent
        self.started: float | None = None  # when the worker said it started on it

    def send(self, seq: int, path: Path) -> None:
        self.job, self.sent, self.started = (seq, path), time.monotonic(), None
        self.conn.send(str(path))

    def deadline(self, limits: ParseLimits) -> float:
        # The clock starts when the worker starts on the file, not when it is sent: a
        # worker still starting up on a busy machine must not time its first file out.
        if self.started is not None:
            return self.started + limits.timeout
        return self.sent + limits.timeout + _STARTUP_GRACE

    def kill(self) -> None:
        pid = self.process.pid
        if pid is not None and self.process.is_alive():
            with contextlib.suppress(OSError):
                if hasattr(os, "killpg"):
                    os.killpg(pid, signal.SIGKILL)  # the worker leads its own group
                else:
                    self.process.kill()
        self.process.join(5)
        self.conn.close()


class ParsePool:
    """Parses files in killable worker processes; use as a context manager.

    A background thread feeds the workers and collects their results as soon as they
    are ready, so workers keep parsing while the caller is busy (embedding); the caller's
    thread only submits paths and takes results, in order.
    """

    def __init__(
        self,
        parse: ParseFunction,
        options: Any = None,
        *,
        limits: ParseLimits | None = None,
        workers: int = 0,
        inline: Callable[[Path], bool] | None = None,
    ) -> None:
        self.parse = parse
        self.options = options
        self.limits = limits or ParseLimits()
        self.size = workers or default_workers()
        self.inline = inline or (lambda path: False)
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        self._context = multiprocessing.get_context(method)
        self._workers: list[_Worker] = []  # touched by the feeding thread only (and close)
        self._cond = threading.Condition()
        self._waiting: deque[tuple[int, Path]] = deque()
        self._done: dict[int, Parsed] = {}
        self._closing = False
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (killing any still parsing)."""
        with self._cond:
            self._closing = True
        if self._thread is not None:
            self._wake()
            self._thread.join()
            self._thread = None
        for worker in self._workers:
            if worker.job is None and worker.process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send(None)  # a polite stop; kill() below makes sure
            worker.kill()
        self._workers = []
        for end in (self._wake_r, self._wake_w):
            if end is not None:
                end.close()
        self._wake_r = self._wake_w = None

    def imap(self, paths: Iterable[Path], *, ahead: int = 0) -> Iterator[Parsed]:
        """Each path's ``Parsed``, in order; up to ``ahead`` files (default 8 per worker) in flight.

        ``paths`` is consumed in the caller's thread, a little ahead of the results.
        """
        ahead = ahead or 8 * self.size
        todo = iter(paths)
        inline: dict[int, Path] = {}
        submitted = 0
        taken = 0
        exhausted = False
        while True:
            while not exhausted and submitted - taken < ahead:
                path = next(todo, None)
                if path is None:
                    exhausted = True
                    break
                if self.inline(path):
                    inline[submitted] = path
                else:
                    self._submit(submitted, path)
                submitted += 1
            if taken == submitted:
                return
            if taken in inline:
                yield parse_here(self.parse, inline.pop(taken), self.options)
            else:
                yield self._result(taken)
            taken += 1

    def _submit(self, seq: int, path: Path) -> None:
        if self._thread is None:
            self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
            self._thread = threading.Thread(target=self._feed, name="rag-parse-feeder", daemon=True)
            self._thread.start()
        with self._cond:
            self._waiting.append((seq, path))
        self._wake()

    def _result(self, seq: int) -> Parsed:
        with self._cond:
            while seq not in self._done:
                if self._failure is not None:
                    raise RuntimeError(f"the parse pool failed: {self._failure!r}") from self._failure
                self._cond.wait()
            return self._done.pop(seq)

    def _wake(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            assert self._wake_w is not None
            self._wake_w.send(None)

    def _feed(self) -> None:
        """The feeding thread: hand files to idle workers, collect results, enforce limits."""
        try:
            while True:
                with self._cond:
                    if self._closing:
                        return
                    waiting = self._waiting
                    for worker in self._workers:
                        if waiting and worker.job is None:
                            worker.send(*waiting.popleft())
                    starts = min(len(waiting), self.size - len(self._workers))
                    jobs = [waiting.popleft() for _ in range(max(starts, 0))]
                for job in jobs:  # outside the lock: a worker takes a moment to start
                    worker = _Worker(self._context, self.parse, self.options, self.limits.memory_mb)
                    self._workers.append(worker)
                    worker.send(*job)
                self._collect()
        except BaseException as exc:  # the caller must hear of it, not wait forever
            with self._cond:
                self._failure = exc
                self._cond.notify_all()

    def _collect(self) -> None:
        """Wait for a wake-up, or a worker to start or finish a file, die, or run out of time."""
        assert self._wake_r is not None
        busy = [w for w in self._workers if w.job is not None]
        timeout = max(min(w.deadline(self.limits) for w in busy) - time.monotonic(), 0) if busy else None
        ready = wait([self._wake_r] + [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
        if self._wake_r in ready:
            while self._wake_r.poll():
                self._wake_r.recv()
        finished: dict[int, Parsed] = {}
        for worker in busy:
            assert worker.job is not None
            seq, path = worker.job
            if worker.conn in ready or worker.process.sentinel in ready:
                try:
                    status, payload, seconds = worker.conn.recv()
                except (EOFError, OSError):  # it died without a word: a crash
                    worker.process.join(5)
                    finished[seq] = Parsed(path, error=DocumentError(path, _death(worker.process.exitcode)))
                    self._replace(worker)
                    continue
                if status in ("start", "alive"):
                    worker.started = time.monotonic()
                    continue
                worker.job = None
                if status == "ok":
                    finished[seq] = Parsed(path, document=payload, seconds=seconds)
                else:
                    finished[seq] = Parsed(path, error=DocumentError(path, payload), seconds=seconds)
                    if status == "memory":  # its heap may be in pieces: start afresh
                        self._replace(worker)
            elif time.monotonic() >= worker.deadline(self.limits):
                if worker.started is None:
                    reason = f"the parser did not start within {_STARTUP_GRACE:g} s"
                else:
                    reason = f"parsing took longer than {self.limits.timeout:g} s (RAG_PARSE_TIMEOUT), stopped"
                finished[seq] = Parsed(path, error=DocumentError(path, reason), seconds=self.limits.timeout)
                self._replace(worker)
        if finished:
            with self._cond:
                self._done.update(finished)
                self._cond.notify_all()

    def _replace(self, worker: _Worker) -> None:
        worker.job = None
        worker.kill()
        self._workers.remove(worker)


def parse_here(parse: ParseFunction, path: Path, options: Any) -> Parsed:
    """Parse in this process, turning any failure into a ``Parsed`` with an error."""
    started = time.perf_counter()
    try:
        document = parse(path, options)
    except DocumentError as exc:
        return Parsed(path, error=exc, seconds=time.perf_counter() - started)
    except MemoryError:
        return Parsed(path, error=DocumentError(path, "out of memory while parsing"))
    except Exception as exc:  # a parser bug must cost one file, not the run
        reason = f"parser error ({type(exc).__name__}: {_one_line(exc)})"
        return Parsed(path, error=DocumentError(path, reason), seconds=time.perf_counter() - started)
    return Parsed(path, document=document, seconds=time.perf_counter() - started)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGSEGV":
            return "the parser crashed (segmentation fault)"
        if name == "SIGKILL":
            return "the parser was killed (out of memory?)"
        return f"the parser crashed ({name})"
    return f"the parser exited unexpectedly (status {exitcode})"


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return (message[:117] + "...") if len(message) > 120 else message


def _worker_main(conn: Connection, parse: ParseFunction, options: Any, memory_mb: int) -> None:
    """A worker's loop: a path in, ``(status, document or reason, seconds)`` out, until None."""
    global _progress
    _progress = conn
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # its own group: a kill reaches the subprocesses it starts (Tesseract)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_mb:
        with contextlib.suppress(ImportError, ValueError, OSError):
            import resource

            limit = memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        path = Path(item)
        started = time.perf_counter()
        conn.send(("start", None, 0.0))
        try:
            result = parse_here(parse, path, options)
            if result.error is not None and result.error.reason == "out of memory while parsing":
                reason = f"out of memory: parsing needs more than {memory_mb} MB (RAG_PARSE_MEMORY_MB)"
                conn.send(("memory", reason, result.seconds))
                return
            if result.document is not None:
                conn.send(("ok", result.document, result.seconds))
            else:
                assert result.error is not None
                conn.send(("error", result.error.reason, result.seconds))
        except MemoryError:
            with contextlib.suppress(Exception):
                conn.send(("memory", f"out of memory: parsing needs more than {memory_mb} MB", 0.0))
            return
        except Exception as exc:  # e.g. a document that cannot be pickled
            conn.send(("error", f"parser error ({type(exc).__name__})", time.perf_counter() - started))
