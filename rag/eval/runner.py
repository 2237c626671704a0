"""``rag eval``: index a BEIR corpus through the real pipeline, run its queries, score them.

Each document becomes one text file (title, blank line, text) named after its id, so it is
loaded, chunked, embedded and keyword-indexed exactly like a user's file.  A document
longer than one chunk has several; its score is its best chunk's, and each query asks for
chunks until it has ``depth`` documents.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.embed import factory
from rag.embed.base import Embedder
from rag.errors import UsageError
from rag.eval.beir import BeirDataset
from rag.eval.metrics import evaluate
from rag.home import Store
from rag.ingest.pipeline import Progress
from rag.jsonable import Jsonable, json_hook, rounded
from rag.results import IngestReport
from rag.retrieve.search import Mode, Retriever
from rag.retrieve.stages import Stage
from rag.retrieve.stages import build as build_stages
from rag.settings import Settings
from rag.store.index import Index, StoreLayout

#: Documents ranked per query: enough for Recall@100.
DEPTH = 100


@dataclass
class EvalResult(Jsonable):
    json_order = ("dataset", "mode", "queries", "metrics", "latency_ms")

    dataset: str
    mode: str
    queries: int
    metrics: dict[str, float] = field(metadata=json_hook(convert=rounded(4)))
    latency_ms: dict[str, float] = field(metadata=json_hook(convert=rounded(2)))
    index: str | None = None
    ingest: IngestReport | None = None


def doc_filename(doc_id: str) -> str:
    """A safe, stable file name for a document id (ids may hold any character)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", doc_id)[:80]
    if safe != doc_id or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha1(doc_id.encode()).hexdigest()[:10]}"
    return f"{safe}.txt"


def write_corpus(dataset: BeirDataset, folder: Path) -> dict[str, str]:
    """One file per document (rewritten only if it changed, so re-ingest skips it); path -> id."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for doc in dataset.corpus.values():
        path = folder / doc_filename(doc.id)
        content = f"{doc.title}\n\n{doc.text}\n" if doc.title else f"{doc.text}\n"
        data = content.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        paths[str(path.resolve())] = doc.id
    return paths


@dataclass
class EvalIndex:
    """A dataset's corpus, indexed: what queries run against."""

    index: Index
    embedder: Embedder
    #: Chunk id to the id of the document it came from.
    chunk_docs: dict[str, str]
    report: IngestReport
    kept: bool


@contextmanager
def eval_index(
    dataset: BeirDataset,
    settings: Settings,
    *,
    index_name: str | None = None,
    embedder: str | None = None,
    progress: Progress | None = None,
) -> Iterator[EvalIndex]:
    """An index of the dataset's corpus: named and kept, or temporary.

    Either way the embedding cache is the user's (``RAG_HOME/cache``), so the corpus is
    embedded once per embedder however many evals run.
    """
    layout = StoreLayout.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        if index_name is None:
            # A unique name, as on a Chroma server other evals may be running.
            store_settings = settings.with_options(store__home=Path(tmp) / "store")
            name, docs = f"eval-{uuid.uuid4().hex[:12]}", Path(tmp) / "docs"
        else:
            # A fixed folder keeps file paths, hence chunk ids, stable between runs.
            store_settings, name = settings, index_name
            docs = layout.eval_dir(index_name) / dataset.name
        # Ingested as ``rag ingest`` does it, through the engine.
        with Store(settings=store_settings, cache_path=layout.cache_path) as store:
            engine = store.index(name)
            index = store.open_index(name, create=True)
            try:
                paths = write_corpus(dataset, docs)
                if any(p not in paths for p in index.files()):
                    raise UsageError(f"index '{name}' holds files not in {dataset.name}: use another --index")
                report = engine.ingest([docs], embedder=embedder, progress=progress)
                model = engine.embedder(factory.choose(store.settings, index.embedder_name, name, embedder))
                chunk_docs = {c.id: paths[c.path] for batch in index.iter_chunks() for c in batch}
                yield EvalIndex(index, model, chunk_docs, report, kept=index_name is not None)
            finally:
                if index_name is None:
                    engine.drop()  # a temporary collection must not outlive the eval on a server


def rank_documents(
    retriever: Retriever, query: str, mode: Mode, depth: int, chunk_docs: dict[str, str], k: int
) -> list[str]:
    """Document ids best first (a document ranks by its best chunk), until ``depth`` or no more.

    ``k`` chunks are asked for first, then twice as many until ``depth`` documents are found.
    """
    while True:
        ranked = retriever.rank(query, k, mode=mode)
        docs = list(dict.fromkeys(chunk_docs[i] for i, _ in ranked if i in chunk_docs))
        if len(docs) >= depth or len(ranked) < k:
            return docs[:depth]
        k *= 2


def score(
    target: EvalIndex,
    dataset: BeirDataset,
    mode: Mode = "hybrid",
    depth: int = DEPTH,
    on_query: Callable[[int, int], None] | None = None,
    stages: Sequence[Stage] = (),
) -> EvalResult:
    """Run every query against an indexed corpus and score the rankings."""
    # Keyword mode never needs the model: don't charge it a query embedding.
    retriever = Retriever(target.index, None if mode == "keyword" else target.embedder, stages)
    # As many chunks as ``depth`` documents usually take, with a margin.
    documents = len(set(target.chunk_docs.values())) or 1
    first_k = max(depth, math.ceil(depth * len(target.chunk_docs) / documents * 1.2))
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    if dataset.queries:  # load the model and warm caches outside the timings
        rank_documents(retriever, next(iter(dataset.queries.values())), mode, depth, target.chunk_docs, first_k)
    for n, (query_id, text) in enumerate(dataset.queries.items(), 1):
        started = time.perf_counter()
        ranked = rank_documents(retriever, text, mode, depth, target.chunk_docs, first_k)
        latencies.append((time.perf_counter() - started) * 1000)
        # BEIR ignores a document whose id is the query's (ArguAna, Quora).
        run[query_id] = [d for d in ranked if d != query_id]
        if on_query is not None:
            on_query(n, len(dataset.queries))
    return EvalResult(
        dataset=dataset.name,
        mode=mode,
        queries=len(dataset.queries),
        metrics=evaluate(dataset.qrels, run),
        latency_ms=percentiles(latencies),
        index=target.index.name if target.kept else None,
        ingest=target.report,
    )


def run_eval(
    dataset: BeirDataset,
    settings: Settings,
    *,
    mode: Mode = "hybrid",
    depth: int = DEPTH,
    index_name: str | None = None,
    embedder: str | None = None,
    progress: Progress | None = None,
    on_query: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Index, query, score.  ``on_query(done, total)`` follows the queries."""
    with eval_index(dataset, settings, index_name=index_name, embedder=embedder, progress=progress) as target:
        return score(target, dataset, mode, depth, on_query, build_stages(settings))


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"p50": 0.0, "p95": 0.0}
    values = np.asarray(latencies_ms)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}
