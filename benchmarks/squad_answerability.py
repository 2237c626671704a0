"""Does the extractive answerer answer what the documents hold, and decline what they don't?

Data: SQuAD v2.0 dev (part; see ../shared/data/squad-v2-dev-part-a/SOURCE.md beside the
repository, or any SQuAD v2-format file with ``--data``).  Every paragraph becomes one
document, ingested with the default local embedder into a temporary store; every question
is asked of the whole collection with the extractive answerer.  Unanswerable questions
are adversarial: the right paragraph is retrieved, but it does not hold the answer (a
changed name, a negation, a wrong date).  300 SciFact claims (biomedicine) serve as
off-topic questions, which the chunk relevance gate should decline.

Reported:

- answered with gold: answerable questions answered, with a gold answer inside a cited
  chunk (SQuAD-normalised text match, any of the gold answers);
- declined (answerable), declined (unanswerable), declined (off-topic);
- F1: SQuAD token F1 of the quoted sentences against the gold answers, over answerable
  questions (a declined one scores 0).  Quoting whole sentences caps it well below 1;
- span marked / span F1: answers with gold that mark an answering span, and that span's
  token F1 against the gold answers;

for a sweep of chunk relevance gates (``MIN_RELEVANCE``, alone and with the keyword
evidence of ``relevance.keyword_match``), a sweep of sentence thresholds
(``MIN_SENTENCE_SCORE``) at the default gate, with the focus-term and contrast checks of
``extractive.choose``; the default again on each half of the paragraphs (even ones, which
the contrast rules were written looking at, and odd ones, held out); then near-topic
questions without their evidence: SciFact test claims asked of 1,000 SciFact abstracts
from which their gold abstracts were removed (and, as a control, other claims whose gold
abstracts were kept); and an ablation: each part switched off in turn, compared at the
threshold that keeps 80% answered with gold.

    python benchmarks/squad_answerability.py [--data FILE] [--store DIR] [-k 5] [--limit N]
        [--no-ablation] [--scifact-claims N] [--scifact-corpus N]

Question vectors are computed in batches up front, and every sentence of the collection
in one pass, all through the store's embedding cache: with ``--store`` a re-run embeds
nothing and skips ingesting (unchanged files).  SQuAD alone takes about three minutes on
two cores the first time and one after; the SciFact part about ten the first time.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer import contrast, extractive, focus, relevance
from rag.answer.extractive import ExtractiveAnswerer, Scored, compose, split_sentences
from rag.embed.base import Embedder, embed_many
from rag.engine import Engine
from rag.results import Hit
from rag.retrieve.search import Retriever
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, StoreLayout


def _shared_data() -> Path:
    """``../shared/data`` beside the repository's main checkout (a git worktree elsewhere finds
    it through the ``.git`` file that names the main repository), else ``/work/shared/data``."""
    root = Path(__file__).resolve().parents[1]
    places = [root.parent]
    git = root / ".git"
    if git.is_file():  # a worktree: "gitdir: MAIN/.git/worktrees/NAME"
        gitdir = Path(git.read_text(encoding="utf-8").partition("gitdir:")[2].strip())
        places.append(gitdir.parents[2].parent)
    places.append(Path("/work"))
    return next(
        (p / "shared" / "data" for p in places if (p / "shared" / "data").is_dir()), places[0] / "shared" / "data"
    )


# The data lives in ../shared beside the repository (see its SOURCE.md files).
SHARED = _shared_data()
DATA = SHARED / "squad-v2-dev-part-a" / "dev-v2.0.json"
OFFTOPIC = SHARED / "beir-scifact" / "queries.jsonl"
SCIFACT = SHARED / "beir-scifact"
GATES = [0.15, 0.20, 0.25, 0.30, 0.35, 0.40]
THRESHOLDS = [round(0.40 + 0.05 * i, 2) for i in range(11)]
TARGET = 0.80  # answered with gold, for the ablation's comparison


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    answers: tuple[str, ...]
    impossible: bool
    #: The paragraph's number in the file (-1 for off-topic claims): even and odd halves.
    paragraph: int = -1


@dataclass
class Retrieved:
    question: Question
    hits: list[Hit]
    relevance: float  # the best chunk's cosine relevance


class FrozenRarity(focus.Rarity):
    """Term rarity read from an index once, for every question up front (the index is closed after)."""

    def __init__(self, index: Index, questions: Sequence[Question]) -> None:
        phrases = sorted({t.text for q in questions for t in focus.terms(q.text)})
        counts = index.document_frequencies(phrases)
        super().__init__(lambda asked: {p: counts.get(p, 0) for p in asked}, index.chunk_count())


def load(path: Path) -> tuple[list[str], list[Question]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs, questions = [], []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                text = " ".join(qa["question"].split())  # as retrieval sees it
                impossible = bool(qa["is_impossible"])
                questions.append(Question(qa["id"], text, answers, impossible, len(paragraphs) - 1))
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
    store: Path, paragraphs: list[str], questions: list[Question], k: int, name: str = "squad"
) -> tuple[list[Retrieved], ExtractiveAnswerer, Embedder, focus.Rarity]:
    """Ingest the paragraphs, then retrieve for every question; returns a warmed-up answerer."""
    docs = store / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(paragraphs):
        path = docs / f"p{i:04d}.txt"
        if not path.exists() or path.read_text(encoding="utf-8") != text + "\n":
            path.write_text(text + "\n", encoding="utf-8")

    settings = Settings.load(environ={}, dotenv=None).with_options(store__home=store / "home")
    engine = Engine(index=name, settings=settings)
    started = time.perf_counter()
    # fp32: the model the answerer scores sentences with (an int8 index too), and the one its
    # thresholds were calibrated on; int8 also embeds a query apart from a batch differently.
    report = engine.ingest(docs, embedder="local:fp32")
    print(
        f"ingest: {report.chunks_total} chunks from {len(paragraphs)} paragraphs, "
        f"{report.embedded} embedded, {time.perf_counter() - started:.1f} s ({report.embedder})"
    )

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
    with Index.open(settings, name) as index:
        rarity = FrozenRarity(index, questions)
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
    return retrieved, answerer, fast, rarity


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
    #: Answered-with-gold answers with a marked span, and the span's mean SQuAD F1 among those.
    span_marked: float = 0.0
    span_f1: float = 0.0


@dataclass
class Run:
    """Retrieved hits, scored sentences and the index's term rarity: all ``evaluate`` needs."""

    retrieved: Sequence[Retrieved]
    scored: Sequence[list[Scored]]
    rarity: focus.Rarity | None
    #: Per question: does a hit hold all its focus terms (the gate's keyword evidence)?
    keyword: Sequence[bool]

    @classmethod
    def of(cls, retrieved: Sequence[Retrieved], scored: Sequence[list[Scored]], rarity: focus.Rarity | None) -> Run:
        keyword = [relevance.keyword_match(r.question.text, r.hits) for r in retrieved]
        return cls(retrieved, scored, rarity, keyword)


def kind(q: Question) -> str:
    return "offtopic" if q.qid.startswith("off") else "unanswerable" if q.impossible else "answerable"


def evaluate(run: Run, gate: float, threshold: float, *, f1s: bool = True, keyword_gate: bool = True) -> Row:
    """The answerer's results with chunk threshold ``gate`` and sentence threshold ``threshold``."""
    groups: dict[str, list[int]] = {"answerable": [], "unanswerable": [], "offtopic": []}
    for i, r in enumerate(run.retrieved):
        groups[kind(r.question)].append(i)

    def chosen(i: int) -> list[Scored]:
        r = run.retrieved[i]
        if r.relevance < gate and not (keyword_gate and run.keyword[i]):
            return []
        return extractive.choose(r.question.text, r.hits, run.scored[i], threshold, run.rarity).chosen

    gold, f1_sum, marked, span_f1 = 0, 0.0, 0, 0.0
    for i in groups["answerable"]:
        picked, r = chosen(i), run.retrieved[i]
        if not picked:
            continue
        text, cited = compose(picked, r.hits)
        cited_text = " ".join(normalize(r.hits[n - 1].text) for n in cited)
        found = any(normalize(a) in cited_text for a in r.question.answers)
        gold += found
        if f1s:
            f1_sum += max(f1(_CITATION.sub("", text), a) for a in r.question.answers)
            spans = extractive.spans(r.question.text, text, picked)
            if found and spans:
                marked += 1
                span_f1 += max(f1(s.text, a) for s in spans for a in r.question.answers)

    def declined(kind: str) -> float:
        return sum(not chosen(i) for i in groups[kind]) / max(1, len(groups[kind]))

    n = max(1, len(groups["answerable"]))
    return Row(
        gold / n,
        declined("answerable"),
        declined("unanswerable"),
        declined("offtopic"),
        f1_sum / n,
        marked / max(1, gold),
        span_f1 / max(1, marked),
    )


def _in_half(keep: Callable[[Question], bool], q: Question) -> bool:
    return q.paragraph < 0 or keep(q)


def subset(run: Run, keep: Callable[[Question], bool]) -> Run:
    """The part of ``run`` whose questions ``keep`` accepts."""
    picked = [i for i, r in enumerate(run.retrieved) if keep(r.question)]
    retrieved, scored = [run.retrieved[i] for i in picked], [run.scored[i] for i in picked]
    return Run(retrieved, scored, run.rarity, [run.keyword[i] for i in picked])


def at_target(run: Run, gate: float) -> tuple[float, Row] | None:
    """The highest threshold (in 0.01 steps) that still answers ``TARGET`` of answerable questions
    with gold, found by bisection (fewer answers as the threshold rises); None if none does."""
    low, high = -100, 200  # in hundredths
    if evaluate(run, gate, low / 100, f1s=False).answered_with_gold < TARGET:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if evaluate(run, gate, mid / 100, f1s=False).answered_with_gold >= TARGET:
            low = mid
        else:
            high = mid
    return low / 100, evaluate(run, gate, low / 100, f1s=False)


@contextmanager
def patched(module: object, **values: object) -> Iterator[None]:
    """Attributes of ``module`` replaced for the duration (for the ablation)."""
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def retrieval_recall(retrieved: Sequence[Retrieved]) -> float:
    """Answerable questions with a gold answer in some retrieved chunk: the ceiling for the rest."""
    answerable = [r for r in retrieved if r.question.answers]
    found = sum(any(normalize(a) in normalize(h.text) for a in r.question.answers for h in r.hits) for r in answerable)
    return found / max(1, len(answerable))


# --- SciFact claims whose evidence was removed ------------------------------------------------


def scifact_removed(store: Path, k: int, claims: int, corpus_size: int) -> tuple[Run, int]:
    """SciFact test claims asked of an index of SciFact abstracts that lacks their gold abstracts.

    Near-topic questions without their evidence: the rest of the collection is biomedicine
    too.  The index holds ``corpus_size`` abstracts (every gold abstract of the claims kept
    as a control, then others in corpus order); the first ``claims`` test claims have their
    gold abstracts removed.  Control claims (gold kept) come back as "answerable", the
    others as "unanswerable".
    """
    qrels: dict[str, set[str]] = collections.defaultdict(set)
    for line in (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        qrels[qid].add(doc)
    texts = {}
    for line in (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts[row["_id"]] = row["text"]
    test = [q for q in qrels if q in texts]
    removed_claims, kept_claims = test[:claims], test[claims : 2 * claims]
    removed = set().union(*(qrels[q] for q in removed_claims)) - set().union(*(qrels[q] for q in kept_claims))
    kept = list(dict.fromkeys(d for q in kept_claims for d in qrels[q]))
    corpus = {}
    for line in (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = f"{row['title']}\n\n{row['text']}"
    others = [d for d in corpus if d not in removed and d not in set(kept)]
    docs = [corpus[d] for d in (kept + others)[:corpus_size]]
    questions = [Question(f"sf{q}", texts[q], (), True) for q in removed_claims]
    questions += [Question(f"sf{q}", texts[q], ("",), False) for q in kept_claims]
    retrieved, answerer, embedder, rarity = retrieve(store, docs, questions, k, name="scifact")
    return Run.of(retrieved, score(retrieved, answerer, embedder), rarity), len(removed)


def scifact_row(run: Run, gate: float, threshold: float) -> tuple[float, float]:
    """(declined with the evidence removed, declined with it kept)."""
    declined = {True: 0, False: 0}
    counts = {True: 0, False: 0}
    for i, r in enumerate(run.retrieved):
        if r.relevance < gate and not run.keyword[i]:
            chosen: list[Scored] = []
        else:
            chosen = extractive.choose(r.question.text, r.hits, run.scored[i], threshold, run.rarity).chosen
        counts[r.question.impossible] += 1
        declined[r.question.impossible] += not chosen
    return declined[True] / max(1, counts[True]), declined[False] / max(1, counts[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="A SQuAD v2-format JSON file.")
    parser.add_argument("--store", type=Path, help="Keep the store here (default: a temporary folder).")
    parser.add_argument("-k", type=int, default=5, help="Chunks retrieved per question.")
    parser.add_argument("--limit", type=int, help="Only the first N questions.")
    parser.add_argument("--offtopic", type=Path, default=OFFTOPIC, help="JSONL of off-topic queries ('text').")
    parser.add_argument("--no-ablation", action="store_true", help="Skip the ablation table.")
    parser.add_argument(
        "--scifact-claims",
        type=int,
        default=150,
        help="SciFact claims asked without their gold abstracts (0: skip that part).",
    )
    parser.add_argument("--scifact-corpus", type=int, default=1000, help="SciFact abstracts in that index.")
    args = parser.parse_args()

    paragraphs, questions = load(args.data)
    questions = questions[: args.limit] if args.limit else questions
    offtopic = load_offtopic(args.offtopic) if args.offtopic and args.offtopic.is_file() else []
    with tempfile.TemporaryDirectory(prefix="squad-") as tmp:
        store = args.store or Path(tmp)
        retrieved, answerer, embedder, rarity = retrieve(store, paragraphs, questions + offtopic, args.k)
        started = time.perf_counter()
        run = Run.of(retrieved, score(retrieved, answerer, embedder), rarity)
        print(f"sentence scoring: {time.perf_counter() - started:.1f} s")
        scifact = None
        if args.scifact_claims and (SCIFACT / "corpus.jsonl").is_file():
            scifact = scifact_removed(store / "scifact", args.k, args.scifact_claims, args.scifact_corpus)

    settings = Settings.load(environ={}, dotenv=None)
    gate = relevance.min_relevance(settings, embedder.name)
    default = relevance.min_sentence_score(embedder.name)
    answerable = sum(not q.impossible for q in questions)
    print(
        f"\n{args.data.parent.name}/{args.data.name}: {len(questions)} questions: {answerable} answerable, "
        f"{len(questions) - answerable} unanswerable; {len(offtopic)} off-topic; embedder {embedder.name}"
    )
    print(f"gold answer in a retrieved chunk (top {args.k}): {retrieval_recall(retrieved):.1%}")

    print(
        f"\nChunk relevance gate alone (no sentence threshold, no focus-term check); default {gate}; "
        "'+ keywords': a hit holding every focus term of the question passes too:\n"
    )
    print(
        "| min relevance | declined (answerable) | declined (unanswerable) | declined (off-topic) "
        "| + keywords: answerable | unanswerable | off-topic |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    bare = Run(run.retrieved, run.scored, None, run.keyword)
    with patched(extractive, choose=lambda q, hits, scored, threshold, rarity: extractive.Choice(list(scored[:1]))):
        for g in sorted({*GATES, gate}):
            row = evaluate(bare, g, -99.0, keyword_gate=False)
            kw = evaluate(bare, g, -99.0)
            mark = " **default**" if g == gate else ""
            print(
                f"| {g:.2f}{mark} | {row.declined_answerable:.1%} | {row.declined_unanswerable:.1%} | "
                f"{row.declined_offtopic:.1%} | {kw.declined_answerable:.1%} | {kw.declined_unanswerable:.1%} | "
                f"{kw.declined_offtopic:.1%} |"
            )

    print(f"\nSentence threshold, with the default gate {gate}; default {default}:\n")
    print(
        "| threshold | answered with gold | declined (answerable) | declined (unanswerable) "
        "| declined (off-topic) | F1 (answerable) | span marked | span F1 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threshold in sorted({*THRESHOLDS, default}):
        row = evaluate(run, gate, threshold)
        mark = " **default**" if threshold == default else ""
        print(
            f"| {threshold:.3g}{mark} | {row.answered_with_gold:.1%} | {row.declined_answerable:.1%} | "
            f"{row.declined_unanswerable:.1%} | {row.declined_offtopic:.1%} | {row.f1:.3f} | "
            f"{row.span_marked:.1%} | {row.span_f1:.3f} |"
        )

    print(
        f"\nBy half of the paragraphs at the default threshold {default} (the contrast rules of "
        "rag.answer.contrast were written looking at the even half only; off-topic claims in both):\n"
    )
    print("| questions | answered with gold | declined (answerable) | declined (unanswerable) | declined (off-topic) |")
    print("|---|---:|---:|---:|---:|")
    halves: list[tuple[str, Callable[[Question], bool]]] = [
        ("even paragraphs (rules written on)", lambda q: q.paragraph % 2 == 0),
        ("odd paragraphs (held out)", lambda q: q.paragraph % 2 == 1),
        ("all of them", lambda q: True),
    ]
    for name, keep in halves:
        # Off-topic claims (paragraph -1) belong to every half.
        row = evaluate(subset(run, partial(_in_half, keep)), gate, default, f1s=False)
        print(
            f"| {name} | {row.answered_with_gold:.1%} | {row.declined_answerable:.1%} | "
            f"{row.declined_unanswerable:.1%} | {row.declined_offtopic:.1%} |"
        )

    if scifact is not None:
        sf, n_removed = scifact
        claims = sum(r.question.impossible for r in sf.retrieved)
        controls = len(sf.retrieved) - claims
        print(
            f"\nSciFact claims asked of {args.scifact_corpus} SciFact abstracts: {claims} claims with their "
            f"{n_removed} gold abstracts removed, and {controls} control claims with theirs kept:\n"
        )
        print("| threshold | declined (gold removed) | declined (gold kept) |")
        print("|---:|---:|---:|")
        for threshold in sorted({*THRESHOLDS, default}):
            removed_rate, kept_rate = scifact_row(sf, gate, threshold)
            mark = " **default**" if threshold == default else ""
            print(f"| {threshold:.3g}{mark} | {removed_rate:.1%} | {kept_rate:.1%} |")

    if args.no_ablation:
        return
    print(f"\nAblation, each at the highest threshold that answers {TARGET:.0%} of answerable questions with gold:\n")
    print("| scoring | threshold | declined (answerable) | declined (unanswerable) | declined (off-topic) |")
    print("|---|---:|---:|---:|---:|")

    def unchecked(q: str, hits: list[Hit], scored: list[Scored], threshold: float, rarity: object) -> object:
        return extractive.Choice(extractive.select(scored, threshold))

    no_focus = {"choose": unchecked}
    variants: list[tuple[str, Any, dict[str, Any]]] = [
        ("as shipped", extractive, {}),
        ("no focus-term check", extractive, no_focus),
        ("no missing-share rule", focus, {"MAX_MISSING": 1.0}),
        ("no contrast check", contrast, {"conflict": lambda question, sentences, context="": None}),
        ("no word coverage", extractive, {"COVERAGE_WEIGHT": 0.0}),
        ("no negation rule", extractive, {"negated": lambda text: False}),
        ("no answer-type penalty", extractive, {"ANSWER_TYPE_PENALTY": 0.0}),
        ("one sentence only", extractive, {"MAX_SENTENCES": 1}),
    ]
    for name, module, values in variants:
        with patched(module, **values):
            variant = Run(run.retrieved, score(run.retrieved, answerer, embedder), run.rarity, run.keyword)
            found = at_target(variant, gate)
            ceiling = evaluate(variant, gate, -99.0, f1s=False).answered_with_gold
        if found is None:
            print(f"| {name} | never reaches {TARGET:.0%} ({ceiling:.1%} at most) | | | |")
        else:
            threshold, row = found
            print(
                f"| {name} | {threshold:.2f} | {row.declined_answerable:.1%} | {row.declined_unanswerable:.1%} | "
                f"{row.declined_offtopic:.1%} |"
            )


if __name__ == "__main__":
    main()
