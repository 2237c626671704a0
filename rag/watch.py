"""Keep an index in step with folders as they change: ``rag watch`` and ``rag serve --watch``.

A ``Watcher`` starts the file watcher (``watchfiles``: Rust ``notify``, inotify on Linux,
or polling), then catches up with one ordinary ingest of its folders (what changed while
nothing watched: unchanged files are skipped by content hash, deleted ones pruned), then
follows changes.  Changes are coalesced: a batch is taken once no change has arrived for
``QUIET`` seconds, so three saves or a ``git checkout`` are one batch.  A batch ingests
the files it names (an exactly-once ingest, like ``rag ingest``) and removes those that
are gone.  A renamed or moved file is a new path with known text: its chunks come from
the embedding cache, so nothing is embedded again.

The watcher never writes to the index itself: each write is handed to ``run`` (the server
passes its per-index job queue, so watching never races uploads).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rag.engine import Engine
from rag.errors import RagError, UsageError
from rag.filetypes import kind_of
from rag.globs import compile_glob
from rag.ingest.discover import discover
from rag.ingest.pipeline import Progress, file_hash
from rag.jsonable import Jsonable
from rag.results import IngestReport

__all__ = ["IGNORED", "Watcher", "network_filesystem"]

#: Files that editors, office suites and browsers write beside the real one while saving
#: or downloading: never indexed, never a reason to wake up.  ``--exclude`` globs, added
#: to every watch and to its catch-up ingest.  (Dot files are skipped anyway: ``.#x``,
#: ``.x.swp``, ``.~lock.x#``, ``.goutputstream-*`` and rsync's ``.x.XXXXXX``.)
IGNORED = (
    "*.swp",  # vim swap files (and the next two)
    "*.swo",
    "*.swx",
    "4913",  # vim's probe that it may write in a folder
    "*~",  # backups: vim, emacs, gedit, nano
    "#*#",  # emacs auto-save
    "~$*",  # Microsoft Office's owner file beside an open document: ~$report.docx
    "*.part",  # Firefox, wget, KDE downloads in progress
    "*.partial",  # Edge, curl
    "*.crdownload",  # Chrome
    "*.download",  # Safari
    "*.tmp",  # everybody's temporary files
    "*.temp",
    "*.kate-swp",  # Kate
)

#: Seconds without any change before a batch is taken: long enough to take a ``git
#: checkout`` (writes come milliseconds apart) or an editor's save dance as one batch,
#: short enough that a save is searchable within a second or two.
QUIET = 0.4
#: Seconds a batch may wait for a folder that never falls quiet (a log file written
#: non-stop); then the files quiet for ``QUIET`` go, and the busy ones wait.
MAX_WAIT = 5.0
#: How often notify's poller looks at every file, in milliseconds (``--poll``).
POLL_MS = 1000
#: Milliseconds between the watcher's looks at what notify collected, and at a stop.
STEP_MS = 50
#: Seconds before a batch that failed (the index locked by another writer, a provider
#: down) is tried again; doubled on each failure up to ``RETRY_MAX``.
RETRY = 2.0
RETRY_MAX = 60.0

#: Filesystems whose changes made on other machines never reach inotify: polled.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",  # WSL 2's Windows drives, VM shares
        "drvfs",  # WSL 1's Windows drives
        "vboxsf",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.glusterfs",
        "fuse.davfs2",
    }
)

Runner = Callable[[Callable[[], Any]], Any]
Event = dict[str, Any]


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The network filesystem ``path`` is on (Linux, from ``/proc/self/mounts``), or None."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None  # not Linux: notify's native watcher, or --poll
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind if kind in NETWORK_FILESYSTEMS else None


def _store_inside(home: Path, roots: Sequence[Path]) -> list[str]:
    """An anchored exclude for the store when it lies inside a watched folder: its own
    writes (the keyword index's ``meta.json``) must not trigger ingests of themselves."""
    out = []
    for root in roots:
        with contextlib.suppress(ValueError):
            inside = home.resolve().relative_to(root).as_posix()
            if inside != ".":
                out.append("/" + inside)
    return out


class _Scope:
    """Which paths under one watched folder an ingest of it would index, by ``discover``'s
    rules: a name relative to the folder, no hidden part, no part excluded, the whole
    name included, and a type rag reads."""

    def __init__(self, root: Path, include: Sequence[str], exclude: Sequence[str]) -> None:
        self.root = root
        self.prefix = str(root).rstrip(os.sep) + os.sep
        self.include = [compile_glob(p) for p in include]
        self.exclude = [compile_glob(p) for p in exclude]

    def relative(self, path: str) -> str | None:
        """``path`` relative to the folder, with ``/``; "" for the folder; None outside it."""
        if path == str(self.root):
            return ""
        if not path.startswith(self.prefix):
            return None
        return path[len(self.prefix) :].replace(os.sep, "/")

    def admits(self, relative: str) -> bool:
        """No part of the path is hidden or excluded (a folder or file the walk would enter)."""
        parts = relative.split("/")
        for end in range(1, len(parts) + 1):
            if parts[end - 1].startswith("."):
                return False
            if any(p.fullmatch("/".join(parts[:end])) for p in self.exclude):
                return False
        return True

    def wants(self, relative: str) -> bool:
        """A file the ingest would read (``admits`` already checked)."""
        if self.include and not any(p.fullmatch(relative) for p in self.include):
            return False
        return kind_of(Path(relative)) is not None


@dataclass
class Folder(Jsonable):
    """One watched folder as ``/api/v1/status`` shows it (the web page renders this shape)."""

    index: str
    path: str
    state: str = "starting"  # starting, catching up, watching, ingesting, error, stopped
    files: int = 0
    queued: int = 0
    last_change: float | None = None
    last_error: str | None = None


class _Notifier(Protocol):
    def watch(self, debounce_ms: int, step_ms: int, timeout_ms: int, stop_event: Any) -> Any: ...
    def close(self) -> None: ...


@dataclass
class _Batch:
    """Paths changed and not yet handled: each with when it last changed (monotonic)."""

    changed: dict[str, float] = field(default_factory=dict)
    first: float | None = None

    def add(self, path: str, now: float) -> None:
        self.changed[path] = now
        if self.first is None:
            self.first = now

    def due_in(self, now: float, quiet: float) -> float | None:
        """Seconds until a batch is due (0: now), or None when nothing is waiting."""
        if not self.changed or self.first is None:
            return None
        last = max(self.changed.values())
        return max(0.0, min(last + quiet, self.first + MAX_WAIT) - now)

    def take(self, now: float, quiet: float) -> list[str]:
        """The paths that have been quiet for ``quiet`` seconds; the busy ones stay."""
        taken = sorted(p for p, at in self.changed.items() if now - at >= quiet - 1e-3)
        for p in taken:
            del self.changed[p]
        self.first = min(self.changed.values(), default=None)
        return taken


class Watcher:
    """Follows folders and keeps ``engine``'s index exactly matching them.

    ``on_event`` receives one dict per event (``catchup``, ``watching``, ``batch``,
    ``failed``, ``waiting``, ``error``, ``stopped``); ``run`` is how index writes are run
    (directly, or in a server's job queue); ``poll``: True polls, False never does, None
    polls folders on network filesystems.
    """

    def __init__(
        self,
        engine: Engine,
        paths: Iterable[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        embedder: str | None = None,
        poll: bool | None = None,
        quiet: float = QUIET,
        on_event: Callable[[Event], None] | None = None,
        progress: Callable[[], Progress | None] | None = None,
        run: Runner | None = None,
    ) -> None:
        roots = []
        for p in paths:
            path = Path(p).expanduser()
            if not path.exists():
                raise UsageError(f"no such folder: {p}")
            if not path.is_dir():
                raise UsageError(f"rag watch follows folders, and {p} is a file: watch its folder with --include")
            roots.append(path.resolve())
        if not roots:
            raise UsageError("name at least one folder to watch")
        self.engine = engine
        self.roots = sorted(set(roots))
        self.include = tuple(include)
        self.exclude = (*exclude, *IGNORED, *_store_inside(engine.layout.home, self.roots))
        self.embedder = embedder
        self.scopes = [_Scope(r, self.include, self.exclude) for r in self.roots]
        self.networked = {str(r): fs for r in self.roots if (fs := network_filesystem(r))}
        self.polling = poll if poll is not None else bool(self.networked)
        self.quiet = quiet + (POLL_MS / 1000 if self.polling else 0.0)
        self.folders = [Folder(engine.index_name, str(r)) for r in self.roots]
        self._emit = on_event or (lambda event: None)
        self._progress = progress or (lambda: None)
        self._run: Runner = run or (lambda work: work())
        self._pending = _Batch()
        self._lock = threading.Lock()
        #: Files that failed to parse: path -> (content hash, reason) as last reported.
        self._failed: dict[str, tuple[str, str]] = {}
        #: (size, mtime) of files seen still being written, to tell when they stop.
        self._settling: dict[str, tuple[int, int]] = {}
        #: The indexed files under the folders: read at catch-up, then kept by each batch
        #: (reading the index's file list took 0.6 s a batch with 10,000 files).
        self._indexed: set[str] = set()
        self._retry = RETRY

    # --- status ---------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each folder's state, file count, queue and last change and error."""
        with self._lock:
            return [f.to_dict() for f in self.folders]

    def fail(self, message: str) -> None:
        """Show every folder as no longer followed, and why (a caller's error)."""
        self._set("error", message)

    def _set(self, state: str, error: str | None = None) -> None:
        with self._lock:
            for f in self.folders:
                f.state = state
                if error is not None:
                    f.last_error = error

    def _scope_of(self, path: str) -> tuple[_Scope, str] | None:
        for scope in self.scopes:
            relative = scope.relative(path)
            if relative is not None:
                return scope, relative
        return None

    # --- the loop -------------------------------------------------------------------------

    def watch(self, stop: threading.Event | None = None) -> None:
        """Catch up, then follow changes until ``stop`` is set (or Ctrl-C: ``KeyboardInterrupt``)."""
        stop = stop or threading.Event()
        notifier = self._notifier()
        try:
            self.catch_up()
            # Load the model now, not on the first save: that save took 1-2 s longer.
            with contextlib.suppress(RagError):
                self.engine.embedder().count_tokens(["warm up"])
            self._emit(
                {
                    "event": "watching",
                    "index": self.engine.index_name,
                    "paths": [str(r) for r in self.roots],
                    "files": sum(f.files for f in self.folders),
                    "polling": self.polling,
                    "network": self.networked,
                }
            )
            if not self._pending.changed:
                self._set("watching")
            self._follow(notifier, stop)
        finally:
            notifier.close()
            self._set("stopped")
            self._emit({"event": "stopped", "index": self.engine.index_name})

    def _notifier(self) -> _Notifier:
        from watchfiles._rust_notify import RustNotify

        paths = [str(r) for r in self.roots]
        try:
            return RustNotify(paths, False, self.polling, POLL_MS, True, True)
        except OSError as exc:
            if self.polling:
                raise RagError(f"cannot watch {', '.join(paths)}: {exc.strerror or exc}") from None
            # Most often inotify's watch limit (fs.inotify.max_user_watches): poll instead.
            self._emit({"event": "error", "error": f"cannot watch natively ({exc.strerror or exc}): polling"})
            self.polling = True
            self.quiet += POLL_MS / 1000
            return RustNotify(paths, False, True, POLL_MS, True, True)

    def _follow(self, notifier: _Notifier, stop: threading.Event) -> None:
        retry_at = 0.0
        while not stop.is_set():
            now = time.monotonic()
            due = self._pending.due_in(now, self.quiet)
            if due is not None and now < retry_at:
                due = retry_at - now
            # 0 waits for a change however long it takes (a stop or Ctrl-C still ends it).
            timeout = 0 if due is None else max(STEP_MS, int(due * 1000) + 1)
            raw = notifier.watch(STEP_MS, STEP_MS, timeout, stop)
            if raw == "signal":
                raise KeyboardInterrupt
            if raw == "stop":
                return
            now = time.monotonic()
            if isinstance(raw, set):
                self._collect(raw, now)
            if now < retry_at or self._pending.due_in(now, self.quiet) != 0.0:
                continue
            batch = self._pending.take(now, self.quiet)
            if batch and not self._apply(batch):
                retry_at = time.monotonic() + self._retry
                self._retry = min(2 * self._retry, RETRY_MAX)
            elif batch:
                self._retry = RETRY

    def _collect(self, changes: set[tuple[int, str]], now: float) -> None:
        """Queue the changes the index cares about (editor temp files, hidden files and
        files of other types never are)."""
        wall = time.time()
        for _change, path in changes:
            found = self._scope_of(path)
            if found is None:
                continue
            scope, relative = found
            if relative and not scope.admits(relative):
                continue
            # A file must be of a type rag reads; a folder, or a path gone, may hold some.
            if relative and not scope.wants(relative) and os.path.isfile(path):
                continue
            self._pending.add(path, now)
            with self._lock:
                for f in self.folders:
                    if f.path == str(scope.root):
                        f.last_change = wall
        self._count_queued()

    def _count_queued(self) -> None:
        with self._lock:
            for f, scope in zip(self.folders, self.scopes, strict=True):
                f.queued = sum(1 for p in self._pending.changed if scope.relative(p) is not None)

    # --- catching up ----------------------------------------------------------------------

    def catch_up(self) -> IngestReport:
        """One ingest of the folders: what changed while nothing watched."""
        self._set("catching up")
        self._emit({"event": "catching up", "index": self.engine.index_name, "paths": [str(r) for r in self.roots]})

        def work() -> IngestReport:
            return self.engine.ingest(
                self.roots,
                include=self.include,
                exclude=self.exclude,
                embedder=self.embedder,
                progress=self._progress(),
            )

        report: IngestReport = self._run(work)
        self._failures(report)
        self._indexed = {d.source for d in self.engine.documents() if self._scope_of(d.source)}
        self._emit({"event": "catchup", **report.to_dict()})
        self._recount()
        if report.interrupted:
            # A provider or the store failed part-way: the folders go in the first batch
            # (what is stored by now is unchanged then, so that costs only the rest).
            self._set("error", report.interrupted)
            self._emit({"event": "error", "error": report.interrupted, "queued": len(self.roots)})
            for root in self.roots:
                self._pending.add(str(root), time.monotonic())
        return report

    # --- one batch ------------------------------------------------------------------------

    def _apply(self, batch: list[str]) -> bool:
        """Ingest the batch's files and remove what is gone; False when it must be retried."""
        started = time.perf_counter()
        ingest, gone, waiting = self._plan(batch)
        for path in waiting:
            self._pending.add(path, time.monotonic())
        if waiting:
            self._emit({"event": "waiting", "paths": waiting, "reason": "still being written"})
        self._count_queued()
        if not ingest and not gone:
            return True
        self._set("ingesting")
        self._emit({"event": "ingesting", "index": self.engine.index_name, "files": len(ingest), "gone": len(gone)})
        try:
            report, removed = self._run(lambda: self._write(ingest, gone))
        except RagError as exc:
            # Locked by another writer, a provider down: nothing is lost, the batch waits.
            for path in batch:
                self._pending.add(path, time.monotonic())
            self._count_queued()
            self._set("error", str(exc))
            self._emit({"event": "error", "error": str(exc), "queued": len(self._pending.changed)})
            return False
        if report is not None and report.interrupted:
            for file in ingest:
                self._pending.add(str(file), time.monotonic())
            self._set("error", report.interrupted)
            self._emit({"event": "error", "error": report.interrupted, "queued": len(self._pending.changed)})
            return False
        self._failures(report)
        self._recount()
        self._set("watching")
        self._emit(self._batch_event(batch, ingest, report, removed, time.perf_counter() - started))
        return True

    def _plan(self, batch: list[str]) -> tuple[list[Path], list[str], list[str]]:
        """(files to ingest, paths gone, files still being written) of a batch."""
        ingest: set[Path] = set()
        gone: list[str] = []
        waiting: list[str] = []
        wall = time.time()
        for path in batch:
            found = self._scope_of(path)
            if found is None:
                continue
            scope, relative = found
            try:
                info = os.stat(path)
            except OSError:
                gone.append(path)  # deleted, or moved away: with whatever was under it
                continue
            if stat.S_ISDIR(info.st_mode):
                # Created or moved in: notify names the folder, not what came with it.
                gone.append(path)  # what was indexed under it and is no longer there
                ingest.update(self._files_under(Path(path), scope))
            elif stat.S_ISREG(info.st_mode) and scope.wants(relative):
                if self._settled(path, info, wall):
                    ingest.add(Path(path))
                else:
                    waiting.append(path)
        return sorted(ingest), gone, waiting

    def _files_under(self, folder: Path, scope: _Scope) -> list[Path]:
        found = discover([folder], max_file_bytes=self._max_bytes())
        out = []
        for path in found.files:
            relative = scope.relative(str(path))
            if relative is not None and scope.admits(relative) and scope.wants(relative):
                out.append(path)
        return out

    def _max_bytes(self) -> int:
        return int(self.engine.settings.ingest.max_file_mb * 1024 * 1024)

    def _settled(self, path: str, info: os.stat_result, wall: float) -> bool:
        """Nothing has written to the file for ``quiet`` seconds, by its mtime, or since the
        last look (an mtime in the future, from another machine's clock)."""
        signature = (info.st_size, info.st_mtime_ns)
        if 0 <= wall - info.st_mtime >= self.quiet or self._settling.get(path) == signature:
            self._settling.pop(path, None)
            return True
        self._settling[path] = signature
        return False

    def _write(self, ingest: list[Path], gone: list[str]) -> tuple[IngestReport | None, dict[str, int]]:
        """In the writer's turn: remove what is gone, then ingest the files (exactly once).
        Returns the ingest's report and the chunks removed per file removed."""
        removed = self._remove(gone) if gone else {}
        report = None
        while ingest:
            try:
                report = self.engine.ingest(ingest, prune=False, embedder=self.embedder, progress=self._progress())
                # A file that failed keeps its earlier version, if it had one; a new one is not in.
                refused = {p.path for p in (*report.failed, *report.skipped)}
                self._indexed.update(str(p) for p in ingest if str(p) not in refused)
                break
            except UsageError:
                # A file deleted since it was planned (``discover`` refuses missing paths):
                # drop the missing ones and go on; anything else is a real usage error.
                still = [p for p in ingest if os.path.lexists(p)]
                if len(still) == len(ingest):
                    raise
                removed.update(self._remove([str(p) for p in ingest if p not in still]))
                ingest = still
        return report, removed

    def _remove(self, gone: list[str]) -> dict[str, int]:
        """Take out indexed files at or under the ``gone`` paths that are no longer on disk."""
        doomed_roots = set(gone)
        doomed = []
        for path in self._indexed:
            parent = path
            while parent:
                if parent in doomed_roots:
                    if not os.path.lexists(path):
                        doomed.append(path)
                    break
                up = os.path.dirname(parent)
                parent = up if up != parent else ""
        for path in doomed:
            self._failed.pop(path, None)
        self._indexed.difference_update(doomed)
        return self.engine.remove(doomed) if doomed else {}

    def _failures(self, report: IngestReport | None) -> None:
        """Report each file that failed, once per content: it is retried when it changes."""
        if report is None:
            return
        for problem in report.failed:
            try:
                digest = file_hash(Path(problem.path))
            except OSError:
                digest = ""
            if self._failed.get(problem.path) == (digest, problem.reason):
                continue
            self._failed[problem.path] = (digest, problem.reason)
            error = f"{problem.path}: {problem.reason}"
            with self._lock:
                for f in self.folders:
                    if problem.path.startswith(f.path.rstrip(os.sep) + os.sep):
                        f.last_error = error
            self._emit({"event": "failed", "path": problem.path, "reason": problem.reason})

    def _recount(self) -> None:
        counts = [0] * len(self.scopes)
        for path in self._indexed:
            for i, scope in enumerate(self.scopes):
                if path.startswith(scope.prefix):
                    counts[i] += 1
                    break
        with self._lock:
            for f, n in zip(self.folders, counts, strict=True):
                f.files = n

    def _batch_event(
        self, batch: list[str], ingest: list[Path], report: IngestReport | None, removed: dict[str, int], seconds: float
    ) -> Event:
        """``rag ingest --json``'s counts for the batch, with the paths it ingested and removed."""
        d = (report or IngestReport(self.engine.index_name, "")).to_dict()
        return {
            "event": "batch",
            "index": self.engine.index_name,
            "changed": len(batch),
            "files": {**d["files"], "removed": len(removed)},
            # A batch that only removed files ran no ingest to count the total.
            "chunks": {
                **d["chunks"],
                "removed": d["chunks"]["removed"] + sum(removed.values()),
                "total": d["chunks"]["total"] if report is not None else None,
            },
            "embedded": d["embedded"],
            "from_cache": d["from_cache"],
            "ingested": [str(p) for p in ingest],
            "removed": sorted(removed),
            "errors": d["errors"],
            "warnings": d["warnings"],
            "skipped": d["skipped"],
            "seconds": round(seconds, 3),
        }
