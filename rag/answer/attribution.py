"""Which retrieved chunk backs a sentence the model left uncited.

Small local models answer from the right chunk and never write ``[n]`` (the 0.5B Qwen
never did in 15 answers); the sentence is still checkable.  Each chunk is scored by
what it shares with the sentence: its numbers, identifiers and names (weighted twice,
since they are what paraphrase cannot produce), its content words, and, when a local
embedder is at hand, the cosine of the two.  ``rag.answer.support`` picks the best of the
chunks that pass its support test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rag.answer.focus import Evidence, Term
from rag.embed.base import Embedder
from rag.results import Hit

#: Cosine of a sentence with each chunk of the context, in context order.
Scorer = Callable[[str], Sequence[float]]


def scores(
    sentence: str,
    keys: Sequence[Term],
    words: Sequence[Term],
    context: Sequence[Hit],
    evidence: Sequence[Evidence],
    scorer: Scorer | None = None,
) -> list[float]:
    """How well each chunk of ``context`` (whose ``evidence`` is given) matches ``sentence``, in order."""
    lexical = [
        2.0 * sum(e.has(t) for t in keys) / max(1, len(keys)) + sum(e.has(t) for t in words) / max(1, len(words))
        for e in evidence
    ]
    cosines = list(scorer(sentence)) if scorer is not None and context else [0.0] * len(context)
    return [a + b for a, b in zip(lexical, cosines, strict=True)]


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
