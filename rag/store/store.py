"""``Store``: one ``RAG_HOME``, shared by every index, engine and thread that uses it.

The store owns what is expensive or must be single: embedders (a local model is loaded
once, however many indexes use it), answerers, the embedding cache, and one open ``Index``
per index name.  ``store.index(name)`` gives an ``Engine`` for one index; engines are
cheap and any number of threads may use them, and the store, at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.embed import factory
from rag.embed.base import Embedder
from rag.errors import StoreError
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, StoreLayout, SyncProgress, server_index_names, validate_index_name

if TYPE_CHECKING:
    from rag.answer.base import Answerer
    from rag.chat.sessions import Sessions
    from rag.engine import Engine
    from rag.moderation import Moderator


@dataclass(frozen=True)
class IndexInfo:
    """What ``rag status`` shows for one index."""

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "name": self.name,
            "embedder": self.embedder,
            "files": self.files,
            "types": self.types,
            "chunks": self.chunks,
            "size_bytes": self.size_bytes,
            "last_ingest": self.last_ingest,
            "usage": self.usage,
            "error": self.error,
        }


class Store:
    """Every index under one home folder, with the models they share.

    >>> store = Store("/tmp/rag-demo")                     # doctest: +SKIP
    >>> notes, papers = store.index("notes"), store.index("papers")   # doctest: +SKIP

    ``settings`` defaults to ``Settings.load()`` (config file, ``.env``, environment);
    keyword ``overrides`` use ``section__field`` names, e.g. ``retrieval__k=8``.
    """

    def __init__(self, home: str | Path | None = None, settings: Settings | None = None, **overrides: Any) -> None:
        settings = settings or Settings.load()
        if home is not None:
            overrides["store__home"] = Path(home).expanduser()
        if overrides:
            settings = settings.with_options(**overrides)
        self.settings = settings
        self.layout = StoreLayout.from_settings(settings)
        self._lock = threading.RLock()
        self._indexes: dict[str, Index] = {}
        self._retired: list[Index] = []
        self._embedders: dict[str, Embedder] = {}
        self._answerers: dict[tuple[Any, ...], Answerer] = {}
        self._cache: EmbeddingCache | None = None
        #: Shown progress while an index's local cache is built from a Chroma server.
        self.sync_progress: SyncProgress | None = None
        self._moderator: Moderator | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.layout.home)!r})"

    # --- indexes --------------------------------------------------------------------------

    def index(self, name: str | None = None, **overrides: Any) -> Engine:
        """An ``Engine`` for index ``name`` (``RAG_INDEX`` or ``default`` when None)."""
        from rag.engine import Engine

        return Engine(index=name, store=self, **overrides)

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

    # --- shared models --------------------------------------------------------------------

    def embedder(self, name: str) -> Embedder:
        """The embedder called ``name`` (``provider:model``), loaded once for the whole store."""
        with self._lock:
            embedder = self._embedders.get(name)
            if embedder is None:
                embedder = factory.create(name, self.settings)
                self._embedders[name] = embedder
                # A provider's default (``local``) and its full name share one instance.
                self._embedders.setdefault(embedder.name, embedder)
            return embedder

    def embedders_loaded(self) -> list[str]:
        """The embedding models this store has loaded, each once, by name."""
        with self._lock:
            return sorted({e.name for e in self._embedders.values()})

    def answerer(
        self, name: str, *, model: str, min_relevance: float, embedder: str, build: Callable[[], Answerer]
    ) -> Answerer:
        """The answerer ``name`` for these parameters, built once by ``build`` and then shared."""
        key = (name, model, min_relevance, embedder)
        with self._lock:
            answerer = self._answerers.get(key)
            if answerer is None:
                answerer = self._answerers[key] = build()
            return answerer

    def embedding_cache(self) -> EmbeddingCache:
        """Vectors already computed, shared by every index (keyed by embedder and text)."""
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(self.layout.cache_path)
            return self._cache

    def moderator(self) -> Moderator:
        """The moderation check (``RAG_MODERATION``), one client for the whole store."""
        from rag.moderation import Moderator

        with self._lock:
            if self._moderator is None:
                self._moderator = Moderator(self.settings)
            return self._moderator

    # --- sessions -------------------------------------------------------------------------

    def sessions(self) -> Sessions:
        """The saved chat sessions: list, read and delete them."""
        from rag.chat.sessions import Sessions

        return Sessions(self.layout.sessions_path)

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Release models, connections and files."""
        with self._lock:
            for index in [*self._indexes.values(), *self._retired]:
                index.close()
            self._retired.clear()
            for embedder in {id(e): e for e in self._embedders.values()}.values():
                embedder.close()
            for answerer in self._answerers.values():
                answerer.close()
            if self._moderator is not None:
                self._moderator.close()
            if self._cache is not None:
                self._cache.close()
            self._indexes.clear()
            self._embedders.clear()
            self._answerers.clear()
            self._cache = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
