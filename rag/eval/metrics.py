"""Ranking metrics as BEIR reports them (trec_eval / pytrec_eval semantics).

- nDCG@k: linear gains (the judged grade), log2(rank + 1) discount; the ideal ranking is
  every judged document of the query sorted by grade, so unretrieved relevant documents
  lower the score.
- Recall@k: relevant (grade > 0) documents in the top k over all relevant documents.
- MRR@k: reciprocal rank of the first relevant document in the top k, else 0.

A run is each query's document ids, best first.  Every query in the qrels counts (as in
BEIR, which runs them all); a query with no run, or no relevant document, scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]


def ndcg(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    dcg = sum(max(judged.get(doc, 0), 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], 1))
    ideal_gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal_gains, 1))
    return dcg / ideal if ideal else 0.0


def recall(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranked[:k], 1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


METRICS = {
    "ndcg@10": lambda r, j: ndcg(r, j, 10),
    "recall@10": lambda r, j: recall(r, j, 10),
    "recall@100": lambda r, j: recall(r, j, 100),
    "mrr@10": lambda r, j: reciprocal_rank(r, j, 10),
}


def per_query(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """Each metric for each query in the qrels."""
    scores: dict[str, dict[str, float]] = {}
    for query, judged in qrels.items():
        ranked = _distinct(run.get(query, ()))
        scores[query] = {name: fn(ranked, judged) for name, fn in METRICS.items()}
    return scores


def evaluate(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean of each metric over the queries in the qrels."""
    scores = per_query(qrels, run)
    n = len(scores) or 1
    return {name: sum(s[name] for s in scores.values()) / n for name in METRICS}


def _distinct(ranked: Sequence[str]) -> list[str]:
    # A document listed twice would be counted twice; keep its best rank only.
    return list(dict.fromkeys(ranked))
