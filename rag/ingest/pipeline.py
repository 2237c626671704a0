"""Incremental ingest: discover -> load -> chunk -> embed -> store, exactly once per chunk.

A file is re-read only when its size or mtime changed, and re-indexed only when its
content hash (or the chunking recipe) changed.  Chunks are written in windows of files:
pending rows first, then vectors (each embedding batch as it arrives, to the cache and to
Chroma), then one commit per file that swaps its old chunks for the new.  ``Index`` keeps
the order that makes an interrupted run repairable (see ``rag.store.manifest``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.embed.base import Embedder, embed_stream, plan
from rag.errors import DocumentError, ProviderError, StoreError
from rag.ingest.chunk import chunk_document
from rag.ingest.discover import Discovery
from rag.ingest.loaders import LoadOptions, file_type, load
from rag.ingest.parse import Parsed, ParseLimits, ParsePool
from rag.results import HEADING_SEPARATOR, OCR_SUFFIX, FileProblem, IngestReport, Unsupported
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index
from rag.store.records import ChunkRecord, FileRecord
from rag.usage import Usage

# Chunks in the first window of an ingest (see ``Ingestor.run``).
FIRST_WINDOW_CHUNKS = 64
# Bump when loaders or the chunker change what they produce, so files get re-chunked.
RECIPE_VERSION = "7"  # 2: Office files, tables, OCR of scanned pages; 3: PDF text from PDFium;
# 4: table rows as records with their titles, e-book chapters from the navigation, control
# characters stripped, garbage text layers and upside-down scans OCR'd; 5: PDF tables as
# records, header-less tables' columns named "Column 1"...; 6: Markdown, HTML and plain-text
# tables as records, PDF tables set sideways as records; 7: Markdown code blocks kept whole


class Progress(Protocol):
    """What a progress display is told; every method is optional to act on.

    Calls come from two threads: the ingest thread (planned, queued and unchanged or failed
    files) and the embedding thread (stored chunks, committed files)."""

    def planned(self, files: int) -> None: ...
    def file_done(self, path: str) -> None: ...
    def chunks_queued(self, n: int) -> None: ...
    def chunks_stored(self, n: int) -> None: ...


def _tell(progress: Progress, name: str, *args: object) -> None:
    """Call an optional progress hook (``file_loaded(path, chunks)``, ``file_failed(path, reason)``)."""
    hook = getattr(progress, name, None)
    if hook is not None:
        hook(*args)


class _NoProgress:
    def planned(self, files: int) -> None:
        pass

    def file_done(self, path: str) -> None:
        pass

    def chunks_queued(self, n: int) -> None:
        pass

    def chunks_stored(self, n: int) -> None:
        pass


@dataclass(frozen=True)
class _Changed:
    """A file that needs parsing: what ``stat`` and the hash said about it."""

    stat: os.stat_result
    content_hash: str
    is_new: bool


def _isolated(path: Path) -> bool:
    found = file_type(path)
    return found is None or found.isolate


@dataclass
class _Pending:
    """A loaded, chunked file waiting for its window to be embedded."""

    record: FileRecord
    chunks: list[ChunkRecord]
    is_new: bool


class _VectorWriter:
    """Writes vectors, then commits their files, in a thread of its own, for a whole ingest.

    Chroma's per-call cost makes batches of a few hundred much faster.  A window's commit
    is queued behind the window's writes, so a file still goes live only after its vectors
    are stored, while the embedding thread goes on to the next window; ``finished``
    hands the commits that are done back to that thread, which reports them.
    """

    # Chroma's CPU per chunk, 5,000 chunks: 0.41 ms in writes of 256, 0.37 ms of 512, 0.36 ms
    # of 1,024.  Not more: an embedded upsert holds the GIL throughout (about 0.2 ms a chunk),
    # and a model run that ends meanwhile waits for it to hand its core the next batch.
    size = 512
    #: Batches written or waiting at once; bounds the vectors held in memory.
    in_flight = 2

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor
        #: The files of the windows in flight, for the metadata written with each chunk.
        self._records: dict[str, FileRecord] = {}
        self._chunks: list[ChunkRecord] = []
        self._rows: list[np.ndarray] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-vectors")
        self._writes: deque[tuple[Future[None], int]] = deque()
        self._commits: deque[tuple[Future[int], list[_Pending]]] = deque()
        self._failed = False

    def expect(self, files: Sequence[_Pending]) -> None:
        """Announce a window's files before their chunks are added."""
        self._records.update((f.record.path, f.record) for f in files)

    def add(self, chunks: Sequence[ChunkRecord], vector: np.ndarray) -> None:
        for chunk in chunks:
            self._chunks.append(chunk)
            self._rows.append(vector)
        if len(self._chunks) >= self.size:
            self.flush()

    def flush(self) -> None:
        """Hand what is buffered to the writer thread."""
        if not self._chunks:
            return
        chunks, self._chunks = self._chunks, []
        vectors, self._rows = np.stack(self._rows), []
        while len(self._writes) >= self.in_flight:
            self._reap_write()
        self._writes.append((self._pool.submit(self._write, chunks, vectors), len(chunks)))

    def commit(self, files: list[_Pending]) -> None:
        """Queue the commit of a window whose chunks have all been added."""
        self.flush()
        self._commits.append((self._pool.submit(self._commit, files), files))

    def finished(self, wait: bool = False) -> list[tuple[list[_Pending], int]]:
        """Windows committed so far, with the old chunks each removed (``wait``: all of them).
        Raises the first failed write's or commit's error."""
        while self._writes and (wait or self._writes[0][0].done()):
            self._reap_write()
        done = []
        while self._commits and (wait or self._commits[0][0].done()):
            commit, files = self._commits.popleft()
            done.append((files, commit.result()))
        return done

    def close(self) -> list[tuple[list[_Pending], int]]:
        """Write and commit what is left; returns the windows committed since ``finished``."""
        try:
            self.flush()
            return self.finished(wait=True)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> list[tuple[list[_Pending], int]]:
        """After an error or Ctrl-C: start nothing more, let the task under way finish.
        Returns the windows that were committed (their files are live)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        return [
            (files, commit.result())
            for commit, files in self._commits
            if commit.done() and not commit.cancelled() and commit.exception() is None
        ]

    # In the writer thread: after a failed write nothing more is committed, so a window
    # whose vectors are not all stored stays pending and the next run settles it.

    def _write(self, chunks: list[ChunkRecord], vectors: np.ndarray) -> None:
        if self._failed:
            return
        try:
            self._ingestor.index.write_vectors(chunks, vectors, self._records)
        except BaseException:
            self._failed = True
            raise

    def _commit(self, files: list[_Pending]) -> int:
        if self._failed:
            raise StoreError("not committed: an earlier vector write failed")
        # One commit for the window: on a Chroma server, one generation of the change log.
        removed = self._ingestor.index.commit_files([(p.record, [c.id for c in p.chunks]) for p in files])
        for p in files:
            self._records.pop(p.record.path, None)
        return removed

    def _reap_write(self) -> None:
        write, count = self._writes.popleft()
        write.result()
        # Told from the embedding thread while the ingest thread reports files (see Progress).
        self._ingestor.progress.chunks_stored(count)


class _Stopped(Exception):
    """Ends the embedding thread early (the ingest thread is stopping)."""


@dataclass
class _Embedding:
    """A window in the embedding thread: its files, and how many of its texts await vectors."""

    files: list[_Pending]
    waiting: int = 0


class _WindowStream:
    """Embeds windows in a thread of its own, as one stream of batches, while the ingest
    thread chunks the next window.

    The model's next batch may come from the next window while the last ones of this
    window are still running: waiting for a window to finish before starting the next left
    the model idle at each window's end (0.7 s of a 53 s ingest of 5,000 short files).
    A window is committed, in order, once all its vectors are handed to the writer.  Only
    this thread touches the writer's buffer and the cache's writes.
    """

    #: Seconds ``stop`` waits for the batch under way: a local batch ends well within it;
    #: a remote call that does not is left to finish (or not) in its daemon thread.
    grace = 3.0
    #: How often a blocked hand-over or wait looks for a stop or a failure.
    poll = 0.1

    def __init__(self, ingestor: Ingestor, report: IngestReport, writer: _VectorWriter) -> None:
        self._ingestor = ingestor
        self._report = report
        self._writer = writer
        # One window waiting while one is embedded and another built: memory stays bounded.
        self._windows: queue.Queue[_Window | None] = queue.Queue(maxsize=1)
        #: Windows handed to the writer's buffer but not yet committed, oldest first.
        self._open: deque[_Embedding] = deque()
        #: Texts whose batch is running, with every (window, chunks) waiting for its vector:
        #: a text in two windows at once is embedded once.
        self._running: dict[str, list[tuple[_Embedding, list[ChunkRecord]]]] = {}
        self.stopping = threading.Event()
        self._done: Future[None] = Future()
        # A daemon, so that Ctrl-C during a call that never returns still ends the process.
        threading.Thread(target=self._run, name="rag-embed", daemon=True).start()

    def submit(self, window: _Window) -> None:
        """Queue a window; raises the embedding thread's error, if it failed."""
        self._put(window)

    def wait(self) -> None:
        """Embed and commit everything queued; raises the embedding thread's error."""
        self._put(None)
        self._done.result()

    def stop(self) -> None:
        """End at the next batch, waiting ``grace`` seconds at most.  The thread's error,
        if any, was the reason for stopping or is beside the point now."""
        self.stopping.set()
        with contextlib.suppress(Exception):
            self._done.result(self.grace)

    def _put(self, window: _Window | None) -> None:
        while True:
            if self._done.done():
                self._done.result()
                raise _Stopped
            try:
                self._windows.put(window, timeout=self.poll)
                return
            except queue.Full:
                continue

    # In the embedding thread:

    def _run(self) -> None:
        self._done.set_running_or_notify_cancel()
        try:
            embed_stream(self._ingestor.embedder, self._batches(), self._deliver, on_usage=self._ingestor._spend)
        except BaseException as exc:
            self._done.set_exception(exc)
        else:
            self._done.set_result(None)

    def _batches(self) -> Iterator[tuple[list[str], list[str]]]:
        while True:
            window = self._next()
            if window is None:
                # No window is coming: write what is buffered while the last batches run,
                # so that only their rows are written once the model is done.
                if not self.stopping.is_set():
                    self._writer.flush()
                return
            texts, counts = self._open_window(window)
            for indices in plan(self._ingestor.embedder, counts) if texts else ():
                batch = [texts[i] for i in indices]
                yield batch, batch
            self._commit_finished()

    def _next(self) -> _Window | None:
        while not self.stopping.is_set():
            try:
                return self._windows.get(timeout=self.poll)
            except queue.Empty:
                continue
        return None

    def _open_window(self, window: _Window) -> tuple[list[str], list[int]]:
        """Hand a window's cached vectors to the writer; returns the texts left to embed."""
        ingestor, writer = self._ingestor, self._writer
        embedding = _Embedding(window.files)
        self._open.append(embedding)
        writer.expect(window.files)
        # Identical texts (duplicate files, repeated boilerplate) are embedded once.
        by_text: dict[str, list[ChunkRecord]] = {}
        for pending in window.files:
            for c in pending.chunks:
                by_text.setdefault(c.text, []).append(c)
        texts = list(by_text)
        cached = ingestor.cache.get(ingestor.embedder.name, texts, ingestor.embedder.dimension)
        for i, vector in cached.items():
            writer.add(by_text[texts[i]], vector)
        self._report.from_cache += sum(len(by_text[texts[i]]) for i in cached)
        missing, counts = [], []
        for i, text in enumerate(texts):
            if i in cached:
                continue
            embedding.waiting += 1
            if text in self._running:  # in a batch of the window before, still running
                self._running[text].append((embedding, by_text[text]))
            else:
                self._running[text] = [(embedding, by_text[text])]
                missing.append(text)
                counts.append(by_text[text][0].tokens)
        return missing, counts

    def _deliver(self, batch: list[str], vectors: np.ndarray) -> None:
        # The cache is written first: once a batch is paid for, it is never asked for again.
        self._ingestor.cache.put(self._ingestor.embedder.name, batch, vectors)
        self._report.embedded += len(batch)
        for text, vector in zip(batch, vectors, strict=True):
            for embedding, chunks in self._running.pop(text):
                self._writer.add(chunks, vector)
                embedding.waiting -= 1
        self._commit_finished()
        if self.stopping.is_set():
            raise _Stopped

    def _commit_finished(self) -> None:
        """Queue the commits of the oldest windows whose vectors are all with the writer."""
        while self._open and self._open[0].waiting == 0:
            self._writer.commit(self._open.popleft().files)
        self._ingestor._committed(self._writer.finished(), self._report)


@dataclass
class _Window:
    files: list[_Pending] = field(default_factory=list)
    #: Kept as files are added: summing over the files each time was quadratic in them.
    chunk_count: int = 0

    def add(self, pending: _Pending) -> None:
        self.files.append(pending)
        self.chunk_count += len(pending.chunks)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recipe_signature(embedder: Embedder, chunk_tokens: int, overlap: float) -> str:
    """Everything that changes how a file turns into chunks."""
    return hashlib.sha256(f"{RECIPE_VERSION}|{embedder.name}|{chunk_tokens}|{overlap}".encode()).hexdigest()[:16]


def chunk_id(path: str, content_hash: str, signature: str, position: int) -> str:
    """Deterministic: the same file version chunked the same way gets the same ids."""
    stem = hashlib.sha256(f"{path}\0{content_hash}\0{signature}".encode()).hexdigest()[:20]
    return f"{stem}-{position}"


class Ingestor:
    """Runs one ingest into an open index with a given embedder."""

    #: Parse binary formats in worker processes with time and memory limits (off: all
    #: in this process, as before 0.2; benchmarks compare the two).
    isolate_parsing = True

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        settings: Settings,
        cache: EmbeddingCache,
        progress: Progress | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.cache = cache
        self.progress: Progress = progress or _NoProgress()
        self.chunk_tokens = min(
            settings.ingest.chunk_tokens or embedder.default_chunk_tokens, embedder.max_input_tokens
        )
        self.signature = recipe_signature(embedder, self.chunk_tokens, settings.ingest.chunk_overlap)
        # Big enough to keep every embedding request slot busy, small enough that an
        # interrupted run has little pending work.
        self.window_chunks = max(1024, embedder.batch_size * embedder.concurrency * 2)
        #: What this run's embedding calls spent so far (this run's own calls only).
        self.spent = Usage()
        #: Seconds spent parsing files (summed over workers; for benchmarks).
        self.parse_seconds = 0.0
        #: Files handed to the embedder, and files committed (for the failures of a run cut short).
        self._handed: list[str] = []
        self._stored: set[str] = set()

    def run(self, found: Discovery, *, prune: bool = True, started: float | None = None) -> IngestReport:
        """Index what ``discover`` found; ``started`` is when the caller began (for the report's time)."""
        started = time.perf_counter() if started is None else started
        report = IngestReport(index=self.index.name, embedder=self.embedder.name)
        report.skipped = [FileProblem(str(s.path), s.message) for s in found.skipped if not s.unsupported]
        report.unsupported = [
            Unsupported(str(s.path), s.path.suffix.lower() or "no extension") for s in found.skipped if s.unsupported
        ]
        report.failed = [FileProblem(e.path, e.reason) for e in found.errors]

        with self.index.write_lock(self.settings.store.lock_timeout):
            report.repaired = self.index.settle() + self.index.settled_at_open
            self.index.settled_at_open = 0
            known = self.index.files()
            if prune:
                # A link out of the folder that an earlier ingest followed (before links were
                # skipped by default) leaves the index too, though the link itself is still there.
                refused = {str(s.path) for s in found.skipped if s.reason == "outside"}
                self._prune(found.roots, known, {str(p) for p in found.files}, refused, report)
            self.progress.planned(len(found.files))
            window = _Window()
            # The first window is small so that embedding starts as soon as a few files are
            # parsed, and the workers parse the rest meanwhile; windows then double.
            limit = min(FIRST_WINDOW_CHUNKS, self.window_chunks)
            changed: dict[Path, _Changed] = {}
            pool = self._parse_pool()
            writer = _VectorWriter(self)
            embedding = _WindowStream(self, report, writer)
            try:
                # Workers parse the next files while this thread chunks them, the embedding
                # thread embeds the last window, and the writer thread stores the one before.
                for parsed in pool.imap(self._changed_files(found.files, known, report, changed)):
                    self.parse_seconds += parsed.seconds
                    pending = self._chunked(changed.pop(parsed.path), parsed, report)
                    if pending is not None:
                        window.add(pending)
                        self.progress.chunks_queued(len(pending.chunks))
                    else:
                        self.progress.file_done(str(parsed.path))
                    if window.chunk_count >= limit:
                        self._hand_over(window, embedding)
                        window = _Window()
                        limit = min(2 * limit, self.window_chunks)
                self._hand_over(window, embedding)
                embedding.wait()
                self._committed(writer.close(), report)
            except KeyboardInterrupt:
                embedding.stop()
                self._committed(writer.abandon(), report)
                report.interrupted = "interrupted: files not yet stored will be indexed by the next run"
                raise
            except (ProviderError, StoreError) as exc:
                # Everything committed so far stays; cached vectors make the re-run cheap.
                embedding.stop()
                stored = self._committed(writer.abandon(), report)
                report.interrupted = str(exc)
                # The files chunked and not stored failed, with the error: a first ingest
                # against a server that does not embed said "0 added ... 0 failed".
                for path in dict.fromkeys([*self._handed, *(f.record.path for f in window.files)]):
                    if path not in stored:
                        report.failed.append(FileProblem(path, f"not stored: {exc}"))
            except BaseException:
                embedding.stop()
                writer.abandon()
                raise
            finally:
                pool.close()
                report.chunks_total = self.index.chunk_count()
                self.index.mark_changed()
                self._record_usage(report)
                report.seconds = time.perf_counter() - started
        return report

    # --- planning -------------------------------------------------------------------------

    def _prune(
        self,
        roots: Sequence[Path],
        known: dict[str, FileRecord],
        found_files: set[str],
        refused: set[str],
        report: IngestReport,
    ) -> None:
        """Remove files that are gone from a folder being ingested, or now refused (``refused``)."""
        for root in roots:
            prefix = str(root).rstrip(os.sep) + os.sep
            gone = [
                p
                for p in known
                if p.startswith(prefix) and p not in found_files and (p in refused or not os.path.lexists(p))
            ]
            for count in self.index.remove(gone).values():
                report.removed += 1
                report.chunks_removed += count

    def _parse_pool(self) -> ParsePool:
        ingest = self.settings.ingest
        return ParsePool(
            load,
            LoadOptions(ocr=ingest.ocr),
            limits=ParseLimits(timeout=ingest.parse_timeout, memory_mb=ingest.parse_memory_mb),
            workers=ingest.parse_workers,
            # Plain-text formats cannot hang a parser worth a process; they are read here.
            inline=lambda path: not self.isolate_parsing or not _isolated(path),
        )

    def _changed_files(
        self, files: Sequence[Path], known: dict[str, FileRecord], report: IngestReport, changed: dict[Path, _Changed]
    ) -> Iterator[Path]:
        """The files that need parsing; unchanged ones are counted and passed over."""
        for path in files:
            change = self._check(path, known.get(str(path)), report)
            if change is None:
                self.progress.file_done(str(path))
            else:
                changed[path] = change
                yield path

    def _check(self, path: Path, known: FileRecord | None, report: IngestReport) -> _Changed | None:
        """How a file changed, or None when it is unchanged or unreadable."""
        try:
            stat = path.stat()
            if (
                known is not None
                and known.signature == self.signature
                and known.size == stat.st_size
                and known.mtime_ns == stat.st_mtime_ns
            ):
                report.unchanged += 1
                return None
            content_hash = file_hash(path)
        except OSError as exc:
            report.failed.append(FileProblem(str(path), exc.strerror or str(exc)))
            _tell(self.progress, "file_failed", str(path), exc.strerror or str(exc))
            return None
        if known is not None and known.content_hash == content_hash and known.signature == self.signature:
            self.index.touch_file(str(path), stat.st_size, stat.st_mtime_ns)
            report.unchanged += 1
            return None
        return _Changed(stat, content_hash, is_new=known is None)

    def _chunked(self, change: _Changed, parsed: Parsed, report: IngestReport) -> _Pending | None:
        """A parsed file's chunks, or None (and the reason reported) when it could not be read."""
        path, stat, content_hash = parsed.path, change.stat, change.content_hash
        try:
            if parsed.error is not None:
                raise parsed.error
            assert parsed.document is not None
            document = parsed.document
            drafts = chunk_document(
                document,
                self.embedder.count_tokens,
                max_tokens=self.embedder.max_input_tokens,
                target_tokens=self.chunk_tokens,
                overlap=self.settings.ingest.chunk_overlap,
            )
        except DocumentError as exc:
            # The file's previous version, if any, stays indexed: a bad save loses nothing.
            report.failed.append(FileProblem(str(path), exc.reason))
            _tell(self.progress, "file_failed", str(path), exc.reason)
            return None
        key = str(path)
        chunks = [
            ChunkRecord(
                id=chunk_id(key, content_hash, self.signature, d.position),
                path=key,
                # The chunk's own kind marks OCR'd text, which search results show.
                kind=document.kind + (OCR_SUFFIX if d.ocr else ""),
                position=d.position,
                page=d.page,
                heading=HEADING_SEPARATOR.join(d.heading),
                start=d.start,
                end=d.end,
                tokens=d.tokens,
                text=d.text,
            )
            for d in drafts
        ]
        pages = max((s.page for s in document.sections if s.page is not None), default=None)
        record = FileRecord(
            path=key,
            content_hash=content_hash,
            signature=self.signature,
            kind=document.kind,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            pages=pages,
            chunk_count=len(chunks),
            ingested_at=time.time(),
            warnings=tuple(document.warnings),
        )
        _tell(self.progress, "file_loaded", key, len(chunks))
        return _Pending(record, chunks, is_new=change.is_new)

    # --- writing --------------------------------------------------------------------------

    def _hand_over(self, window: _Window, embedding: _WindowStream) -> None:
        """Stage a window's chunks (here, while the model embeds the window before), then
        queue it for embedding."""
        if window.files:
            self.index.stage([c for f in window.files for c in f.chunks])
            embedding.submit(window)
            self._handed.extend(f.record.path for f in window.files)

    def _committed(self, windows: list[tuple[list[_Pending], int]], report: IngestReport) -> set[str]:
        """Count committed windows in the report and tell progress their files are done;
        returns every file committed so far."""
        for files, removed in windows:
            report.chunks_removed += removed
            for pending in files:
                if pending.is_new:
                    report.added += 1
                else:
                    report.updated += 1
                report.chunks_added += len(pending.chunks)
                if pending.record.warnings:
                    report.warnings.append(FileProblem(pending.record.path, "; ".join(pending.record.warnings)))
                self.progress.file_done(pending.record.path)
                self._stored.add(pending.record.path)
        return self._stored

    def _spend(self, usage: Usage) -> None:
        self.spent += usage

    def _record_usage(self, report: IngestReport) -> None:
        """What this run's embedding calls cost, in the report and the index's totals."""
        report.usage = self.spent
        self.index.add_usage("embedding", self.spent)
