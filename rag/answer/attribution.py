"""Which retrieved chunk backs a sentence the model left uncited.

Small local models answer from the right chunk and never write ``[n]`` (the 0.5B Qwen
never did in 15 answers); the sentence is still checkable.  Each chunk is scored by
what it shares with the sentence: its numbers, identifiers and names (weighted twice,
since they are what paraphrase cannot produce), its content words, and, when a local
embedder is at hand, the cosine of the two.  ``rag.answer.support`` then keeps the best
chunk only if it passes the support test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rag.answer.focus import Evidence, Term
from rag.embed.base import Embedder
from rag.results import Hit

#: Cosine of a sentence with each chunk of the context, in context order.
Scorer = Callable[[str], Sequence[float]]


def best_source(
    sentence: str,
    keys: Sequence[Term],
    words: Sequence[Term],
    context: Sequence[Hit],
    evidence: Sequence[Evidence],
    scorer: Scorer | None = None,
) -> int | None:
    """The number (1..) of the chunk that backs ``sentence`` best, or None when none shares a word."""
    lexical = [
        2.0 * sum(e.has(t) for t in keys) / max(1, len(keys)) + sum(e.has(t) for t in words) / max(1, len(words))
        for e in evidence
    ]
    if not context or max(lexical, default=0.0) <= 0:
        return None
    cosines = list(scorer(sentence)) if scorer is not None else [0.0] * len(context)
    scores = [a + b for a, b in zip(lexical, cosines, strict=True)]
    # max keeps the first of equals: the higher-ranked chunk.
    return max(range(len(scores)), key=scores.__getitem__) + 1


def cosine_scorer(embedder: Callable[[], Embedder], texts: Sequence[str]) -> Scorer:
    """A ``Scorer`` over ``texts`` that embeds them (with the local embedder) on first use only."""
    vectors: list[np.ndarray] = []

    def score(sentence: str) -> Sequence[float]:
        model = embedder()
        if not vectors:
            vectors.append(_unit(np.asarray(model.embed_batch(list(texts)), dtype=np.float32)))
        query = _unit(np.asarray(model.embed_query(sentence), dtype=np.float32)[None, :])
        return [float(x) for x in (vectors[0] @ query[0])]

    return score


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
