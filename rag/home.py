"""``Store``: the composition root, one ``RAG_HOME`` shared by every index, engine and thread.

It owns what is expensive or must be single: the open indexes and the embedding cache
(``rag.store.store.OpenIndexes``, which it extends), embedders (a local model is loaded
once, however many indexes use it), answerers, the moderation client and the chat
sessions.  ``store.index(name)`` gives an ``Engine`` for one index; engines are cheap and
any number of threads may use them, and the store, at once.

It sits above ``rag.engine``, which sees it only as ``engine.Resources``: the engine never
imports what builds engines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag import engine
from rag.answer.base import Answerer
from rag.chat.sessions import Sessions
from rag.embed import factory
from rag.embed.base import Embedder
from rag.engine import Engine
from rag.moderation import Moderator
from rag.settings import Settings
from rag.store.store import OpenIndexes

__all__ = ["Store"]


class Store(OpenIndexes):
    """Every index under one home folder, with the models they share.

    >>> store = Store("/tmp/rag-demo")                     # doctest: +SKIP
    >>> notes, papers = store.index("notes"), store.index("papers")   # doctest: +SKIP

    ``settings`` defaults to ``Settings.load()`` (config file, ``.env``, environment);
    keyword ``overrides`` use ``section__field`` names, e.g. ``retrieval__k=8``.
    ``cache_path`` keeps embeddings elsewhere than ``RAG_HOME/cache``.
    """

    def __init__(
        self,
        home: str | Path | None = None,
        settings: Settings | None = None,
        *,
        cache_path: Path | None = None,
        **overrides: Any,
    ) -> None:
        settings = settings or Settings.load()
        if home is not None:
            overrides["store__home"] = Path(home).expanduser()
        if overrides:
            settings = settings.with_options(**overrides)
        super().__init__(settings, cache_path=cache_path)
        self._embedders: dict[str, Embedder] = {}
        self._answerers: dict[tuple[Any, ...], Answerer] = {}
        self._moderator: Moderator | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.layout.home)!r})"

    def index(self, name: str | None = None, **overrides: Any) -> Engine:
        """An ``Engine`` for index ``name`` (``RAG_INDEX`` or ``default`` when None)."""
        return Engine(index=name, store=self, **overrides)

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

    def moderator(self) -> Moderator:
        """The moderation check (``RAG_MODERATION``), one client for the whole store."""
        with self._lock:
            if self._moderator is None:
                self._moderator = Moderator(self.settings)
            return self._moderator

    def sessions(self) -> Sessions:
        """The saved chat sessions: list, read and delete them."""
        return Sessions(self.layout.sessions_path)

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Release models, connections and files."""
        with self._lock:
            for embedder in {id(e): e for e in self._embedders.values()}.values():
                embedder.close()
            for answerer in self._answerers.values():
                answerer.close()
            if self._moderator is not None:
                self._moderator.close()
            self._embedders.clear()
            self._answerers.clear()
            super().close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ``Engine(store="folder")`` opens a store of its own: this one.
engine.open_store = Store
