"""Does the extractive answerer answer what the documents hold, and decline what they don't?

Data: SQuAD v2.0 dev (part; see /work/shared/data/squad-v2-dev-part-a/SOURCE.md).  Every
paragraph becomes one document, ingested with the default local embedder into a
temporary store; every question is asked of the whole collection with the extractive
answerer.  Unanswerable questions are adversarial: the right paragraph is retrieved, but
it does not hold the answer (a changed name, a negation, a wrong date).  300 SciFact
claims (biomedicine) serve as off-topic questions, which the chunk relevance gate
should decline.

Reported:

- answered with gold: answerable questions answered, with a gold answer inside a cited
  chunk (SQuAD-normalised text match, any of the gold answers);
- declined (answerable), declined (unanswerable), declined (off-topic);
- F1: SQuAD token F1 of the quoted sentences against the gold answers, over answerable
  questions (a declined one scores 0).  Quoting whole sentences caps it well below 1;

for a sweep of chunk relevance gates (``MIN_RELEVANCE``), a sweep of sentence thresholds
(``MIN_SENTENCE_SCORE``) at the default gate, and an ablation of the sentence scoring:
each part switched off in turn, compared at the threshold that keeps 80% answered with gold.

    python benchmarks/squad_answerability.py [--store DIR] [-k 5] [--limit N] [--no-ablation]

Question vectors are computed in batches up front, and every sentence of the collection
in one pass, all through the store's embedding cache: with ``--store`` a re-run embeds
nothing and skips ingesting (unchanged files).  About three minutes on two cores the
first time, one after.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import re
import string
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer import extractive, relevance
from rag.answer.extractive import ExtractiveAnswerer, Scored, compose, select, split_sentences
from rag.embed.base import Embedder, embed_many
from rag.engine import Engine
from rag.results import Hit
from rag.retrieve.search import Retriever
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, StoreLayout

DATA = Path("/work/shared/data/squad-v2-dev-part-a/dev-v2.0.json")
OFFTOPIC = Path("/work/shared/data/beir-scifact/queries.jsonl")
GATES = [0.15, 0.20, 0.25, 0.30, 0.35, 0.40]
THRESHOLDS = [round(0.40 + 0.05 * i, 2) for i in range(11)]
TARGET = 0.80  # answered with gold, for the ablation's comparison


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    answers: tuple[str, ...]
    impossible: bool


@dataclass
class Retrieved:
    question: Question
    hits: list[Hit]
    relevance: float  # the best chunk's cosine relevance


def load(path: Path) -> tuple[list[str], list[Question]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs, questions = [], []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                text = " ".join(qa["question"].split())  # as retrieval sees it
                questions.append(Question(qa["id"], text, answers, bool(qa["is_impossible"])))
    return paragraphs, questions


def load_offtopic(path: Path, n: int = 300) -> list[Question]:
    lines = path.read_text(encoding="utf-8").splitlines()[:n]
    return [Question(f"off{i}", json.loads(line)["text"], (), True) for i, line in enumerate(lines)]


# --- SQuAD's official normalisation and F1 ----------------------------------------------------


_PUNCTUATION = str.maketrans("", "", string.punctuation)


@functools.lru_cache(maxsize=100_000)
def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, gold: str) -> float:
    pred, true = normalize(prediction).split(), normalize(gold).split()
    common = sum((collections.Counter(pred) & collections.Counter(true)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(true)
    return 2 * precision * recall / (precision + recall)


_CITATION = re.compile(r"\s*\[\d+(?:,\s*\d+)*\]")


# --- running ---------------------------------------------------------------------------------


class CachedEmbedder(Embedder):
    """The index's embedder behind the store's embedding cache, so that a re-run embeds nothing.

    Questions are embedded like passages, in batches up front; ``retrieve`` checks that the
    model embeds them alike (MiniLM has no query prefix).
    """

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner, self.cache = inner, cache
        self.name, self.dimension = inner.name, inner.dimension
        self.max_input_tokens, self.batch_size = inner.max_input_tokens, 256

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        found = self.cache.get(self.name, texts, self.dimension)
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            vectors = embed_many(self.inner, [texts[i] for i in missing])
            self.cache.put(self.name, [texts[i] for i in missing], vectors)
            found.update(zip(missing, vectors, strict=True))
        return np.stack([found[i] for i in range(len(texts))])

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


def retrieve(
    store: Path, questions: list[Question], k: int
) -> tuple[list[Retrieved], ExtractiveAnswerer, Embedder]:
    """Ingest the paragraphs, then retrieve for every question; returns a warmed-up answerer."""
    paragraphs, _ = load(DATA)
    docs = store / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(paragraphs):
        path = docs / f"p{i:04d}.txt"
        if not path.exists():
            path.write_text(text + "\n", encoding="utf-8")

    settings = Settings.load(environ={}, dotenv=None).with_options(store__home=store / "home")
    engine = Engine(index="squad", settings=settings)
    started = time.perf_counter()
    report = engine.ingest(docs, embedder="local")
    print(f"ingest: {report.chunks_total} chunks from {len(paragraphs)} paragraphs, "
          f"{report.embedded} embedded, {time.perf_counter() - started:.1f} s ({report.embedder})")

    embedder = engine.embedder()
    cache = EmbeddingCache(StoreLayout.from_settings(settings).cache_path)
    fast = CachedEmbedder(embedder, cache)
    started = time.perf_counter()
    vectors = fast.embed_batch([q.text for q in questions])
    probe = np.asarray(embedder.embed_query(questions[0].text))
    assert float(probe @ vectors[0]) > 0.999, "this embedder embeds queries differently from passages"
    print(f"questions: {len(questions)} embedded in {time.perf_counter() - started:.1f} s")

    # No chunk gate in the answerer: evaluate() applies it, so one run serves every gate.
    answerer = ExtractiveAnswerer(settings, embedder=lambda: fast, min_relevance=-1.0)
    with Index.open(settings, "squad") as index:
        started = time.perf_counter()
        # Every sentence of the collection at once: large sorted batches beat a few per question.
        chunks = [c.text for batch in index.iter_chunks() for c in batch]
        sentences = {" ".join(t[s:e].split()) for t in chunks for s, e in split_sentences(t)}
        answerer.sentence_vectors(fast, sorted(sentences))
        print(f"sentences: {len(sentences)} embedded in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        retriever = Retriever(index, fast)
        retrieved = []
        for q in questions:
            hits = list(retriever.search(q.text, k, mode=settings.retrieval.mode))
            retrieved.append(Retrieved(q, hits, max((h.relevance or 0.0 for h in hits), default=0.0)))
        print(f"retrieval: {time.perf_counter() - started:.1f} s (k={k}, {settings.retrieval.mode})")
    engine.close()
    return retrieved, answerer, fast


def score(retrieved: Sequence[Retrieved], answerer: ExtractiveAnswerer, embedder: Embedder) -> list[list[Scored]]:
    return [answerer.score_sentences(r.question.text, r.hits, embedder) for r in retrieved]


# --- evaluating --------------------------------------------------------------------------------


@dataclass
class Row:
    answered_with_gold: float
    declined_answerable: float
    declined_unanswerable: float
    declined_offtopic: float
    f1: float


def evaluate(
    retrieved: Sequence[Retrieved], scored: Sequence[list[Scored]], gate: float, threshold: float, *, f1s: bool = True
) -> Row:
    """The answerer's results with chunk threshold ``gate`` and sentence threshold ``threshold``."""
    groups: dict[str, list[int]] = {"answerable": [], "unanswerable": [], "offtopic": []}
    for i, r in enumerate(retrieved):
        q = r.question
        groups["offtopic" if q.qid.startswith("off") else "unanswerable" if q.impossible else "answerable"].append(i)

    def chosen(i: int) -> list[Scored]:
        return select(scored[i], threshold) if retrieved[i].relevance >= gate else []

    gold, f1_sum = 0, 0.0
    for i in groups["answerable"]:
        picked, r = chosen(i), retrieved[i]
        if not picked:
            continue
        text, cited = compose(picked, r.hits)
        cited_text = " ".join(normalize(r.hits[n - 1].text) for n in cited)
        gold += any(normalize(a) in cited_text for a in r.question.answers)
        if f1s:
            f1_sum += max(f1(_CITATION.sub("", text), a) for a in r.question.answers)

    def declined(kind: str) -> float:
        return sum(not chosen(i) for i in groups[kind]) / max(1, len(groups[kind]))

    n = max(1, len(groups["answerable"]))
    return Row(gold / n, declined("answerable"), declined("unanswerable"), declined("offtopic"), f1_sum / n)


def at_target(
    retrieved: Sequence[Retrieved], scored: Sequence[list[Scored]], gate: float
) -> tuple[float, Row] | None:
    """The highest threshold (in 0.01 steps) that still answers ``TARGET`` of answerable questions
    with gold, found by bisection (fewer answers as the threshold rises); None if none does."""
    low, high = -100, 200  # in hundredths
    if evaluate(retrieved, scored, gate, low / 100, f1s=False).answered_with_gold < TARGET:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if evaluate(retrieved, scored, gate, mid / 100, f1s=False).answered_with_gold >= TARGET:
            low = mid
        else:
            high = mid
    return low / 100, evaluate(retrieved, scored, gate, low / 100, f1s=False)


@contextmanager
def patched(**values: object) -> Iterator[None]:
    """Module attributes of rag.answer.extractive replaced for the duration (for the ablation)."""
    saved = {name: getattr(extractive, name) for name in values}
    for name, value in values.items():
        setattr(extractive, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(extractive, name, value)


def retrieval_recall(retrieved: Sequence[Retrieved]) -> float:
    """Answerable questions with a gold answer in some retrieved chunk: the ceiling for the rest."""
    answerable = [r for r in retrieved if r.question.answers]
    found = sum(any(normalize(a) in normalize(h.text) for a in r.question.answers for h in r.hits) for r in answerable)
    return found / max(1, len(answerable))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="Keep the store here (default: a temporary folder).")
    parser.add_argument("-k", type=int, default=5, help="Chunks retrieved per question.")
    parser.add_argument("--limit", type=int, help="Only the first N questions.")
    parser.add_argument("--offtopic", type=Path, default=OFFTOPIC, help="JSONL of off-topic queries ('text').")
    parser.add_argument("--no-ablation", action="store_true", help="Skip the ablation table.")
    args = parser.parse_args()

    _, questions = load(DATA)
    questions = questions[: args.limit] if args.limit else questions
    offtopic = load_offtopic(args.offtopic) if args.offtopic and args.offtopic.is_file() else []
    with tempfile.TemporaryDirectory(prefix="squad-") as tmp:
        retrieved, answerer, embedder = retrieve(args.store or Path(tmp), questions + offtopic, args.k)
    started = time.perf_counter()
    scored = score(retrieved, answerer, embedder)
    print(f"sentence scoring: {time.perf_counter() - started:.1f} s")

    settings = Settings.load(environ={}, dotenv=None)
    gate = relevance.min_relevance(settings, embedder.name)
    default = relevance.min_sentence_score(embedder.name)
    answerable = sum(not q.impossible for q in questions)
    print(f"\n{len(questions)} questions: {answerable} answerable, {len(questions) - answerable} unanswerable; "
          f"{len(offtopic)} off-topic; embedder {embedder.name}")
    print(f"gold answer in a retrieved chunk (top {args.k}): {retrieval_recall(retrieved):.1%}")

    print(f"\nChunk relevance gate alone (no sentence threshold); default {gate}:\n")
    print("| min relevance | declined (answerable) | declined (unanswerable) | declined (off-topic) |")
    print("|---:|---:|---:|---:|")
    for g in sorted({*GATES, gate}):
        row = evaluate(retrieved, scored, g, -99.0)
        mark = " **default**" if g == gate else ""
        print(f"| {g:.2f}{mark} | {row.declined_answerable:.1%} | {row.declined_unanswerable:.1%} | "
              f"{row.declined_offtopic:.1%} |")

    print(f"\nSentence threshold, with the default gate {gate}; default {default}:\n")
    print("| threshold | answered with gold | declined (answerable) | declined (unanswerable) "
          "| declined (off-topic) | F1 (answerable) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threshold in sorted({*THRESHOLDS, default}):
        row = evaluate(retrieved, scored, gate, threshold)
        mark = " **default**" if threshold == default else ""
        print(f"| {threshold:.2f}{mark} | {row.answered_with_gold:.1%} | {row.declined_answerable:.1%} | "
              f"{row.declined_unanswerable:.1%} | {row.declined_offtopic:.1%} | {row.f1:.3f} |")

    if args.no_ablation:
        return
    print(f"\nAblation, each at the highest threshold that answers {TARGET:.0%} of answerable questions with gold:\n")
    print("| scoring | threshold | declined (answerable) | declined (unanswerable) |")
    print("|---|---:|---:|---:|")
    variants: list[tuple[str, dict[str, object]]] = [
        ("as shipped", {}),
        ("no word coverage", {"COVERAGE_WEIGHT": 0.0}),
        ("no negation rule", {"negated": lambda text: False}),
        ("no answer-type penalty", {"ANSWER_TYPE_PENALTY": 0.0}),
        ("one sentence only", {"MAX_SENTENCES": 1}),
        ("cosine only, one sentence", {"COVERAGE_WEIGHT": 0.0, "negated": lambda text: False,
                                       "ANSWER_TYPE_PENALTY": 0.0, "MAX_SENTENCES": 1}),
    ]
    for name, values in variants:
        with patched(**values):
            variant = score(retrieved, answerer, embedder)
            found = at_target(retrieved, variant, gate)
            ceiling = evaluate(retrieved, variant, gate, -99.0, f1s=False).answered_with_gold
        if found is None:
            print(f"| {name} | never reaches {TARGET:.0%} ({ceiling:.1%} at most) | | |")
        else:
            threshold, row = found
            print(f"| {name} | {threshold:.2f} | {row.declined_answerable:.1%} | {row.declined_unanswerable:.1%} |")


if __name__ == "__main__":
    main()
