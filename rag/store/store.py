"""The indexes of one ``RAG_HOME``, each open once, and the embedding cache they share.

Persistence only: the models, answerers and chat sessions that engines share, and the
engines themselves, belong to ``rag.home.Store`` above, which builds on this.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import StoreError
from rag.jsonable import Jsonable
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, StoreLayout, SyncProgress, server_index_names, validate_index_name

__all__ = ["IndexInfo", "OpenIndexes"]


@dataclass(frozen=True)
class IndexInfo(Jsonable):
    """What ``rag status`` shows for one index."""

    json_order = (
        "server",
        "name",
        "embedder",
        "files",
        "types",
        "chunks",
        "size_bytes",
        "last_ingest",
        "usage",
        "error",
    )

    name: str
    embedder: str | None
    files: int
    chunks: int
    size_bytes: int
    last_ingest: float | None
    usage: list[dict[str, Any]]
    #: Files per kind, e.g. ``{"pdf": 3, "docx": 2}``.
    types: dict[str, int] = field(default_factory=dict)
    #: For an index on a Chroma server: server, generation, lease holder, how far behind.
    server: dict[str, Any] | None = None
    #: Why the index could not be read (damaged, server unreachable); the counts are then 0.
    error: str | None = None


class OpenIndexes:
    """One open ``Index`` per name under one home folder, and the embedding cache.

    Any number of threads may use it at once.  ``cache_path`` puts the embedding cache
    elsewhere than the home's (a temporary eval store shares the user's).
    """

    def __init__(self, settings: Settings, *, cache_path: Path | None = None) -> None:
        self.settings = settings
        self.layout = StoreLayout.from_settings(settings)
        self._lock = threading.RLock()
        self._indexes: dict[str, Index] = {}
        self._retired: list[Index] = []
        self._cache: EmbeddingCache | None = None
        self._cache_path = cache_path or self.layout.cache_path
        #: Shown progress while an index's local cache is built from a Chroma server.
        self.sync_progress: SyncProgress | None = None

    def index_names(self) -> list[str]:
        """The indexes in this store, by name: on a Chroma server, those this machine has not
        opened yet too."""
        names = set(self.layout.index_names())
        if self.layout.chroma_url:
            names.update(server_index_names(self.layout.chroma_url))
        return sorted(names)

    def open_index(self, name: str, *, create: bool = False, repair: bool = False) -> Index:
        """The store's one open ``Index`` called ``name``; ``IndexNotFoundError`` unless it exists or ``create``.

        ``repair`` rebuilds a damaged manifest from the vectors instead of raising ``IndexDamagedError``.
        """
        name = validate_index_name(name)
        with self._lock:
            index = self._indexes.get(name)
            if index is not None and index.replaced:
                # Rebuilt or dropped by another process: open it afresh.  Threads may still
                # be reading the old handle, so it is closed with the store, not now.
                self._retired.append(self._indexes.pop(name))
                index = None
            if index is None:
                index = Index.open(self.settings, name, create=create, repair=repair, progress=self.sync_progress)
                self._indexes[name] = index
            return index

    def forget_index(self, name: str) -> None:
        """Stop serving ``name`` from the open indexes (it was dropped)."""
        with self._lock:
            self._indexes.pop(name, None)

    def indexes(self) -> list[IndexInfo]:
        """Every index in the store, with its size and usage totals.

        One index that cannot be read (damaged, or its server down) is listed with its
        ``error``; the others are still reported.
        """
        infos = []
        for name in self.index_names():
            try:
                index = self.open_index(name)
                info = IndexInfo(
                    name=name,
                    embedder=index.embedder_name,
                    files=index.file_count(),
                    chunks=index.chunk_count(),
                    size_bytes=index.size_bytes(),
                    last_ingest=index.last_ingest,
                    usage=index.usage(),
                    types=index.file_kinds(),
                    server=index.server_status(),
                )
            except StoreError as exc:
                info = IndexInfo(name, None, 0, 0, 0, None, [], error=str(exc))
            infos.append(info)
        return infos

    def embedding_cache(self) -> EmbeddingCache:
        """Vectors already computed, shared by every index (keyed by embedder and text)."""
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(self._cache_path)
            return self._cache

    def close(self) -> None:
        """Close every index and the cache."""
        with self._lock:
            for index in [*self._indexes.values(), *self._retired]:
                index.close()
            self._indexes.clear()
            self._retired.clear()
            if self._cache is not None:
                self._cache.close()
                self._cache = None
