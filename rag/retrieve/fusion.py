"""Ways to merge ranked lists, and MMR for diversity.  Pure functions over (id, score) lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Ranked = list[tuple[str, float]]


def reciprocal_rank(lists: Sequence[Ranked], weights: Sequence[float] | None = None, k: int = 60) -> Ranked:
    """Reciprocal-rank fusion (Cormack et al. 2009): sum of w / (k + rank)."""
    weights = weights or [1.0] * len(lists)
    scores: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        for rank, (item, _) in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def normalized_scores(
    lists: Sequence[Ranked], weights: Sequence[float] | None = None, method: str = "minmax"
) -> Ranked:
    """Weighted sum of each list's scores, normalised within the list.

    ``minmax`` maps a list onto [0, 1]; ``zscore`` standardises it.  An item missing from
    a list gets that list's lowest normalised score, as if it came last.  A list whose
    scores are all equal (one hit, say) counts them all as its best, above anything missing.
    """
    weights = weights or [1.0] * len(lists)
    normalized: list[tuple[dict[str, float], float, float]] = []
    for ranked, weight in zip(lists, weights, strict=True):
        if not ranked:
            continue
        raw = np.array([s for _, s in ranked], dtype=np.float64)
        flat = raw.max() == raw.min()
        if method == "minmax":
            values = np.ones_like(raw) if flat else (raw - raw.min()) / (raw.max() - raw.min())
            floor = 0.0
        elif method == "zscore":
            values = np.zeros_like(raw) if flat else (raw - raw.mean()) / raw.std()
            floor = -1.0 if flat else float(values.min())
        else:
            raise ValueError(f"unknown normalisation {method!r}")
        normalized.append(({item: float(v) for (item, _), v in zip(ranked, values, strict=True)}, floor, weight))
    items = dict.fromkeys(item for ranked in lists for item, _ in ranked)
    fused = {i: sum(w * scores.get(i, floor) for scores, floor, w in normalized) for i in items}
    return sorted(fused.items(), key=lambda kv: -kv[1])


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
