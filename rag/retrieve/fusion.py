"""Ways to merge ranked lists.  Pure functions over (id, score) lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Ranked", "normalized_scores", "reciprocal_rank"]

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
