"""``Engine``: ingest, search, ask and chat over one index of a ``Store``.

The engine sees its store as ``Resources``: what it uses of the shared models, answerers
and open indexes.  ``rag.home.Store``, the composition root above, is the one that exists;
it sets ``open_store`` so that ``Engine(store="folder")`` can open one without this module
importing what builds engines.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rag.answer.base import Answerer, DeltaCallback, Turn
from rag.answer.focus import Rarity
from rag.embed import factory
from rag.embed.base import Embedder
from rag.embed.local import NAMES as LOCAL_NAMES
from rag.errors import IndexNotFoundError, UsageError
from rag.ingest.discover import discover
from rag.ingest.pipeline import Ingestor, Progress
from rag.results import Answer, Document, Hits, IngestReport, Repaired, document_id
from rag.retrieve import stages
from rag.retrieve.search import Filters, Mode, Retriever
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, StoreLayout, SyncProgress, validate_index_name
from rag.store.records import ChunkRecord
from rag.store.store import IndexInfo
from rag.usage import Usage

if TYPE_CHECKING:
    from rag.chat.conversation import Conversation
    from rag.moderation import Moderator

__all__ = ["AnswerStream", "Engine", "IndexInfo", "Resources", "document_id"]


class Resources(Protocol):
    """What an engine, and whoever holds ``engine.store``, uses of the store it belongs to.

    ``rag.home.Store`` is the one there is; mypy checks that it fits (``rag.home`` sets
    ``open_store`` to it).
    """

    settings: Settings
    layout: StoreLayout
    sync_progress: SyncProgress | None

    def open_index(self, name: str, *, create: bool = False, repair: bool = False) -> Index: ...
    def forget_index(self, name: str) -> None: ...
    def indexes(self) -> list[IndexInfo]: ...
    def embedding_cache(self) -> EmbeddingCache: ...
    def embedder(self, name: str) -> Embedder: ...
    def embedders_loaded(self) -> list[str]: ...
    def answerer(
        self, name: str, *, model: str, min_relevance: float, embedder: str, build: Callable[[], Answerer]
    ) -> Answerer: ...
    def moderator(self) -> Moderator: ...
    def close(self) -> None: ...


#: Opens the store an engine makes for itself, ``(home, settings, **overrides)``: set by
#: ``rag.home`` (imported with ``rag``), which sits above this module.
open_store: Callable[..., Resources] | None = None


class Engine:
    """Ingest, search and ask over one index.

    >>> engine = Engine(index="notes", store="/tmp/rag-demo")   # doctest: +SKIP
    >>> engine.ingest(["docs/"])                                 # doctest: +SKIP
    >>> engine.ask("What does the report conclude?")             # doctest: +SKIP

    ``store`` is a ``Store`` to share models with other indexes (``store.index(name)`` is
    the same), or a folder, for an engine with a store of its own.  ``settings`` defaults
    to ``Settings.load()``; keyword ``overrides`` use ``section__field`` names, e.g.
    ``retrieval__k=8``.  Any number of threads may use one engine at once.
    """

    def __init__(
        self,
        index: str | None = None,
        store: Resources | str | Path | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        if store is not None and not isinstance(store, (str, Path)):
            if settings is not None:
                raise UsageError("give settings to the Store, not to an Engine of that store")
            self.store: Resources = store
            self._owns_store = False
            settings = store.settings.with_options(**overrides) if overrides else store.settings
        else:
            if open_store is None:  # only while ``rag`` itself is being imported
                raise RuntimeError("import rag before making an Engine")
            self.store = open_store(store, settings, **overrides)
            self._owns_store = True
            settings = self.store.settings
        self.settings = settings
        self.index_name = validate_index_name(index or settings.store.index)

    def __repr__(self) -> str:
        return f"Engine(index={self.index_name!r}, store={str(self.layout.home)!r})"

    @property
    def layout(self) -> StoreLayout:
        return self.store.layout

    # --- plumbing -------------------------------------------------------------------------

    def open_index(self, *, create: bool = False, repair: bool = False) -> Index:
        """The open ``Index`` under this engine (manifest, vectors, keyword index), for tools
        and tests that look below the engine; a missing one is an ``IndexNotFoundError``."""
        return self.store.open_index(self.index_name, create=create, repair=repair)

    def embedder_name(self) -> str:
        """The embedder this index uses (or will use, before its first ingest)."""
        recorded = self.open_index().embedder_name if self._index_exists() else None
        return factory.choose(self.settings, recorded, self.index_name)

    def embedder(self, name: str | None = None) -> Embedder:
        """The embedder this index uses (or ``name``), loaded once per store."""
        return self.store.embedder(name or self.embedder_name())

    def require_index(self) -> None:
        """Raise ``IndexNotFoundError`` now if the index does not exist."""
        self.open_index()

    def _index_exists(self) -> bool:
        try:
            self.open_index()
        except IndexNotFoundError:
            return False
        return True

    def close(self) -> None:
        """Release models, connections and files, when this engine made its own store."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[str | Path] | str | Path,
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = True,
        embedder: str | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Index files and folders; unchanged files are skipped, gone ones pruned."""
        started = time.perf_counter()
        if isinstance(paths, (str, Path)):
            paths = [paths]
        # Discover first: a mistyped path must not leave an empty index behind.
        found = discover(
            [Path(p).expanduser() for p in paths],
            include=include,
            exclude=exclude,
            max_file_bytes=int(self.settings.ingest.max_file_mb * 1024 * 1024),
            follow_links=self.settings.ingest.follow_links,
        )
        index = self.open_index(create=True, repair=True)  # a damaged manifest is rebuilt first
        first = index.embedder_name is None
        name = factory.choose(self.settings, index.embedder_name, index.name, embedder)
        model = self.embedder(name)
        index.bind_embedder(model.name, model.dimension)
        ingestor = Ingestor(index, model, self.settings, self.store.embedding_cache(), progress)
        try:
            return ingestor.run(found, prune=prune, started=started)
        finally:
            if first:  # a first ingest that stored nothing leaves the choice open
                with index.write_lock(self.settings.store.lock_timeout):
                    index.unbind_embedder()

    def repair(self) -> Repaired:
        """Rebuild this index's manifest and keyword index from its vectors.

        For a manifest that cannot be read (``IndexDamagedError``), or one that disagrees
        with the vectors.  Every file whose chunks are all there comes back; the chunks of
        one that is incomplete (an ingest killed half way) are deleted, so the next ingest
        indexes it again.  Usage totals start from zero.
        """
        index = self.open_index(repair=True)
        with index.write_lock(self.settings.store.lock_timeout):
            dropped = index.rebuild_from_vectors()
        return Repaired(self.index_name, index.file_count(), index.chunk_count(), dropped)

    async def aingest(self, paths: Sequence[str | Path] | str | Path, **kwargs: Any) -> IngestReport:
        """``ingest`` in a worker thread, for notebooks and async apps."""
        return await asyncio.to_thread(self.ingest, paths, **kwargs)

    # --- documents ------------------------------------------------------------------------

    def documents(self) -> list[Document]:
        """Every indexed file, by path."""
        index = self.open_index()
        return [record.document() for _, record in sorted(index.files().items())]

    def document(self, id_or_path: str) -> Document | None:
        """The indexed file with this id (``Document.id``) or path, or None."""
        return next((d for d in self.documents() if id_or_path in (d.id, d.source)), None)

    def chunks(self, document: Document | str) -> list[ChunkRecord]:
        """A file's chunks in order, each with its page and character span (``start``, ``end``)."""
        found = document if isinstance(document, Document) else self.document(document)
        return self.open_index().chunks_of(found.source) if found is not None else []

    def remove(self, paths: Iterable[str | Path]) -> dict[str, int]:
        """Remove files (by path or ``Document.id``) from the index; returns chunks removed per path."""
        index = self.open_index()
        known = index.files()
        by_id = {document_id(p): p for p in known}
        wanted = []
        for p in map(str, paths):
            # Ingest records resolved absolute paths; an id or a recorded path is taken as is.
            wanted.append(by_id.get(p) or (p if p in known else str(Path(p).expanduser().resolve())))
        with index.write_lock(self.settings.store.lock_timeout):
            removed = index.remove(wanted)
            if removed:
                index.mark_changed()
        return removed

    # --- search ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: Filters | None = None,
        *,
        mode: Mode | None = None,
        mmr: bool | None = None,
    ) -> Hits:
        """The top ``k`` chunks for ``query``; an empty index gives no hits."""
        index = self.open_index()
        if index.chunk_count() == 0:
            return Hits()
        retrieval = self.settings.retrieval
        hits = Retriever(index, self.embedder(), stages.build(self.settings, mmr)).search(
            query, k or retrieval.k, mode=mode or retrieval.mode, filters=filters
        )
        self.record_usage(hits.usage, kind="embedding")
        return hits

    async def asearch(self, query: str, **kwargs: Any) -> Hits:
        return await asyncio.to_thread(self.search, query, **kwargs)

    # --- ask ------------------------------------------------------------------------------

    def relevance_threshold(self) -> float:
        """The chunk relevance below which ``ask`` declines: ``RAG_MIN_SCORE`` or the embedder's calibrated default.

        The answerers' gate is this number: the engine hands it to them when it builds them.
        """
        from rag.answer.relevance import min_relevance

        return min_relevance(self.settings, self.embedder_name())

    def answerer(self, llm: str | None = None, model: str | None = None) -> Answerer:
        """The answerer ``ask`` uses: an LLM when configured (or asked for), else extractive.

        Shared through the store by every engine that asks for the same one.
        """
        from rag.answer import registry

        name = registry.resolve(self.settings, llm or self.settings.llm.llm)
        model = model or self.settings.llm.chat_model
        threshold = self.relevance_threshold()
        embedder_name = self.embedder_name()

        def scorer() -> Embedder:
            # Sentences are scored locally: with an API embedder every question would cost requests.
            # And by the fp32 model for an int8 index: sentences are not compared with the index's
            # vectors, the thresholds were calibrated in fp32, and int8 strays most on short texts
            # (the Zen test's answer sentence scored 0.554 in fp32, 0.528 in int8, against 0.55).
            embedder = self.store.embedder(embedder_name)
            if embedder.runs_locally and embedder_name != LOCAL_NAMES["int8"]:
                return embedder
            return self.store.embedder(LOCAL_NAMES["fp32"])

        parts = registry.Parts(self.settings, model=model, min_relevance=threshold, embedder=scorer)
        return self.store.answerer(
            name,
            model=model,
            min_relevance=threshold,
            embedder=embedder_name,
            build=lambda: registry.create(name, parts),
        )

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: Mode | None = None,
        llm: str | None = None,
        model: str | None = None,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
        search_query: str | None = None,
    ) -> Answer:
        """Answer from the index only, citing sources, or decline.

        ``mode`` is the retrieval mode (dense, keyword, hybrid); ``llm`` picks the answerer.
        ``on_delta`` receives answer text as it streams.  ``search_query`` retrieves with
        a different text than the question (chat uses it for rewritten follow-ups).
        """
        answerer = self.answerer(llm, model)
        moderator = self.moderator()
        if moderator is not None and (refusal := moderator.screen_question(answerer, question)) is not None:
            return refusal
        hits = self.search(search_query or question, k, filters, mode=mode)
        started = time.perf_counter()
        answer = answerer.answer(question, hits, history=history, on_delta=on_delta, rarity=self.term_rarity())
        if moderator is not None:
            answer = moderator.screen_answer(answerer, answer)
        answer.seconds = round(time.perf_counter() - started, 3)
        self.record_usage(answer.usage)
        # The asker spent the query's embedding too (``search`` recorded it as embedding).
        answer.usage = answer.usage + hits.usage
        return answer

    def moderator(self) -> Moderator | None:
        """The moderation check questions and answers go through, when ``RAG_MODERATION`` is on."""
        return self.store.moderator() if self.settings.llm.moderation else None

    def term_rarity(self) -> Rarity:
        """How rare words are in this index (its keyword index's document frequencies), read
        lazily: the extractive answerer weighs a question's words by it."""
        index = self.open_index()
        return Rarity(index.document_frequencies, index.chunk_count())

    def ask_stream(self, question: str, **kwargs: Any) -> AnswerStream:
        """Iterate over answer text as it is generated; ``.answer`` holds the result after."""
        return AnswerStream(self, question, kwargs)

    async def aask(self, question: str, **kwargs: Any) -> Answer:
        return await asyncio.to_thread(self.ask, question, **kwargs)

    def record_usage(self, usage: Usage, kind: str = "chat") -> None:
        """Add what an API call spent to this index's totals (shown by ``rag status``)."""
        if usage:
            self.open_index().add_usage(kind, usage)

    # --- chat -----------------------------------------------------------------------------

    def chat(self, session: str | None = None, **options: Any) -> Conversation:
        """A conversation whose follow-ups are understood; ``session`` persists it by name."""
        from rag.chat.conversation import Conversation

        return Conversation(self, session=session, **options)

    # --- status ---------------------------------------------------------------------------

    def indexes(self) -> list[IndexInfo]:
        """Every index in the store, with its size and usage totals."""
        return self.store.indexes()

    def drop(self) -> None:
        """Delete this index."""
        index = self.open_index()
        self.store.forget_index(self.index_name)
        with index.write_lock(self.settings.store.lock_timeout):
            index.drop()


class AnswerStream:
    """Text deltas of an answer as they arrive; the finished ``Answer`` is ``.answer``."""

    _DONE = object()

    def __init__(self, engine: Engine, question: str, kwargs: dict[str, Any]) -> None:
        self.answer: Answer | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self.answer = engine.ask(question, on_delta=self._queue.put, **kwargs)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.put(self._DONE)

        self._thread = threading.Thread(target=run, name="rag-answer", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                break
            yield item
        self._thread.join()
        if self._error is not None:
            raise self._error
