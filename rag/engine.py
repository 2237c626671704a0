"""``Engine``: the one object behind the CLI, notebooks and apps."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answer.base import Answerer, DeltaCallback, Turn
from rag.embed import factory
from rag.embed.base import Embedder
from rag.errors import IndexNotFoundError
from rag.ingest.discover import discover
from rag.ingest.pipeline import Ingestor, Progress
from rag.results import Answer, Hits, IngestReport
from rag.retrieve.search import Filters, Mode, Retriever
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, StoreLayout, validate_index_name

if TYPE_CHECKING:
    from rag.chat.conversation import Conversation
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embedder": self.embedder,
            "files": self.files,
            "chunks": self.chunks,
            "size_bytes": self.size_bytes,
            "last_ingest": self.last_ingest,
            "usage": self.usage,
        }


class Engine:
    """Ingest, search and ask over one index.

    >>> engine = Engine(index="notes", store="/tmp/rag-demo")   # doctest: +SKIP
    >>> engine.ingest(["docs/"])                                 # doctest: +SKIP
    >>> engine.ask("What does the report conclude?")             # doctest: +SKIP

    ``settings`` defaults to ``Settings.load()`` (config file, ``.env``, environment);
    keyword ``overrides`` use ``section__field`` names, e.g. ``retrieval__k=8``.
    """

    def __init__(
        self,
        index: str | None = None,
        store: str | Path | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        settings = settings or Settings.load()
        if store is not None:
            overrides["store__home"] = Path(store).expanduser()
        if overrides:
            settings = settings.with_options(**overrides)
        self.settings = settings
        self.index_name = validate_index_name(index or settings.store.index)
        self._indexes: dict[str, Index] = {}
        self._embedders: dict[str, Embedder] = {}
        self._answerers: dict[tuple[str, str], Answerer] = {}
        self._cache: EmbeddingCache | None = None
        self._moderator: Moderator | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Engine(index={self.index_name!r}, store={str(self.layout.home)!r})"

    @property
    def layout(self) -> StoreLayout:
        return StoreLayout.from_settings(self.settings)

    # --- plumbing -------------------------------------------------------------------------

    def _index(self, *, create: bool = False) -> Index:
        with self._lock:
            index = self._indexes.get(self.index_name)
            if index is None:
                index = Index.open(self.settings, self.index_name, create=create)
                self._indexes[self.index_name] = index
            return index

    def embedder(self, name: str | None = None) -> Embedder:
        """The embedder this index uses (or ``name``), loaded once per engine."""
        with self._lock:
            if name is None:
                recorded = self._index().embedder_name if self._index_exists() else None
                name = factory.choose(self.settings, recorded, self.index_name)
            embedder = self._embedders.get(name)
            if embedder is None:
                embedder = factory.create(name, self.settings)
                self._embedders[name] = embedder
            return embedder

    def require_index(self) -> None:
        """Raise ``IndexNotFoundError`` now if the index does not exist."""
        self._index()

    def _index_exists(self) -> bool:
        try:
            self._index()
        except IndexNotFoundError:
            return False
        return True

    def _embedding_cache(self) -> EmbeddingCache:
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(self.layout.cache_path)
            return self._cache

    def close(self) -> None:
        """Release models, connections and files."""
        with self._lock:
            for index in self._indexes.values():
                index.close()
            for embedder in self._embedders.values():
                embedder.close()
            if self._cache is not None:
                self._cache.close()
            self._indexes.clear()
            self._embedders.clear()
            self._answerers.clear()
            self._cache = None

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
        )
        index = self._index(create=True)
        name = factory.choose(self.settings, index.embedder_name, index.name, embedder)
        model = self.embedder(name)
        index.bind_embedder(model.name, model.dimension)
        ingestor = Ingestor(index, model, self.settings, self._embedding_cache(), progress)
        return ingestor.run(found, prune=prune, started=started)

    async def aingest(self, paths: Sequence[str | Path] | str | Path, **kwargs: Any) -> IngestReport:
        """``ingest`` in a worker thread, for notebooks and async apps."""
        return await asyncio.to_thread(self.ingest, paths, **kwargs)

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
        index = self._index()
        if index.manifest.chunk_count() == 0:
            return Hits()
        retrieval = self.settings.retrieval
        return Retriever(index, self.embedder()).search(
            query,
            k or retrieval.k,
            mode=mode or retrieval.mode,
            filters=filters,
            use_mmr=retrieval.mmr if mmr is None else mmr,
            mmr_lambda=retrieval.mmr_lambda,
        )

    async def asearch(self, query: str, **kwargs: Any) -> Hits:
        return await asyncio.to_thread(self.search, query, **kwargs)

    # --- ask ------------------------------------------------------------------------------

    def answerer(self, llm: str | None = None, model: str | None = None) -> Answerer:
        """The answerer ``ask`` uses: an LLM when configured (or asked for), else extractive."""
        from rag.answer.factory import create_answerer

        llm = llm or self.settings.llm.llm
        model = model or self.settings.llm.chat_model
        key = (llm, model)
        with self._lock:
            if key not in self._answerers:
                self._answerers[key] = create_answerer(self.settings, llm=llm, model=model, engine=self)
            return self._answerers[key]

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

        ``on_delta`` receives answer text as it streams.  ``search_query`` retrieves with
        a different text than the question (chat uses it for rewritten follow-ups).
        """
        answerer = self.answerer(llm, model)
        moderator = self.moderator()
        if moderator is not None and (refusal := moderator.screen_question(answerer, question)) is not None:
            return refusal
        hits = self.search(search_query or question, k, filters, mode=mode)
        started = time.perf_counter()
        answer = answerer.answer(question, hits, history=history, on_delta=on_delta)
        if moderator is not None:
            answer = moderator.screen_answer(answerer, answer)
        answer.usage.setdefault("seconds", round(time.perf_counter() - started, 3))
        if answer.mode == "llm":
            self.record_usage(answer.model, answer.usage)
        return answer

    def moderator(self) -> Moderator | None:
        """The moderation check questions and answers go through, when ``RAG_MODERATION`` is on."""
        if not self.settings.llm.moderation:
            return None
        from rag.moderation import Moderator

        with self._lock:
            if self._moderator is None:
                self._moderator = Moderator(self.settings)
            return self._moderator

    def relevance_threshold(self) -> float:
        """The chunk relevance below which ``ask`` declines: ``RAG_MIN_SCORE`` or the embedder's calibrated default."""
        from rag.answer.relevance import min_relevance

        return min_relevance(self.settings, self.embedder().name)

    def ask_stream(self, question: str, **kwargs: Any) -> AnswerStream:
        """Iterate over answer text as it is generated; ``.answer`` holds the result after."""
        return AnswerStream(self, question, kwargs)

    async def aask(self, question: str, **kwargs: Any) -> Answer:
        return await asyncio.to_thread(self.ask, question, **kwargs)

    def record_usage(self, model: str, usage: dict[str, Any], kind: str = "chat") -> None:
        """Add an API call's tokens and cost to this index's totals (shown by ``rag status``)."""
        if not usage.get("requests"):
            return
        self._index().manifest.add_usage(
            kind,
            model,
            requests=int(usage.get("requests", 0)),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            cost_usd=float(usage.get("cost_usd") or 0.0),
        )

    # --- chat -----------------------------------------------------------------------------

    def chat(self, session: str | None = None, **options: Any) -> Conversation:
        """A conversation whose follow-ups are understood; ``session`` persists it by name."""
        from rag.chat.conversation import Conversation

        return Conversation(self, session=session, **options)

    # --- status ---------------------------------------------------------------------------

    def indexes(self) -> list[IndexInfo]:
        """Every index in the store, with its size and usage totals."""
        infos = []
        for name in self.layout.index_names():
            with Index.open(self.settings, name) as index:
                last = index.manifest.get_meta("last_ingest")
                infos.append(
                    IndexInfo(
                        name=name,
                        embedder=index.embedder_name,
                        files=index.manifest.file_count(),
                        chunks=index.manifest.chunk_count(),
                        size_bytes=index.size_bytes(),
                        last_ingest=float(last) if last else None,
                        usage=index.manifest.usage(),
                    )
                )
        return infos

    def drop(self) -> None:
        """Delete this index."""
        index = self._index()
        with self._lock:
            self._indexes.pop(self.index_name, None)
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
