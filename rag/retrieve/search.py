"""Search an index: dense (Chroma), keyword (BM25 in the manifest), or both fused."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rag.embed.base import Embedder
from rag.errors import UsageError
from rag.filetypes import kind_named, type_names
from rag.globs import compile_glob
from rag.results import Hits
from rag.retrieve.fusion import Ranked, normalized_scores, reciprocal_rank
from rag.retrieve.stages import Candidates, Stage
from rag.store.index import Index
from rag.usage import Usage

__all__ = ["MODES", "Filters", "Mode", "Retriever"]

Mode = Literal["dense", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")


@dataclass(frozen=True)
class Filters:
    """Which chunks a search may return.

    ``paths``: globs, as ``--include`` reads them; a relative one matches at any depth
    (``reports/*.pdf`` matches ``/home/me/docs/reports/q3.pdf``).
    ``types``: file kinds or extensions from the loader table (``pdf``, ``md``, ``xlsx``, ``py``).
    ``pages``: an inclusive (first, last) range; either end may be None.  Chunks without pages never match a page
    range.
    """

    paths: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    pages: tuple[int | None, int | None] | None = None

    def __post_init__(self) -> None:
        for kind in self.types:
            if kind_named(kind) is None:
                raise UsageError(f"unknown file type {kind!r}: use one of {', '.join(type_names())}")

    @property
    def active(self) -> bool:
        return bool(self.paths or self.types or self.pages)

    @classmethod
    def parse(
        cls,
        paths: tuple[str, ...] | list[str] = (),
        types: tuple[str, ...] | list[str] = (),
        pages: str | None = None,
    ) -> Filters:
        """Build filters from command-line strings; ``pages`` is ``N``, ``N-M``, ``N-`` or ``-M``."""
        page_range: tuple[int | None, int | None] | None = None
        if pages:
            low, sep, high = pages.partition("-")
            try:
                first = int(low) if low.strip() else None
                last = int(high) if high.strip() else None
                if not sep:
                    last = first
            except ValueError:
                raise UsageError(f"invalid page range {pages!r}: use N, N-M, N- or -M") from None
            page_range = (first, last)
        return cls(tuple(paths), tuple(types), page_range)

    def allowed_paths(self, index: Index) -> list[str] | None:
        """Files that pass the path and type filters (None when those are unset)."""
        if not (self.paths or self.types):
            return None
        return index.memo(("allowed_paths", self.paths, self.types), lambda: self._allowed_paths(index))

    def _allowed_paths(self, index: Index) -> list[str]:
        kinds = {kind_named(t) for t in self.types}
        patterns = [_path_pattern(g) for g in self.paths]
        allowed = []
        for path, record in index.files().items():
            if kinds and record.kind not in kinds:
                continue
            posix = path.replace(os.sep, "/").lstrip("/")
            if patterns and not any(p.fullmatch(posix) for p in patterns):
                continue
            allowed.append(path)
        return allowed


def _path_pattern(pattern: str) -> re.Pattern[str]:
    """``--path`` globs read like ``--include`` ones (see ``rag.ingest.discover``), against full paths.

    ``*`` stays within a folder and ``**`` crosses folders; a relative pattern matches at
    any depth (``reports/*.pdf``), an absolute one or one starting with ``./``, ``../`` or
    ``~`` only there, and a pattern naming a folder matches everything in it.
    """
    pattern = os.path.expanduser(pattern)
    if pattern in (".", "..") or pattern.startswith(("./", "../", ".\\", "..\\")):
        pattern = os.path.abspath(pattern)
    return compile_glob(pattern.replace(os.sep, "/"))


class Retriever:
    """Ranks an index's chunks for a query."""

    # Hybrid = equal-weight sum of min-max-normalised cosine and BM25 scores over each
    # method's top 100 chunks.  Chosen on SciFact train queries (benchmarks/retrieval.py
    # --grid), then checked on SciFact test and on SQuAD, where BM25 beats dense by 8 points:
    #
    #   nDCG@10          SciFact train  SciFact test  SQuAD (part A)
    #   dense                0.680          0.670         0.777
    #   keyword (BM25)       0.688          0.673         0.860
    #   RRF, k=60            0.718          0.724         0.856   (below BM25; with 0.1's FTS5)
    #   min-max, equal       0.734          0.736         0.889
    #
    # Scores keep what ranks throw away: a method that is sure of a hit (a rare term, a
    # close paraphrase) puts it far above the rest of its list and carries it, and one that
    # is not spreads its scores and defers.  So the sum beat the better method on every set,
    # also with either method crippled on purpose (half the query terms dropped, or noise
    # on the query vector), where RRF fell below it.  Z-scores did as well; weighting each
    # list by how peaked it is, other weights, or 300 candidates gained nothing that held
    # on both sets.  Equal weights assume nothing about the corpus.
    #: Candidates taken from each method before fusion, and the least the stages see.
    candidates: int = 100
    #: ``minmax`` or ``zscore`` (normalised-score fusion), or ``rrf`` (reciprocal-rank fusion).
    fusion: str = "minmax"
    #: Weights of (dense, keyword) in the fusion.
    weights: tuple[float, float] = (1.0, 1.0)
    #: RRF's rank offset, when ``fusion`` is ``rrf``.
    rrf_k: int = 60

    def __init__(self, index: Index, embedder: Embedder | None, stages: Sequence[Stage] = ()) -> None:
        self.index = index
        self.embedder = embedder
        #: What reorders the fused candidates before the top k are kept (``rag.retrieve.stages``).
        self.stages = list(stages)

    def search(self, query: str, k: int = 5, *, mode: Mode = "hybrid", filters: Filters | None = None) -> Hits:
        """The top ``k`` chunks as hits, after the stages."""
        candidates, usage = self._staged(query, k, mode, filters)
        ranked = candidates.ranked[:k]
        vectors = candidates.vectors([i for i, _ in ranked]) if candidates.query_vector is not None else {}
        hits = self._hits(ranked, vectors, candidates.query_vector)
        hits.usage = usage
        return hits

    def rank(self, query: str, k: int, *, mode: Mode = "hybrid", filters: Filters | None = None) -> Ranked:
        """The top ``k`` (chunk id, score) pairs after the stages, best first, without reading the chunks."""
        return self._staged(query, k, mode, filters)[0].ranked[:k]

    def _staged(self, query: str, k: int, mode: Mode, filters: Filters | None) -> tuple[Candidates, Usage]:
        """The ranked candidates after each stage; with stages, more than ``k`` go in (they reorder and cut)."""
        pool = max(self.candidates, 2 * k) if self.stages else k
        ranked, query_vector, usage = self._rank(query, pool, mode, filters)
        candidates = Candidates(query.strip(), k, ranked, query_vector, self.index)
        for stage in self.stages:
            candidates.ranked = stage(candidates)
        return candidates, usage

    def _rank(self, query: str, k: int, mode: Mode, filters: Filters | None) -> tuple[Ranked, np.ndarray | None, Usage]:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}: use dense, keyword or hybrid")
        query = query.strip()
        if not query:
            raise UsageError("the query is empty")
        if mode != "keyword" and self.embedder is None:
            raise UsageError("dense search needs the index's embedder")
        filters = filters or Filters()
        paths = filters.allowed_paths(self.index)
        if paths is not None and not paths:
            return [], None, Usage()
        pool = max(k, self.candidates) if mode == "hybrid" else k
        # The query vector also gives each hit its cosine relevance, whatever the mode.
        query_vector, usage = self._embed(query) if self.embedder is not None else (None, Usage())
        dense: Ranked = []
        keyword: Ranked = []
        if mode != "keyword":
            assert query_vector is not None
            dense = self._dense(query_vector, pool, paths, filters.pages)
        if mode != "dense":
            keyword = self.index.keyword(query, pool, paths=paths, pages=filters.pages)
        if mode == "dense":
            return dense[:k], query_vector, usage
        if mode == "keyword":
            return keyword[:k], query_vector, usage
        return self.fuse(dense, keyword)[:k], query_vector, usage

    def fuse(self, dense: Ranked, keyword: Ranked) -> Ranked:
        """One ranking from the dense and keyword candidates."""
        if self.fusion == "rrf":
            return reciprocal_rank([dense, keyword], list(self.weights), k=self.rrf_k)
        return normalized_scores([dense, keyword], list(self.weights), self.fusion)

    def _embed(self, query: str) -> tuple[np.ndarray, Usage]:
        """The query's vector, and what an API embedder charged for it."""
        assert self.embedder is not None
        vectors, usage = self.embedder.embed_batch_usage([query])
        return np.asarray(vectors[0], dtype=np.float32), usage

    def _dense(
        self,
        vector: np.ndarray,
        k: int,
        paths: list[str] | None,
        pages: tuple[int | None, int | None] | None,
    ) -> Ranked:
        # Ids still being written by a concurrent ingest are dropped when hydrating.
        return self.index.dense(vector, k, paths=paths, pages=pages)

    def _hits(self, ranked: Ranked, vectors: dict[str, np.ndarray], query_vector: np.ndarray | None) -> Hits:
        chunks = self.index.hydrate([i for i, _ in ranked])
        hits = Hits()
        for chunk_id, score in ranked:
            chunk = chunks.get(chunk_id)
            if chunk is None:
                continue
            relevance = None
            if query_vector is not None and chunk_id in vectors:
                relevance = float(np.dot(vectors[chunk_id], query_vector))
            hits.append(chunk.hit(rank=len(hits) + 1, score=float(score), relevance=relevance))
        return hits
