"""When retrieved text is relevant enough to answer from: calibrated thresholds, by embedder.

Cosine similarities are not comparable across embedding models, so each known embedder
has its own values.  Two thresholds:

- ``MIN_RELEVANCE``, on ``Hit.relevance`` (cosine of question and chunk): when no chunk
  reaches it, ``ask`` declines before any model runs.  ``RetrievalSettings.min_score``
  (``RAG_MIN_SCORE``) overrides it.
- ``MIN_SENTENCE_SCORE``, on the extractive answerer's sentence score: when no sentence
  reaches it, the extractive answerer declines.  (The LLM decides for itself, with the
  sentinel.)

benchmarks/squad_answerability.py measures both for the local model.  For
``local:all-MiniLM-L6-v2``, on SQuAD v2 dev (part a) plus 300 off-topic SciFact claims:
a gate of 0.25 declines 93% of off-topic questions and 0.4% of answerable ones; a
sentence threshold of 0.535, with the extractive answerer's focus-term and contrast checks,
answers 82.4% of answerable questions with the gold answer in a cited chunk, and declines
10.0% of them against 36.2% of the unanswerable ones (before question words were weighed
by rarity, 0.55: 81.8%, 10.1% and 35.9%; 0.57 without the contrast check: 81.6%, 10.3%
and 30.9%; 0.60 without either: 82.5%, 8.5% and 25.7%).

``keyword_match`` is the gate's other evidence: a chunk holding every focus term of the
question passes whatever its cosine (with the calibrated threshold; ``RAG_MIN_SCORE`` is
applied as set).  On SQuAD it passes half the answerable questions the gate declined
(0.4% -> 0.2%) and no off-topic one.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.answer import focus
from rag.results import Hit
from rag.settings import Settings

#: Chunk relevance below which nothing counts as relevant.  Low on purpose: it catches
#: questions about things the documents never mention, and leaves subtler cases to the
#: model's sentinel or the extractive sentence score.  The OpenAI values are not measured
#: here (no network): they sit between the usual cosines of unrelated and related texts for
#: those models (text-embedding-ada-002's all lie above 0.7); RAG_MIN_SCORE overrides.
MIN_RELEVANCE: dict[str, float] = {
    "local:all-MiniLM-L6-v2": 0.25,
    # The same model in int8 (rag.embed.quantize): cosine to fp32 0.994 on average.
    "local:all-MiniLM-L6-v2-int8": 0.25,
    "openai:text-embedding-3-small": 0.2,
    "openai:text-embedding-3-large": 0.2,
    "openai:text-embedding-ada-002": 0.75,
}
#: For embedders not in the table: decline only when nothing is related at all.
DEFAULT_MIN_RELEVANCE = 0.1

#: The extractive answerer's bar for its best sentence (cosine with the question plus word
#: coverage, less penalties; see ``rag.answer.extractive``), by the embedder that scores
#: sentences (the local one unless the index's own embedder is another local model).
MIN_SENTENCE_SCORE: dict[str, float] = {
    # 0.60 before the focus-term check (rag.answer.focus) declined a share of what it passed,
    # 0.57 before the contrast check (rag.answer.contrast): each time re-set so that at least
    # 80% of SQuAD's answerable questions are still answered with gold, on all of part A and
    # on each half of its paragraphs (0.57 left the harder half at 79.3%).
    # 0.55 before coverage weighed the question's words by their rarity among the retrieved
    # sentences (``extractive.specificity``): 0.535 is where no number of part A is worse
    # than before (answered with gold 82.4% against 81.8%, declined answerable 10.0%
    # against 10.1%, unanswerable 36.2% against 35.9%; held-out half 81.5%, 11.2%, 34.6%
    # against 80.7%, 11.2%, 34.6%); 0.54 declined 10.3% of the answerable ones.
    "local:all-MiniLM-L6-v2": 0.535,
    "local:all-MiniLM-L6-v2-int8": 0.535,  # sentences are scored with the fp32 model (engine.py)
}
DEFAULT_MIN_SENTENCE_SCORE = 0.5

#: The bar for quotes that stand in for a model's answer the support check refused
#: (``LLMAnswerer.quotes``).  Higher than the extractive answerer's own: the model's failure
#: is itself a sign that the sources may not hold the answer, and quoting a near miss then
#: turns a right refusal into a wrong answer.  See benchmarks/answers.py (``quoted instead``).
MIN_FALLBACK_SCORE: dict[str, float] = {
    "local:all-MiniLM-L6-v2": 0.85,
    "local:all-MiniLM-L6-v2-int8": 0.85,
}
DEFAULT_MIN_FALLBACK_SCORE = 0.8


def min_relevance(settings: Settings, embedder: str | None) -> float:
    """The chunk relevance threshold: ``RAG_MIN_SCORE`` when set, else the embedder's default."""
    if settings.retrieval.min_score is not None:
        return settings.retrieval.min_score
    return MIN_RELEVANCE.get(embedder or "", DEFAULT_MIN_RELEVANCE)


def any_relevant(hits: Sequence[Hit], threshold: float, question: str | None = None) -> bool:
    """True when some hit reaches ``threshold`` (a hit without a relevance gets the benefit of the
    doubt), or holds every focus term of ``question`` (``keyword_match``)."""
    if any(h.relevance is None or h.relevance >= threshold for h in hits):
        return True
    return question is not None and keyword_match(question, hits)


def keyword_match(question: str, hits: Sequence[Hit]) -> bool:
    """True when one hit holds every focus term of ``question``, and those say enough: an
    identifier, or two terms or more.

    A cosine sees a whole chunk, so a short sentence that names the one identifier asked
    about ("a PoolTimeout exception is raised") can sit in a chunk whose cosine is low;
    the words themselves are the stronger evidence then.
    """
    asked = focus.terms(question)
    if not any(t.kind != "word" for t in asked) and len(asked) < 2:
        return False
    return any(all(e.has(t) for t in asked) for e in (focus.Evidence(focus.chunk_evidence(h)) for h in hits))


def min_sentence_score(embedder: str) -> float:
    """The extractive answerer's sentence threshold for sentences embedded by ``embedder``."""
    return MIN_SENTENCE_SCORE.get(embedder, DEFAULT_MIN_SENTENCE_SCORE)


def min_fallback_score(embedder: str) -> float:
    """The bar for quotes in place of a model's refused answer, for sentences embedded by ``embedder``."""
    return MIN_FALLBACK_SCORE.get(embedder, DEFAULT_MIN_FALLBACK_SCORE)
