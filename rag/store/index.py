"""An index: its manifest (SQLite), its Chroma collection, its write lock, its embedder.

Store layout under ``RAG_HOME``::

    chroma/                         Chroma's own files (embedded mode)
    indexes/NAME/index.db           manifest + keyword index + usage totals
    indexes/NAME/write.lock         held by the one ingest writing NAME
    servers/HOST-PORT/NAME/...      the same, for an index whose vectors live on a server
    cache/embeddings.db             vectors by (embedder, text hash)
    sessions.db                     chat sessions
    uploads/NAME/                   files uploaded to NAME through ``rag serve`` (``rag drop`` removes them)
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import EmbedderMismatchError, IndexDamagedError, IndexLockedError, IndexNotFoundError, UsageError
from rag.settings import Settings
from rag.store.backend import VectorBackend
from rag.store.manifest import Manifest
from rag.store.records import ChunkRecord, FileRecord, from_metadata, to_metadata
from rag.store.vectors import VectorStore, parse_chroma_url
from rag.usage import Usage

_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_index_name(name: str) -> str:
    if not _INDEX_NAME.match(name) or ".." in name:
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


def collection_name(index: str) -> str:
    return f"rag-{index}"


class Index:
    """A named index: its manifest, its vectors, its write lock.  Open with ``Index.open``.

    The index keeps its own consistency rule, so no caller has to: every chunk id is
    written to the manifest (as pending) before its vector is written, and deleted from the
    vectors before it leaves the manifest.  A crash between the two leaves rows that
    ``settle`` cleans up.  Reads may run in any number of threads while one ingest writes.
    """

    def __init__(self, name: str, layout: StoreLayout, manifest: Manifest, vectors: VectorBackend) -> None:
        self.name = name
        self.layout = layout
        self._manifest = manifest
        self._vectors = vectors

    @classmethod
    def open(cls, settings: Settings, name: str | None = None, *, create: bool = False, repair: bool = False) -> Index:
        """Open an index; without ``create``, a missing index is an ``IndexNotFoundError``.

        A manifest that SQLite cannot read is an ``IndexDamagedError``, or with ``repair``
        is set aside (``index.db.damaged``) and rebuilt from the vectors, which hold every
        chunk's text and metadata.
        """
        name = validate_index_name(name or settings.store.index)
        layout = StoreLayout.from_settings(settings)
        directory = layout.index_dir(name)
        if not create and not (directory / "index.db").exists() and not layout.chroma_url:
            raise IndexNotFoundError(name, layout.description)
        vectors = VectorStore.connect(collection_name(name), path=layout.chroma_path, url=layout.chroma_url)
        if not create and not (directory / "index.db").exists() and not vectors.exists():
            raise IndexNotFoundError(name, layout.description)
        path = directory / "index.db"
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
            index = cls(name, layout, Manifest(path), vectors)
            index.rebuild_from_vectors()
            return index
        index = cls(name, layout, manifest, vectors)
        if layout.chroma_url:
            index.sync_from_server()
        return index

    def close(self) -> None:
        self._manifest.close()

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
        """How many chunks hold each phrase (see ``Manifest.document_frequencies``)."""
        return self._manifest.document_frequencies(phrases)

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
        """The ``k`` nearest chunk ids by cosine, best first (ids of an unfinished ingest
        may appear; ``hydrate`` leaves them out)."""
        return self._vectors.query(vector, k, paths=paths, pages=pages)

    def keyword(
        self,
        query: str,
        k: int,
        *,
        paths: Sequence[str] | None = None,
        pages: tuple[int | None, int | None] | None = None,
    ) -> list[tuple[str, float]]:
        """BM25 over live chunks: (id, score) best first."""
        return self._manifest.keyword_search(query, k, paths=paths, pages=pages)

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
        """Hold the index's write lock; another writer waits up to ``timeout`` seconds."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.layout.index_dir(self.name) / "write.lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexLockedError(self.name, timeout) from None
        try:
            yield
        finally:
            lock.release()

    def stage(self, chunks: Iterable[ChunkRecord]) -> None:
        """Announce chunks about to be written (pending until their file is committed)."""
        self._manifest.add_pending(chunks)

    def write_vectors(
        self, chunks: Sequence[ChunkRecord], vectors: np.ndarray, files: Mapping[str, FileRecord]
    ) -> None:
        """Store staged chunks' vectors, text and metadata; ``files`` has each chunk's file."""
        self._vectors.upsert(
            [c.id for c in chunks],
            vectors,
            [c.text for c in chunks],
            [to_metadata(c, files[c.path]) for c in chunks],
        )

    def commit_file(self, record: FileRecord, chunk_ids: Sequence[str]) -> int:
        """Make ``chunk_ids`` (staged, vectors written) the file's chunks; returns how many old ones went."""
        return self.commit_files([(record, chunk_ids)])[0]

    def commit_files(self, files: Sequence[tuple[FileRecord, Sequence[str]]]) -> list[int]:
        """``commit_file`` for many files at once: one transaction, one delete of what they replace."""
        replaced = self._manifest.commit_files(files)
        self._delete([i for ids in replaced for i in ids])
        return [len(ids) for ids in replaced]

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
        removed: dict[str, int] = {}
        for path in paths:
            if self._manifest.file(path) is None:
                continue
            ids = self._manifest.forget_file(path)
            self._delete(ids)
            removed[path] = len(ids)
        return removed

    def settle(self) -> int:
        """Finish what an interrupted ingest left: delete pending and stale ids everywhere."""
        ids = self._manifest.unsettled()
        self._delete(ids)
        return len(ids)

    def _delete(self, ids: Sequence[str]) -> None:
        # Vectors first: the manifest must know every id the vector store holds.
        if ids:
            self._vectors.delete(ids)
            self._manifest.purge(ids)

    def mark_changed(self) -> None:
        """Tell other machines sharing the Chroma server that this index changed."""
        generation = uuid.uuid4().hex
        self._manifest.set_meta("last_ingest", time.time())
        if self.layout.chroma_url and self._vectors.exists():
            self._vectors.set_metadata({"rag_generation": generation})
            self._manifest.set_meta("generation", generation)

    # --- usage ----------------------------------------------------------------------------

    def add_usage(self, kind: str, usage: Usage) -> None:
        """Add what an API call spent to the index's totals (shown by ``rag status``)."""
        self._manifest.add_usage(kind, usage)

    def usage(self) -> list[dict[str, Any]]:
        return self._manifest.usage()

    # --- server mode ----------------------------------------------------------------------

    def sync_from_server(self) -> None:
        """Rebuild the local manifest from the server when another machine changed it.

        On a Chroma server the collection is the source of truth (it holds vectors, text
        and metadata); the local manifest and keyword index are a cache of it, checked
        against the collection's generation stamp on every open.
        """
        if not self._vectors.exists():
            return
        remote = self._vectors.metadata
        generation = remote.get("rag_generation")
        if generation is None or generation == self._manifest.get_meta("generation"):
            return
        self._rebuild_manifest(remote, str(generation))

    def rebuild_from_vectors(self) -> None:
        """Rebuild the manifest and the keyword index from the vectors (``rag repair``).

        The vectors hold each chunk's text and metadata, so files and chunks come back whole;
        the usage totals, kept only in the manifest, start again from zero.
        """
        remote = self._vectors.metadata if self._vectors.exists() else {}
        generation = remote.get("rag_generation")
        self._rebuild_manifest(remote, None if generation is None else str(generation))

    def _rebuild_manifest(self, remote: dict[str, Any], generation: str | None) -> None:
        path = self._manifest.path
        self._manifest.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        manifest = Manifest(path)
        files: dict[str, tuple[FileRecord, list[str]]] = {}
        for page in self._vectors.records():
            chunks = []
            for cid, text, meta in page:
                chunk, record = from_metadata(cid, text, meta)
                chunks.append(chunk)
                files.setdefault(chunk.path, (record, []))[1].append(cid)
            manifest.add_pending(chunks)
        for record, ids in files.values():
            manifest.commit_file(replace(record, chunk_count=len(ids), ingested_at=time.time()), ids)
        for key in ("rag_embedder", "rag_dimension"):
            if key in remote:
                manifest.set_meta(key.removeprefix("rag_"), remote[key])
        if generation is not None:
            manifest.set_meta("generation", generation)
        self._manifest = manifest

    # --- removing -------------------------------------------------------------------------

    def drop(self) -> None:
        """Delete the index: its vectors and its local files."""
        self._vectors.drop()
        self._manifest.close()
        shutil.rmtree(self.layout.index_dir(self.name), ignore_errors=True)
        shutil.rmtree(self.layout.eval_dir(self.name), ignore_errors=True)
        shutil.rmtree(self.layout.uploads_dir(self.name), ignore_errors=True)

    # --- reporting ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes on disk: the manifest plus, when embedded, this collection's vectors."""
        total = sum(p.stat().st_size for p in self.layout.index_dir(self.name).glob("*") if p.is_file())
        return total + self._vectors.size_bytes()
