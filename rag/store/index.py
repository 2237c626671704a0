"""An index: its manifest (SQLite), its Chroma collection, its write lock, its embedder.

Store layout under ``RAG_HOME``::

    chroma/                         Chroma's own files (embedded mode)
    indexes/NAME/index.db           manifest + keyword index + usage totals
    indexes/NAME/write.lock         held by the one ingest writing NAME
    servers/HOST-PORT/NAME/...      the same, for an index whose vectors live on a server
    cache/embeddings.db             vectors by (embedder, text hash)
    sessions.db                     chat sessions
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import EmbedderMismatchError, IndexLockedError, IndexNotFoundError, StoreError, UsageError
from rag.settings import Settings
from rag.store.manifest import ChunkRecord, FileRecord, Manifest
from rag.store.vectors import VectorStore, parse_chroma_url

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

    def index_names(self) -> list[str]:
        if not self.indexes_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.indexes_dir.glob("*/index.db"))


def collection_name(index: str) -> str:
    return f"rag-{index}"


class Index:
    """A named index.  Open with ``Index.open``; close when done."""

    def __init__(self, name: str, layout: StoreLayout, manifest: Manifest, vectors: VectorStore) -> None:
        self.name = name
        self.layout = layout
        self.manifest = manifest
        self.vectors = vectors

    @classmethod
    def open(cls, settings: Settings, name: str | None = None, *, create: bool = False) -> Index:
        """Open an index; without ``create``, a missing index is an ``IndexNotFoundError``."""
        name = validate_index_name(name or settings.store.index)
        layout = StoreLayout.from_settings(settings)
        directory = layout.index_dir(name)
        if not create and not (directory / "index.db").exists() and not layout.chroma_url:
            raise IndexNotFoundError(name, layout.description)
        vectors = VectorStore.connect(collection_name(name), path=layout.chroma_path, url=layout.chroma_url)
        if not create and not (directory / "index.db").exists() and not vectors.exists():
            raise IndexNotFoundError(name, layout.description)
        index = cls(name, layout, Manifest(directory / "index.db"), vectors)
        if layout.chroma_url:
            index.sync_from_server()
        return index

    def close(self) -> None:
        self.manifest.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- embedder record ------------------------------------------------------------------

    @property
    def embedder_name(self) -> str | None:
        value = self.manifest.get_meta("embedder")
        return str(value) if value else None

    @property
    def dimension(self) -> int | None:
        value = self.manifest.get_meta("dimension")
        return int(value) if value else None

    def bind_embedder(self, name: str, dimension: int) -> None:
        """Record the embedder on first use; refuse a different one afterwards."""
        recorded = self.embedder_name
        if recorded is None:
            remote = self.vectors.metadata.get("rag_embedder") if self.vectors.exists() else None
            if remote and remote != name:
                raise EmbedderMismatchError(self.name, str(remote), name)
            self.manifest.set_meta("embedder", name)
            self.manifest.set_meta("dimension", dimension)
            self.vectors.create({"rag_embedder": name, "rag_dimension": dimension})
            return
        if recorded != name:
            raise EmbedderMismatchError(self.name, recorded, name)
        if not self.vectors.exists():
            self.vectors.create({"rag_embedder": name, "rag_dimension": dimension})

    # --- writing --------------------------------------------------------------------------

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

    def settle(self) -> int:
        """Finish what an interrupted ingest left: delete pending and stale ids everywhere."""
        ids = self.manifest.unsettled()
        if ids:
            self.vectors.delete(ids)
            self.manifest.purge(ids)
        return len(ids)

    def mark_changed(self) -> None:
        """Tell other machines sharing the Chroma server that this index changed."""
        generation = uuid.uuid4().hex
        self.manifest.set_meta("last_ingest", time.time())
        if self.layout.chroma_url and self.vectors.exists():
            self.vectors.set_metadata({"rag_generation": generation})
            self.manifest.set_meta("generation", generation)

    # --- server mode ----------------------------------------------------------------------

    def sync_from_server(self) -> None:
        """Rebuild the local manifest from the server when another machine changed it.

        On a Chroma server the collection is the source of truth (it holds vectors, text
        and metadata); the local manifest and keyword index are a cache of it, checked
        against the collection's generation stamp on every open.
        """
        if not self.vectors.exists():
            return
        remote = self.vectors.metadata
        generation = remote.get("rag_generation")
        if generation is None or generation == self.manifest.get_meta("generation"):
            return
        self._rebuild_manifest(remote, str(generation))

    def _rebuild_manifest(self, remote: dict[str, Any], generation: str) -> None:
        collection = self.vectors._require()
        path = self.manifest.path
        self.manifest.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        self.manifest = Manifest(path)
        files: dict[str, dict[str, Any]] = {}
        offset, page = 0, 2000
        while True:
            try:
                got = collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            except Exception as exc:
                raise StoreError(f"Chroma at {self.vectors.location}: {exc}") from exc
            if not got["ids"]:
                break
            records = []
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                meta = meta or {}
                records.append(
                    ChunkRecord(
                        id=cid,
                        path=str(meta.get("source", "")),
                        kind=str(meta.get("kind", "text")),
                        position=int(meta.get("position", 0)),
                        page=int(meta["page"]) if "page" in meta else None,
                        heading=str(meta.get("heading", "")),
                        start=int(meta.get("start", 0)),
                        end=int(meta.get("end", 0)),
                        tokens=int(meta.get("tokens", 0)),
                        text=text or "",
                    )
                )
                info = files.setdefault(records[-1].path, {"ids": [], "meta": meta})
                info["ids"].append(cid)
            self.manifest.add_pending(records)
            offset += len(got["ids"])
        for file_path, info in files.items():
            meta = info["meta"]
            record = FileRecord(
                path=file_path,
                content_hash=str(meta.get("file_hash", "")),
                signature=str(meta.get("signature", "")),
                kind=str(meta.get("kind", "text")),
                size=int(meta.get("file_size", -1)),
                mtime_ns=int(meta.get("file_mtime_ns", -1)),
                pages=None,
                chunk_count=len(info["ids"]),
                ingested_at=time.time(),
            )
            self.manifest.commit_file(record, info["ids"])
        for key in ("rag_embedder", "rag_dimension"):
            if key in remote:
                self.manifest.set_meta(key.removeprefix("rag_"), remote[key])
        self.manifest.set_meta("generation", generation)

    # --- removing -------------------------------------------------------------------------

    def drop(self) -> None:
        """Delete the index: its Chroma collection and its local files."""
        self.vectors.drop()
        self.manifest.close()
        shutil.rmtree(self.layout.index_dir(self.name), ignore_errors=True)
        shutil.rmtree(self.layout.eval_dir(self.name), ignore_errors=True)

    # --- reporting ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes on disk: the manifest plus, when embedded, this collection's Chroma segments."""
        total = sum(p.stat().st_size for p in self.layout.index_dir(self.name).glob("*") if p.is_file())
        if not self.layout.chroma_url and self.vectors.exists():
            for segment in _segment_dirs(self.layout.chroma_path, self.vectors):
                total += sum(p.stat().st_size for p in segment.rglob("*") if p.is_file())
        return total


def _segment_dirs(chroma_path: Path, vectors: VectorStore) -> list[Path]:
    """Chroma keeps each collection's vector segment in a folder named by segment id."""
    import sqlite3

    db = chroma_path / "chroma.sqlite3"
    if not db.exists():
        return []
    try:
        collection_id = str(vectors._require().id)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute("SELECT id FROM segments WHERE collection = ?", (collection_id,)).fetchall()
    except (sqlite3.Error, StoreError):
        return []
    return [chroma_path / row[0] for row in rows if (chroma_path / row[0]).is_dir()]
