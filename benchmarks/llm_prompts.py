"""What a tiny real model does with rag's prompts, and whether a prompt change helps.

    python benchmarks/llm_prompts.py [--variants current,reminder] [--squad 20] [--max-tokens 64]

Needs the ``llm`` extra (``pip install -e ".[llm]"``).  Serves Gemma 3 270M (Q4_K_M) with
llama.cpp's OpenAI-compatible server on 127.0.0.1 (tests/llama_server.py) and asks, through
the real ``openai`` SDK and ``Engine.ask``:

1. 20 questions about the sample documents in ``data/`` (ingested with the local embedder):
   15 the documents answer and 5 they do not (near misses and one off-topic), once per
   prompt variant.  Reported per variant, over the questions that reached the model (the
   relevance gate may decline some first):
   - cited: answers with at least one valid ``[n]``; invalid: citations of no source;
   - gold: answers whose text contains a gold answer (SQuAD-normalised);
   - sentinel: replies that are the sentinel (rag refuses), on answerable and unanswerable;
   - stray: replies that contain the sentinel but do not start with it, and cite a source (rag
     answers those; one that cites nothing is a refusal);
2. with ``--squad N``: N answerable and N unanswerable SQuAD v2 questions on the Normans
   article of part A (../shared/data), extractive answerer against the model, with the
   metrics of benchmarks/squad_answerability.py: answered with the gold answer in a cited
   chunk, and unanswerable declined.

Variants change only the prompt text (``rag.prompts``): ``current`` is rag/prompts.py as it
is; the others are defined below.  The model decodes greedily (temperature 0), so a run is
repeatable on one machine.  Timings depend on load: ``uptime`` is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag import prompts
from rag.answer.citations import CITATION
from rag.engine import Engine
from rag.results import Answer
from tests import llama_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MANUALS = ROOT / "benchmarks" / "manuals"
SQUAD = ROOT.parent / "shared" / "data" / "squad-v2-dev-part-a" / "dev-v2.0.json"


@dataclass(frozen=True)
class Question:
    text: str
    gold: tuple[str, ...]  # empty: the documents do not answer it

    @property
    def answerable(self) -> bool:
        return bool(self.gold)


# Answers checked by hand against data/ (a Wikipedia extract each, and the Zen of Python).
QUESTIONS = [
    Question("When did the 1973 oil crisis begin?", ("October 1973",)),
    Question("Which organization proclaimed the 1973 oil embargo?", ("OAPEC", "Organization of Arab Petroleum")),
    Question("By the end of the embargo in March 1974, what was the price of a barrel of oil?", ("$12", "12")),
    Question("When did the United States pull out of the Bretton Woods Accord?", ("August 15, 1971", "1971")),
    Question("By how much did OPEC raise the posted price of oil on October 16, 1973?", ("70%", "70 percent")),
    Question("Who negotiated an Israeli troop withdrawal from parts of the Sinai Peninsula?", ("Kissinger",)),
    Question("Who was the leader of the Norse raiders who swore fealty to King Charles III?", ("Rollo",)),
    Question("In what year was the Battle of Hastings?", ("1066",)),
    Question("Which treaty established the Duchy of Normandy?", ("Saint-Clair-sur-Epte",)),
    Question("Who founded the Principality of Antioch?", ("Bohemond",)),
    Question("Under whom was the Norman Kingdom of Sicily founded?", ("Roger II",)),
    Question("Who is credited with coining the name packet switching?", ("Davies",)),
    Question("At which organization did Paul Baran develop message block switching?", ("RAND",)),
    Question("When did the ARPANET become operational?", ("1969",)),
    Question("Which company created DECnet?", ("Digital Equipment Corporation", "DEC")),
    # Not in the documents: near misses on each topic, and one off-topic question.
    Question("What was the price of a barrel of oil in 2008?", ()),
    Question("Who was the first Norman king of Scotland?", ()),
    Question("Which packet switching network did Norway build in 1990?", ()),
    Question("How many barrels of oil per day did Venezuela export in 1973?", ()),
    Question("What is the boiling point of mercury?", ()),
]

# Answers checked by hand against benchmarks/manuals/ (pages of the HTTPX and Poetry manuals;
# sources and licenses in its SOURCE.md), written before any was asked: defaults, option
# names, commands, how-to and numbers, as people ask a manual.
MANUAL_QUESTIONS = [
    Question("What is the default timeout for network inactivity in HTTPX?", ("five seconds", "5 seconds")),
    Question("How do I disable timeouts for a single request with HTTPX?", ("timeout=None", "timeout to None")),
    Question(
        "Which exception does HTTPX raise when it cannot connect within the connect timeout?", ("ConnectTimeout",)
    ),
    Question("What is the default value of max_connections in httpx.Limits?", ("100",)),
    Question("How many keep-alive connections does HTTPX allow by default?", ("20",)),
    Question("Which environment variable makes HTTPX log low-level request details to stderr?", ("HTTPX_DEBUG",)),
    Question("How can I make an HTTPX client ignore environment variables?", ("trust_env",)),
    Question("Which Client option prepends a URL to all outgoing requests?", ("base_url",)),
    Question("How do I install only the dependencies of a Poetry project and not the project itself?", ("--no-root",)),
    Question("What is the default value of installer.max-workers?", ("number_of_cores + 4",)),
    Question("Which environment variable overrides the Poetry cache directory?", ("POETRY_CACHE_DIR",)),
    Question(
        "How do I find the path to the virtual environment of a Poetry project?",
        ("poetry env info --path", "env info --path"),
    ),
    Question("What does Poetry use by default for git related tasks?", ("dulwich",)),
    Question("Where is a project's local Poetry configuration stored?", ("poetry.toml",)),
    Question("How do I remove a configuration setting in Poetry?", ("--unset",)),
    # Not in the pages: what a reader of these manuals could ask, near what they do say.
    Question("How do I set a proxy for an HTTPX client?", ()),
    Question("What is the default number of retries in HTTPX?", ()),
    Question("How do I publish a package to PyPI with Poetry?", ()),
    Question("What is the default value of virtualenvs.options.no-wheel?", ()),
    Question("How do I enable HTTP/2 in HTTPX?", ()),
]

#: Prompt variants: (system prompt, user message template); None keeps rag's own.
REMINDER = (
    "\n\nAnswer from the sources above only, citing them like [1]. "
    f"If they do not contain the answer, reply with exactly {prompts.SENTINEL}."
)
EXAMPLE = f"""

Example of an answer: The treaty was signed in 911 [2].
Example of a reply when the sources do not answer: {prompts.SENTINEL}"""
VARIANTS: dict[str, tuple[str | None, str | None]] = {
    "current": (None, None),
    # The rules again after the question, where a small model attends most.
    "reminder": (None, prompts.USER + REMINDER),
    # One example of each kind of reply: small models copy a pattern better than they follow a rule.
    "example": (prompts.SYSTEM + EXAMPLE, None),
}


@contextmanager
def variant(name: str) -> Iterator[None]:
    system, user = VARIANTS[name]
    saved = prompts.SYSTEM, prompts.USER
    prompts.SYSTEM, prompts.USER = system or prompts.SYSTEM, user or prompts.USER
    try:
        yield
    finally:
        prompts.SYSTEM, prompts.USER = saved


_PUNCTUATION = str.maketrans("", "", string.punctuation.replace("$", "").replace("%", ""))
# Dashes that glue words in the documents ("the Adriatic—fell") split them: dropped like the
# ASCII punctuation, "the Adriatic" was not found in a chunk that holds it.
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", " "))


def normalize(text: str) -> str:
    text = text.lower().translate(_DASHES).translate(_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains(text: str, golds: tuple[str, ...]) -> bool:
    return any(normalize(g) and f" {normalize(g)} " in f" {normalize(text)} " for g in golds)


@dataclass
class Tally:
    asked: int = 0  # reached the model
    gate: int = 0  # declined by the relevance gate first
    sentinel: int = 0
    stray: int = 0
    cited: int = 0
    invalid: int = 0
    gold: int = 0
    seconds: list[float] = field(default_factory=list)

    def rate(self, n: int) -> str:
        return f"{n}/{self.asked}" if self.asked else "-"


def ask_all(engine: Engine, questions: list[Question], replies: list[list[str]]) -> tuple[Tally, Tally]:
    answerable, unanswerable = Tally(), Tally()
    for q in questions:
        tally = answerable if q.answerable else unanswerable
        started = time.perf_counter()
        answer = engine.ask(q.text)
        if not answer.usage.requests:
            tally.gate += 1
            continue
        tally.seconds.append(time.perf_counter() - started)
        raw = "".join(replies[-1])
        tally.asked += 1
        tally.sentinel += answer.refused
        tally.stray += (not answer.refused) and prompts.SENTINEL in raw
        tally.cited += bool(answer.citations)
        tally.invalid += answer.removed_citations
        tally.gold += (not answer.refused) and contains(CITATION.sub("", answer.text), q.gold)
        print(f"  {'+' if q.answerable else '-'} {q.text[:60]!r}: {raw[:160]!r}", file=sys.stderr)
    return answerable, unanswerable


def llm_env(server: llama_server.LlamaServer, max_tokens: int) -> None:
    os.environ.update(
        OPENAI_BASE_URL=server.base_url,
        RAG_CHAT_MODEL=server.model,
        RAG_CONTEXT_WINDOW=str(server.context_window),
        RAG_MAX_ANSWER_TOKENS=str(max_tokens),
        RAG_TOP_K="3",
        RAG_OPENAI_TIMEOUT="600",
    )


def prompt_table(store: Path, names: list[str], replies: list[list[str]], server: llama_server.LlamaServer) -> None:
    if not names:
        return
    with Engine(index="sample", store=store, embedding__embedder="local") as engine:
        engine.ingest([DATA], embedder="local")
        print(
            "| variant | answerable: asked | cited | gold in answer | sentinel | stray sentinel | invalid [n] "
            "| unanswerable: asked | sentinel | stray sentinel | cited | gate declined (ans/unans) | s/question "
            "| server CPU s/question |"
        )
        print("| --- " * 14 + "|")
        for name in names:
            cpu = server.cpu_seconds() or 0.0
            with variant(name):
                a, u = ask_all(engine, QUESTIONS, replies)
            cpu = ((server.cpu_seconds() or 0.0) - cpu) / max(1, a.asked + u.asked)
            seconds = sorted(a.seconds + u.seconds)
            median = seconds[len(seconds) // 2] if seconds else 0.0
            print(
                f"| {name} | {a.asked} | {a.rate(a.cited)} | {a.rate(a.gold)} | {a.rate(a.sentinel)} "
                f"| {a.rate(a.stray)} | {a.invalid + u.invalid} | {u.asked} | {u.rate(u.sentinel)} | {u.rate(u.stray)} "
                f"| {u.rate(u.cited)} | {a.gate}/{u.gate} | {median:.1f} | {cpu:.1f} |",
                flush=True,
            )


def squad_subset(n: int, seed: int = 0, title: str = "Normans") -> tuple[list[str], list[Question]]:
    """An article's paragraphs, and n answerable plus n unanswerable of its questions."""
    articles = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    article = next((a for a in articles if a["title"] == title), None)
    if article is None:
        raise SystemExit(f"{SQUAD}: no article {title!r}: use one of {', '.join(a['title'] for a in articles)}")
    paragraphs = [p["context"] for p in article["paragraphs"]]
    qas = [qa for p in article["paragraphs"] for qa in p["qas"]]
    rng = random.Random(seed)
    pick: list[Question] = []
    for impossible in (False, True):
        pool = [qa for qa in qas if bool(qa["is_impossible"]) == impossible]
        for qa in rng.sample(pool, n):
            pick.append(Question(" ".join(qa["question"].split()), tuple(a["text"] for a in qa["answers"])))
    return paragraphs, pick


def answered_with_gold(answer: Answer, q: Question) -> bool:
    return not answer.refused and any(contains(c.text, q.gold) for c in answer.citations)


def squad_table(store: Path, n: int) -> None:
    paragraphs, questions = squad_subset(n)
    folder = store / "squad-normans"
    folder.mkdir(exist_ok=True)
    for i, text in enumerate(paragraphs):
        (folder / f"p{i:03}.txt").write_text(text, encoding="utf-8")
    print(f"\nSQuAD v2 part A, Normans article: {n} answerable and {n} unanswerable questions")
    print("| answerer | answered with gold in a cited chunk | gold in answer text | unanswerable declined |")
    print("| --- | --- | --- | --- |")
    with Engine(index="squad", store=store, embedding__embedder="local") as engine:
        engine.ingest([folder], embedder="local")
        for llm in ("none", "openai"):
            hit = in_text = declined = 0
            for q in questions:
                answer = engine.ask(q.text, llm=llm)
                if q.answerable:
                    hit += answered_with_gold(answer, q)
                    in_text += (not answer.refused) and contains(CITATION.sub("", answer.text), q.gold)
                else:
                    declined += answer.refused
            name = "extractive" if llm == "none" else "gemma-3-270m"
            print(f"| {name} | {hit}/{n} | {in_text}/{n} | {declined}/{n} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated (empty: none), from: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--squad", type=int, default=20, metavar="N", help="SQuAD questions of each kind (0: skip)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--store", type=Path, help="store folder to reuse (default: a temporary one)")
    args = parser.parse_args()
    reason = llama_server.missing()
    if reason:
        sys.exit(f"llm_prompts: {reason}")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS:
            sys.exit(f"llm_prompts: unknown variant {name!r}: use {', '.join(VARIANTS)}")

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp)
        os.environ["RAG_HOME"] = str(store)
        started = time.perf_counter()
        with llama_server.llama_server(llama_server.model_path(store / "model")) as server:
            print(f"server ready in {time.perf_counter() - started:.1f} s; load: {os.getloadavg()[0]:.1f}")
            llm_env(server, args.max_tokens)
            with llama_server.recorded_replies() as replies:
                prompt_table(store, names, replies, server)
                if args.squad:
                    squad_table(store, args.squad)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
