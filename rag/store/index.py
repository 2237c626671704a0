"""An index: its manifest (SQLite), its Chroma collection, its write lock, its embedder.

Store layout under ``RAG_HOME``::

    chroma/                         Chroma's own files (embedded mode)
    indexes/NAME/index.db           manifest + usage totals
    indexes/NAME/keyword/           Tantivy keyword index (rag.store.keyword)
    indexes/NAME/write.lock         held by the one ingest writing NAME (on this machine)
    servers/HOST-PORT/NAME/...      the same, for an index whose vectors live on a server
    cache/embeddings.db             vectors by (embedder, text hash)
    sessions.db                     chat sessions
    uploads/NAME/                   files uploaded to NAME through ``rag serve`` (``rag drop`` removes them)
"""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from rag.errors import EmbedderMismatchError, IndexDamagedError, IndexLockedError, IndexNotFoundError, UsageError
from rag.settings import Settings
from rag.store.backend import VectorBackend
from rag.store.keyword import KeywordIndex
from rag.store.manifest import Manifest
from rag.store.records import ChunkRecord, FileRecord, from_metadata, to_metadata
from rag.store.remote import GEN_KEY, ChangeLog, Lease, drop_leases
from rag.store.vectors import VectorStore, parse_chroma_url
from rag.usage import Usage

_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def is_index_name(name: str) -> bool:
    return _INDEX_NAME.match(name) is not None and ".." not in name


def validate_index_name(name: str) -> str:
    if not is_index_name(name):
        raise UsageError(
            f"invalid index name {name!r}: use up to 63 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class StoreLayout:
    """Where an index's files live, for one ``RAG_HOME`` and Chroma location."""

    home: Path
    chroma_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreLayout:
        return cls(settings.store.home.expanduser(), settings.store.chroma_url)

    @property
    def indexes_dir(self) -> Path:
        if self.chroma_url:
            host, port, _ = parse_chroma_url(self.chroma_url)
            return self.home / "servers" / f"{host}-{port}"
        return self.home / "indexes"

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def cache_path(self) -> Path:
        return self.home / "cache" / "embeddings.db"

    @property
    def sessions_path(self) -> Path:
        return self.home / "sessions.db"

    @property
    def description(self) -> str:
        return f"{self.home} (Chroma server {self.chroma_url})" if self.chroma_url else str(self.home)

    def index_dir(self, name: str) -> Path:
        return self.indexes_dir / validate_index_name(name)

    def eval_dir(self, name: str) -> Path:
        """Where ``rag eval --index NAME`` keeps the dataset's documents as files."""
        return self.home / "eval" / validate_index_name(name)

    def uploads_dir(self, name: str) -> Path:
        """Where ``rag serve`` keeps the files uploaded to index NAME."""
        return self.home / "uploads" / validate_index_name(name)

    def index_names(self) -> list[str]:
        if not self.indexes_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.indexes_dir.glob("*/index.db"))


class _Rebuilt(NamedTuple):
    chunks: int  # chunks read from the vectors
    dropped: list[str]  # files whose chunks were not all there


def _complete_versions(
    versions: Mapping[tuple[str, str, str], tuple[FileRecord, list[tuple[int, str]]]],
) -> list[tuple[FileRecord, list[str]]]:
    """Of each file's versions, the newest whose chunks are provably all there: as many as
    its chunk count, at positions 0 to count - 1 (chunks written before the count was
    stored carry none: their positions must run from 0 without a gap)."""
    best: dict[str, tuple[FileRecord, list[str]]] = {}
    for (path, _, _), (record, found) in versions.items():
        positions = {position for position, _ in found}
        expected = record.chunk_count or len(found)
        if len(found) != expected or positions != set(range(expected)):
            continue
        kept = best.get(path)
        if kept is None or record.mtime_ns > kept[0].mtime_ns:
            best[path] = (record, [cid for _, cid in sorted(found)])
    return list(best.values())


def collection_name(index: str) -> str:
    return f"rag-{index}"


def server_index_names(url: str) -> list[str]:
    """The indexes on the Chroma server at ``url``: its collections named ``rag-NAME``."""
    found = []
    server = VectorStore.connect("", url=url)  # no collection of its own: it only lists
    try:
        for name in server.collection_names():
            index = name.removeprefix("rag-")
            if index != name and is_index_name(index):
                found.append(index)
    finally:
        server.close()
    return found


T = TypeVar("T")

#: Called as a cache is built from a server: (chunks done, chunks in all).
SyncProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Server:
    """An index's coordination records on a Chroma server (see ``rag.store.remote``)."""

    url: str
    lease: Lease
    log: ChangeLog


@dataclass(frozen=True)
class SyncReport:
    """What bringing this machine's cache up to the server's generation took."""

    generation: int
    behind: int  # generations applied
    records: int  # change-log records read
    fetched: int  # chunks read from the server
    removed: int  # chunks dropped locally
    rebuilt: bool  # the whole cache was rebuilt (first sight, or the log was trimmed past it)
    seconds: float


class Index:
    """A named index: its manifest, its vectors, its write lock.  Open with ``Index.open``.

    The index keeps its own consistency rule, so no caller has to: every chunk id is
    written to the manifest (as pending) before its vector is written, and deleted from the
    vectors before it leaves the manifest.  A crash between the two leaves rows that
    ``settle`` cleans up.  Reads may run in any number of threads while one ingest writes.
    """

    def __init__(
        self,
        name: str,
        layout: StoreLayout,
        manifest: Manifest,
        vectors: VectorBackend,
        keyword: KeywordIndex | None = None,
        server: Server | None = None,
    ) -> None:
        self.name = name
        self.layout = layout
        self._manifest = manifest
        self._vectors = vectors
        self._keyword = keyword or KeywordIndex(layout.index_dir(name) / "keyword")
        self._keyword_dirty = False
        self._server = server
        self._writing = False
        self._memo: dict[Hashable, Any] = {}
        self._memo_version: tuple[int, int] | None = None
        #: Chunks a killed writer left that ``open`` settled, not yet reported by an ingest.
        self.settled_at_open = 0
        #: What the last catch-up with the server did (None before one, and when embedded).
        self.last_sync: SyncReport | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        name: str | None = None,
        *,
        create: bool = False,
        repair: bool = False,
        progress: SyncProgress | None = None,
    ) -> Index:
        """Open an index; without ``create``, a missing index is an ``IndexNotFoundError``.

        A manifest that SQLite cannot read is an ``IndexDamagedError``, or with ``repair``
        is set aside (``index.db.damaged``) and rebuilt from the vectors, which hold every
        chunk's text and metadata.  On a Chroma server, this machine's cache first catches
        up with the server.
        """
        name = validate_index_name(name or settings.store.index)
        layout = StoreLayout.from_settings(settings)
        directory = layout.index_dir(name)
        if not create and not (directory / "index.db").exists() and not layout.chroma_url:
            raise IndexNotFoundError(name, layout.description)
        vectors = VectorStore.connect(collection_name(name), path=layout.chroma_path, url=layout.chroma_url)
        with ExitStack() as on_failure:  # an index that fails to open leaves nothing open
            on_failure.callback(vectors.close)
            if not create and not (directory / "index.db").exists() and not vectors.exists():
                raise IndexNotFoundError(name, layout.description)
            server = None
            if layout.chroma_url:
                client = vectors.client
                server = Server(
                    layout.chroma_url, Lease(client, name, settings.store.lease_ttl), ChangeLog(client, name)
                )
            path = directory / "index.db"
            rebuild = False
            try:
                manifest = Manifest(path)
            except sqlite3.DatabaseError as exc:
                recoverable = vectors.exists()
                if not (repair and recoverable):
                    raise IndexDamagedError(name, path, str(exc), recoverable=recoverable) from None
                for suffix in ("", "-wal", "-shm"):
                    damaged = Path(f"{path}{suffix}")
                    if damaged.exists():
                        damaged.replace(Path(f"{path}.damaged{suffix}"))
                manifest, rebuild = Manifest(path), True
            on_failure.callback(manifest.close)
            index = cls(name, layout, manifest, vectors, server=server)
            on_failure.pop_all()
            on_failure.callback(index.close)
            if rebuild:
                index.rebuild_from_vectors()
            elif server is not None:
                index.sync(progress)
            else:
                index._fill_keyword(progress)
                index._settle_if_idle()
            on_failure.pop_all()
            return index

    def close(self) -> None:
        self._keyword.close()
        self._manifest.close()
        self._vectors.close()

    @property
    def replaced(self) -> bool:
        """True when another process dropped this index or rebuilt its manifest (``rag drop``,
        ``rag repair``) since it was opened: this handle reads a file no longer there."""
        try:
            return self.layout.index_dir(self.name).joinpath("index.db").stat().st_ino != self._manifest.inode
        except FileNotFoundError:
            return self._server is None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- embedder record ------------------------------------------------------------------

    @property
    def embedder_name(self) -> str | None:
        value = self._manifest.get_meta("embedder")
        return str(value) if value else None

    @property
    def dimension(self) -> int | None:
        value = self._manifest.get_meta("dimension")
        return int(value) if value else None

    def bind_embedder(self, name: str, dimension: int) -> None:
        """Record the embedder on first use; refuse a different one afterwards."""
        recorded = self.embedder_name
        if recorded is None:
            remote = self._vectors.metadata.get("rag_embedder") if self._vectors.exists() else None
            if remote and remote != name:
                raise EmbedderMismatchError(self.name, str(remote), name)
            self._manifest.set_meta("embedder", name)
            self._manifest.set_meta("dimension", dimension)
            self._vectors.create({"rag_embedder": name, "rag_dimension": dimension})
            return
        if recorded != name:
            raise EmbedderMismatchError(self.name, recorded, name)
        if not self._vectors.exists():
            self._vectors.create({"rag_embedder": name, "rag_dimension": dimension})

    def unbind_embedder(self) -> bool:
        """Forget the embedder of an index that stores nothing yet, so that a first ingest
        that failed (a server that does not embed) does not pin it.  True if forgotten."""
        if self.embedder_name is None or self.file_count() or (self._vectors.exists() and self._vectors.count()):
            return False
        self._manifest.set_meta("embedder", None)
        self._manifest.set_meta("dimension", None)
        if self._vectors.exists():
            self._vectors.drop()
        return True

    # --- reading --------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        """Every indexed file by path."""
        return self._manifest.files()

    def file(self, path: str) -> FileRecord | None:
        return self._manifest.file(path)

    def file_count(self) -> int:
        return self._manifest.file_count()

    def file_kinds(self) -> dict[str, int]:
        """Files per kind (``pdf``, ``docx``...)."""
        return self._manifest.file_kinds()

    def chunk_count(self) -> int:
        """Live chunks: what searches can return."""
        return self._manifest.chunk_count()

    def document_frequencies(self, phrases: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each phrase (see ``KeywordIndex.document_frequencies``)."""
        return self._keyword.document_frequencies(phrases)

    @property
    def last_ingest(self) -> float | None:
        value = self._manifest.get_meta("last_ingest")
        return float(value) if value else None

    def dense(
        self,
        vector: np.ndarray,
        k: int,
        *,
        paths: Sequence[str] | None = None,
        pages: tuple[int | None, int | None] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest live chunk ids by cosine, best first."""
        if paths and pages is None:
            hits = self._dense_post_filtered(vector, k, paths)
            if hits is not None:
                return hits
        return self._live_nearest(lambda n: self._vectors.query(vector, n, paths=paths, pages=pages), k)

    def _live_nearest(self, nearest: Callable[[int], list[tuple[str, float]]], k: int) -> list[tuple[str, float]]:
        """The first ``k`` live ids of ``nearest(n)``, asking for more when chunks that are
        not live (an ingest under way, or one that died) took places in the top ``n``.

        Each chunk that is not live can take at most one place, so ``k`` plus their number
        always holds ``k`` live ones when that many match; twice ``k`` is asked first, which
        is enough unless most of the nearest are pending (a file being re-ingested).
        """
        extra = self._manifest.unsettled_count()
        if not extra:
            return nearest(k)
        asked = min(k + extra, max(2 * k, k + 8))
        while True:
            hits = nearest(asked)
            live = self._manifest.live_paths([i for i, _ in hits])
            kept = [h for h in hits if h[0] in live]
            if len(kept) >= k or len(hits) < asked or asked >= k + extra:
                return kept[:k]
            asked = k + extra

    #: A path filter that keeps at least this share of the chunks is applied to a larger
    #: unfiltered search instead of inside Chroma, whose metadata filter costs time in
    #: proportion to the chunks it lets through (33 ms at 50,000 chunks for a tenth of them,
    #: 3 ms this way: ``benchmarks/scale.py``).
    post_filter_share = 0.02
    post_filter_most = 2000

    def _dense_post_filtered(self, vector: np.ndarray, k: int, paths: Sequence[str]) -> list[tuple[str, float]] | None:
        """The ``k`` nearest within ``paths``, from the nearest of all; None when the filter
        is too selective for that (or keeps too little for it to pay), or too few of them pass.

        Exact as far as the search itself is: once ``k`` of the nearest ``n`` pass, no chunk
        further than the ``n``-th can beat them.
        """
        sizes, total = self.memo(("chunks per file",), self._chunks_per_file)
        kept = sum(sizes.get(p, 0) for p in paths)
        if not total or kept < k or kept / total < self.post_filter_share:
            return None
        fetch = min(self.post_filter_most, max(2 * k, math.ceil(2 * k * total / kept)))
        if fetch > kept // 2:  # then Chroma reads fewer chunks through its filter than this would
            return None
        nearest = self._live_nearest(lambda n: self._vectors.query(vector, n), fetch)
        allowed = set(paths)
        where = self._manifest.live_paths([i for i, _ in nearest])
        hits = [(i, s) for i, s in nearest if where.get(i) in allowed]
        return hits[:k] if len(hits) >= k else None

    def _chunks_per_file(self) -> tuple[dict[str, int], int]:
        sizes = {p: r.chunk_count for p, r in self.files().items()}
        return sizes, sum(sizes.values())

    def keyword(
        self,
        query: str,
        k: int,
        *,
        paths: Sequence[str] | None = None,
        pages: tuple[int | None, int | None] | None = None,
    ) -> list[tuple[str, float]]:
        """BM25 over live chunks: (id, score) best first."""
        # Chunks of an unfinished ingest are in the keyword index but not live; asking for
        # that many more keeps the top k exact.  There are none outside an ingest.
        extra = self._manifest.unsettled_count()
        hits = self._keyword.search(query, k + extra, paths=paths, pages=pages)
        if extra:
            live = self._manifest.live_paths([i for i, _ in hits])
            hits = [h for h in hits if h[0] in live]
        return hits[:k]

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, remembered until the index's files change: for what searches derive
        from the file list (a path filter over 50,000 files costs tens of milliseconds)."""
        version = self._manifest.version()
        if version != self._memo_version or len(self._memo) > 256:
            self._memo, self._memo_version = {}, version
        if key not in self._memo:
            self._memo[key] = compute()
        return cast(T, self._memo[key])

    def keyword_ids(self) -> set[str]:
        """Every id the keyword index holds (for consistency checks)."""
        return self._keyword.ids()

    def hydrate(self, ids: Sequence[str]) -> dict[str, ChunkRecord]:
        """Live chunks by id; ids that are not live are left out."""
        return self._manifest.chunks(ids)

    def vectors_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk id."""
        return self._vectors.get_vectors(ids)

    def chunks_of(self, path: str) -> list[ChunkRecord]:
        """A file's live chunks in document order."""
        return self._manifest.chunks_of(path)

    def iter_chunks(self, batch: int = 2000) -> Iterator[list[ChunkRecord]]:
        """Every live chunk, a batch at a time."""
        return self._manifest.iter_chunks(batch)

    def live_ids(self) -> set[str]:
        return self._manifest.live_ids()

    def vector_ids(self) -> set[str]:
        """Every id the vector store holds (for consistency checks)."""
        return {i for page in self._vectors.all_ids() for i in page}

    # --- writing (hold ``write_lock``) ----------------------------------------------------

    @contextmanager
    def write_lock(self, timeout: float) -> Iterator[None]:
        """Hold the index's write lock; another writer waits up to ``timeout`` seconds.

        On a Chroma server the lock is the server's writer lease, so writers on other
        machines are kept out too; once it is held, the server is settled and this
        machine's cache caught up, so every commit builds on the latest generation.
        """
        from filelock import FileLock, Timeout

        started = time.monotonic()
        lock = FileLock(str(self.layout.index_dir(self.name) / "write.lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexLockedError(self.name, timeout) from None
        try:
            if self._server is not None:
                self._server.lease.acquire(max(0.0, timeout - (time.monotonic() - started)))
            self._writing = True
            try:
                if self._server is not None:
                    self._settle_server()
                    self.sync()
                yield
            finally:
                self._writing = False
                self._keyword.release()
                if self._server is not None:
                    self._server.lease.release()
        finally:
            lock.release()

    def stage(self, chunks: Iterable[ChunkRecord]) -> None:
        """Announce chunks about to be written (pending until their file is committed)."""
        self._manifest.add_pending(chunks)

    def write_vectors(
        self, chunks: Sequence[ChunkRecord], vectors: np.ndarray, files: Mapping[str, FileRecord]
    ) -> None:
        """Store staged chunks' vectors, text and metadata; ``files`` has each chunk's file."""
        # Tantivy indexes in its own thread, so handing it the chunks first overlaps its
        # work with Chroma's; uncommitted, they become visible in ``commit_files``.
        self._keyword.add(chunks, commit=False)
        self._keyword_dirty = True
        # The collection holds each chunk's text and metadata: a server's other machines,
        # and ``rebuild_from_vectors`` (a damaged manifest), rebuild from it.
        metadatas = [to_metadata(c, files[c.path]) for c in chunks]
        if self._server is not None:
            # Tagged with the generation that will commit them: chunks tagged beyond the
            # server's head belong to a writer that died, and the next one deletes them.
            generation = self._generation() + 1
            metadatas = [{**m, GEN_KEY: generation} for m in metadatas]
        self._vectors.upsert([c.id for c in chunks], vectors, None, metadatas)

    def commit_file(self, record: FileRecord, chunk_ids: Sequence[str]) -> int:
        """Make ``chunk_ids`` (staged, vectors written) the file's chunks; returns how many old ones went."""
        return self.commit_files([(record, chunk_ids)])

    def commit_files(self, files: Sequence[tuple[FileRecord, Sequence[str]]]) -> int:
        """Commit several files at once (one generation on a server); returns how many old chunks went."""
        if not files:
            return 0
        if self._keyword_dirty:
            # Durable in the keyword index before the manifest calls them live.
            self._keyword.commit()
            self._keyword_dirty = False
        generation = None
        if self._server is not None:
            new = [i for _, ids in files for i in ids]
            keep = set(new)
            old = [i for i in self._manifest.live_ids_of([r.path for r, _ in files]) if i not in keep]
            generation = self._commit_generation(added=new, removed=old)
        # One manifest transaction for all of them: a commit per file cost more than a short file.
        stale = [i for ids in self._manifest.commit_files(files) for i in ids]
        self._delete(stale)
        if generation is not None:
            self._manifest.set_meta("generation", generation)
        return len(stale)

    def add_file(self, record: FileRecord, chunks: Sequence[ChunkRecord], vectors: np.ndarray) -> int:
        """Index one file in one go (stage, write, commit); returns how many old chunks it replaced."""
        self.stage(chunks)
        self.write_vectors(chunks, vectors, {record.path: record})
        return self.commit_file(record, [c.id for c in chunks])

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        """Remember a new size and mtime for a file whose content did not change."""
        self._manifest.touch_file(path, size, mtime_ns)

    def remove(self, paths: Iterable[str]) -> dict[str, int]:
        """Remove files from the index; returns the chunks removed per path that was indexed."""
        paths = [p for p in dict.fromkeys(paths) if self._manifest.file(p) is not None]
        if not paths:
            return {}
        generation = None
        if self._server is not None:
            generation = self._commit_generation(added=[], removed=self._manifest.live_ids_of(paths))
        removed: dict[str, int] = {}
        stale: list[str] = []
        for path in paths:
            ids = self._manifest.forget_file(path)
            stale += ids
            removed[path] = len(ids)
        # One delete for all: Chroma's and Tantivy's commit per call made it 70 ms a file
        # (200 files 13.9 s); stale ids left by a crash meanwhile are settled by the next run.
        self._delete(stale)
        if generation is not None:
            self._manifest.set_meta("generation", generation)
        return removed

    def settle(self) -> int:
        """Finish what an interrupted ingest left: delete pending and stale ids everywhere."""
        ids = self._manifest.unsettled()
        self._delete(ids)
        return len(ids)

    def _settle_if_idle(self) -> int:
        """``settle`` at open when no process is writing the index: what a killed writer left
        goes at once, rather than at the next ingest.  A writer at work keeps its pending rows."""
        if not self._manifest.unsettled_count():
            return 0
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.layout.index_dir(self.name) / "write.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return 0
        try:
            self.settled_at_open += self.settle()
            return self.settled_at_open
        finally:
            self._keyword.release()
            lock.release()

    def _delete(self, ids: Sequence[str]) -> None:
        # Vectors and keywords first: the manifest must know every id they hold.
        if ids:
            self._vectors.delete(ids)
            self._keyword.delete(ids)
            self._manifest.purge(ids)

    def mark_changed(self) -> None:
        """Record when the index was last written."""
        self._manifest.set_meta("last_ingest", time.time())

    # --- usage ----------------------------------------------------------------------------

    def add_usage(self, kind: str, usage: Usage) -> None:
        """Add what an API call spent to the index's totals (shown by ``rag status``)."""
        self._manifest.add_usage(kind, usage)

    def usage(self) -> list[dict[str, Any]]:
        return self._manifest.usage()

    # --- keyword index -------------------------------------------------------------------

    def _fill_keyword(self, progress: SyncProgress | None = None) -> None:
        """Build the keyword index from the manifest when it is missing (or of an older format)."""
        if not self._keyword.fresh or not self._manifest.chunk_count():
            if self._keyword.fresh:
                self._keyword.mark_filled()
            return
        total = self._manifest.chunk_count()
        done = 0
        try:
            for batch in self._manifest.iter_chunks(5000):
                self._keyword.add(batch, commit=False)
                done += len(batch)
                if progress is not None:
                    progress(done, total)
            self._keyword.commit()
        except ValueError:
            # Tantivy's writer lock is held: another process on this machine is writing the
            # index, and it filled the keyword index when it opened it.
            return
        self._keyword.mark_filled()
        if not self._writing:
            self._keyword.release()

    # --- server mode ----------------------------------------------------------------------

    def _generation(self) -> int:
        """The server generation this machine's cache reflects (-1 when unknown)."""
        value = self._manifest.get_meta("generation")
        return value if isinstance(value, int) else -1

    def _commit_generation(self, *, added: Sequence[str], removed: Sequence[str]) -> int:
        """Record a change on the server as the next generation; returns it.  Lease holders only."""
        assert self._server is not None and self._writing
        self._server.lease.check()
        generation = self._generation() + 1
        self._server.log.commit(generation, added, removed)
        return generation

    def _settle_server(self) -> None:
        """Undo what a writer that died holding the lease left on the server."""
        assert self._server is not None
        if not self._vectors.exists():
            return
        head = self._server.log.head
        # Chunks written for a generation that never committed.
        self._vectors.delete_where({GEN_KEY: {"$gt": head}})
        # Chunks the head generation removed, in case its writer died before deleting them.
        self._vectors.delete(self._server.log.removed_at(head))

    def sync(self, progress: SyncProgress | None = None) -> SyncReport | None:
        """Bring this machine's manifest and keyword index up to the server's generation.

        Applies the change log's generations since the last sync (cost: what changed), or
        rebuilds from the collection when this machine has none or the log no longer
        reaches back (cost: the index).  Skipped when an ingest on this machine holds the
        index: it syncs under the lease itself.
        """
        if self._server is None:
            return None
        started = time.perf_counter()
        if not self._writing:
            from filelock import FileLock, Timeout

            lock = FileLock(str(self.layout.index_dir(self.name) / "write.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return None
            try:
                return self._sync(started, progress)
            finally:
                self._keyword.release()
                lock.release()
        return self._sync(started, progress)

    def _sync(self, started: float, progress: SyncProgress | None) -> SyncReport | None:
        assert self._server is not None
        if not self._vectors.exists():
            return None
        log = self._server.log
        head = log.head if log.exists() else 0
        seen = self._generation()
        if seen == head and not self._keyword.fresh:
            self.last_sync = SyncReport(head, 0, 0, 0, 0, False, time.perf_counter() - started)
            return self.last_sync
        changes = log.changes(seen, head) if 0 <= seen <= head and not self._keyword.fresh else None
        if changes is None:
            fetched = self._rebuild(head, progress).chunks
            report = SyncReport(head, head - max(seen, 0), 0, fetched, 0, True, 0.0)
        else:
            records = self._vectors.fetch(changes.added)
            chunks: list[ChunkRecord] = []
            files: dict[str, FileRecord] = {}
            for cid, text, meta in records:
                chunk, record = from_metadata(cid, text, meta)
                chunks.append(chunk)
                files[chunk.path] = replace(record, ingested_at=time.time())
            # Keywords first, as for any write: the manifest never lags behind what they hold.
            self._keyword.delete([*changes.removed, *changes.added], commit=False)
            self._keyword.add(chunks)
            self._manifest.apply_remote(changes.removed, chunks, list(files.values()))
            report = SyncReport(head, head - seen, changes.records, len(chunks), len(changes.removed), False, 0.0)
        self._manifest.set_meta("generation", head)
        self.last_sync = replace(report, seconds=time.perf_counter() - started)
        return self.last_sync

    def rebuild_from_vectors(self) -> list[str]:
        """Rebuild the manifest and the keyword index from the vectors (``rag repair``).

        The vectors hold each chunk's text and metadata, and each chunk its file's chunk
        count and hash, so only files whose chunks are all there come back; the chunks of
        an incomplete one (an ingest killed half way) are deleted, and the next ingest
        indexes the file again.  The usage totals, kept only in the manifest, start from zero.
        Returns the paths of the incomplete files dropped.
        """
        if self._server is not None:
            head = self._server.log.head if self._server.log.exists() else 0
            rebuilt = self._rebuild(head, None)
            self._manifest.set_meta("generation", head)
        else:
            rebuilt = self._rebuild(None, None)
        return rebuilt.dropped

    def _rebuild(self, head: int | None, progress: SyncProgress | None) -> _Rebuilt:
        """Rebuild the manifest and keyword index from the collection.

        On a server, chunks tagged beyond generation ``head`` are left out: they belong to a
        writer that died before committing them.
        """
        remote = self._vectors.metadata if self._vectors.exists() else {}
        path = self._manifest.path
        self._manifest.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        manifest = Manifest(path)
        self._manifest = manifest
        total = self._vectors.count()
        # Every version of every file found: (path, hash, recipe) -> its record and (position, id)s.
        versions: dict[tuple[str, str, str], tuple[FileRecord, list[tuple[int, str]]]] = {}
        done = 0
        for page in self._vectors.records():
            chunks = []
            for cid, text, meta in page:
                if head is not None and meta and int(meta.get(GEN_KEY, 0)) > head:
                    continue  # written for a generation that never committed
                chunk, record = from_metadata(cid, text, meta)
                chunks.append(chunk)
                key = (chunk.path, record.content_hash, record.signature)
                versions.setdefault(key, (record, []))[1].append((chunk.position, cid))
            # Pending until their file proves complete; ``settle`` deletes the rest.
            manifest.add_pending(chunks)
            done += len(chunks)
            if progress is not None:
                progress(done, total)
        now = time.time()
        complete = _complete_versions(versions)
        for record, ids in complete:
            manifest.commit_file(replace(record, chunk_count=len(ids), ingested_at=now), ids)
        kept = {record.path for record, _ in complete}
        dropped = sorted({path for path, _, _ in versions} - kept)
        for meta_key in ("rag_embedder", "rag_dimension"):
            if meta_key in remote:
                manifest.set_meta(meta_key.removeprefix("rag_"), remote[meta_key])
        self._keyword.clear()
        for batch in manifest.iter_chunks(5000):
            self._keyword.add(batch, commit=False)
        self._keyword.commit()
        self._keyword.mark_filled()
        if self._server is None or self._writing:
            self.settle()  # on a server, only the lease holder deletes
        return _Rebuilt(done, dropped)

    def server_status(self) -> dict[str, Any] | None:
        """For an index on a Chroma server: the server, its generation, the lease holder, and
        how many generations this machine's cache is behind (None when embedded)."""
        if self._server is None:
            return None
        head = self._server.log.head if self._server.log.exists() else 0
        seen = self._generation()
        return {
            "server": self._server.url,
            "generation": head,
            "cache_generation": seen if seen >= 0 else None,
            "behind": head - seen if seen >= 0 else head,
            "lease_holder": self._server.lease.holder(),
        }

    # --- removing -------------------------------------------------------------------------

    def drop(self) -> None:
        """Delete the index: its vectors, its records on a server, and its local files."""
        self._vectors.drop()
        if self._server is not None:
            self._server.log.drop()
            drop_leases(self._server.lease._client, self.name)
        self._keyword.close()
        self._manifest.close()
        shutil.rmtree(self.layout.index_dir(self.name), ignore_errors=True)
        shutil.rmtree(self.layout.eval_dir(self.name), ignore_errors=True)
        shutil.rmtree(self.layout.uploads_dir(self.name), ignore_errors=True)

    # --- reporting ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes on disk: the manifest plus, when embedded, this collection's vectors."""
        total = sum(p.stat().st_size for p in self.layout.index_dir(self.name).glob("*") if p.is_file())
        return total + self._vectors.size_bytes()
