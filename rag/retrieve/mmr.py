"""The ``mmr`` stage: maximal marginal relevance, for results that do not repeat each other."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rag.retrieve.fusion import Ranked
from rag.retrieve.stages import Candidates
from rag.settings import Settings

__all__ = ["MMR", "from_settings", "mmr"]


class MMR:
    """Picks ``k`` of the candidates by MMR; unchanged without a query vector (keyword mode)."""

    def __init__(self, lambda_: float = 0.7) -> None:
        self.lambda_ = lambda_

    def __call__(self, candidates: Candidates) -> Ranked:
        if candidates.query_vector is None:
            return candidates.ranked
        return mmr(candidates.ranked, candidates.vectors(), candidates.query_vector, candidates.k, self.lambda_)


def from_settings(settings: Settings) -> MMR:
    return MMR(settings.retrieval.mmr_lambda)


def mmr(ranked: Ranked, vectors: Mapping[str, np.ndarray], query: np.ndarray, k: int, lambda_: float) -> Ranked:
    """Maximal marginal relevance over ``ranked`` candidates (Carbonell & Goldstein 1998).

    Relevance is the candidate's rank-normalised score so that any fusion method works;
    redundancy is cosine similarity to what is already selected.
    """
    candidates = [(i, s) for i, s in ranked if i in vectors]
    if len(candidates) <= 1:
        return candidates[:k]
    ids = [i for i, _ in candidates]
    scores = np.array([s for _, s in candidates], dtype=np.float64)
    span = scores.max() - scores.min() or 1.0
    relevance = (scores - scores.min()) / span
    matrix = np.stack([vectors[i] for i in ids]).astype(np.float32)
    similarity = matrix @ matrix.T
    chosen: list[int] = []
    remaining = list(range(len(ids)))
    while remaining and len(chosen) < k:
        redundancy = similarity[np.ix_(remaining, chosen)].max(axis=1) if chosen else np.zeros(len(remaining))
        values = lambda_ * relevance[remaining] - (1 - lambda_) * redundancy
        best = remaining[int(np.argmax(values))]
        chosen.append(best)
        remaining.remove(best)
    return [candidates[i] for i in chosen]
