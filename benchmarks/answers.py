"""How well each answerer answers, cites and declines: extractive, local models, any server.

    python benchmarks/answers.py [--answerers extractive,local,local:FILE.gguf,URL#MODEL]
                                 [--limit 10] [--article Normans] [--max-tokens 160] [--out answers.jsonl]

Two question sets, asked through ``Engine.ask`` with rag's own prompts:

- ``data``: the 20 questions about the bundled ``data/`` of benchmarks/llm_prompts.py (15 the
  documents answer, with hand-checked gold answers, and 5 they do not; ``--data-limit N``
  asks the first N answerable and a third as many unanswerable);
- ``squad``: ``--limit`` answerable and ``--limit`` unanswerable SQuAD v2 questions on one
  article of part A (../shared/data), a fixed random sample.  ``--article`` picks it: Normans
  by default, the article support.py's rules were written against; any other is held out.

Answerers: ``extractive``; ``local`` (each installed model of ``rag.answer.local_llm.MODELS``,
or ``local:PATH`` for a GGUF), served by ``--llm local``'s own llama.cpp server; or an
OpenAI-compatible server as ``http://HOST:PORT/v1#MODEL``.  Per answerer and set:

- gold in text: answerable questions answered with a gold answer in the answer's text;
- citation precision: of the answers that cite, those where a cited chunk holds a gold answer;
- cited: answers (not refusals) to answerable questions that cite at all;
- declined: unanswerable questions refused;
- quoted instead: answers where the model's answer failed the support check and quotes of its
  sources stood in (``--quote-fallback off`` refuses instead); they count in the columns before;
- unsupported/answer: sentences the support check found unsupported, per answer;
- p50 s: median seconds per answer (retrieval excluded); tokens/s: completion tokens per
  second of answering (prompt reading included, which dominates on 2 cores).

SQuAD is also reported per half (``squad-A``, ``squad-B``, split by a hash of the question's
text): rules tuned on one half are measured on the other.

A third set, ``manuals`` (``--sets manuals``): 20 questions about two software manuals (pages of
HTTPX's and Poetry's docs in benchmarks/manuals/, see its SOURCE.md), 15 they answer, with
hand-checked gold answers (defaults, option names, commands, how-to, numbers), and 5 they do
not: code identifiers, option lists and commands in code blocks, unlike the articles of data/.

``--out`` writes every answer as JSON lines (with its support verdicts and the model's raw
reply) for checking by hand.  ``--replay FILE`` asks the questions again with the raw replies
a run wrote there, served by a fake server: what rag's checks (support, attribution,
refusals) make of the same model output, in seconds instead of an hour on two cores.
Timings depend on load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import llm_prompts
from benchmarks.llm_prompts import DATA, MANUAL_QUESTIONS, MANUALS, QUESTIONS, Question, contains, squad_subset
from rag import prompts
from rag.answer import relevance
from rag.answer.citations import CITATION
from rag.answer.local_llm import CONTEXT_WINDOW, MODELS
from rag.engine import Engine
from rag.results import Answer
from tests.llama_server import recorded_replies
from tests.openai_server import FakeOpenAI, openai_server


@dataclass
class Row:
    answerable: int = 0
    unanswerable: int = 0
    gold_in_text: int = 0
    citing: int = 0
    precise: int = 0
    answered: int = 0
    declined: int = 0
    quoted: int = 0
    unsupported: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0

    def add(self, q: Question, answer: Answer) -> None:
        self.seconds.append(answer.seconds or 0.0)
        self.tokens += answer.usage.completion_tokens
        self.quoted += answer.set_aside is not None
        if not answer.refused:
            self.unsupported.append(sum(not s.supported for s in answer.support))
        if not q.answerable:
            self.unanswerable += 1
            self.declined += answer.refused
            return
        self.answerable += 1
        if answer.refused:
            return
        self.answered += 1
        self.gold_in_text += contains(CITATION.sub("", answer.text), q.gold)
        if answer.citations:
            self.citing += 1
            self.precise += any(contains(c.text, q.gold) for c in answer.citations)

    def cells(self) -> list[str]:
        per_answer = f"{statistics.mean(self.unsupported):.2f}" if self.unsupported else "-"
        seconds = sum(self.seconds)
        return [
            f"{self.gold_in_text}/{self.answerable}",
            f"{self.precise}/{self.citing}",
            f"{self.citing}/{self.answered}",
            f"{self.declined}/{self.unanswerable}",
            str(self.quoted),
            per_answer,
            f"{statistics.median(self.seconds):.1f}" if self.seconds else "-",
            f"{self.tokens / seconds:.1f}" if self.tokens and seconds else "-",
        ]


@dataclass(frozen=True)
class Answerer:
    name: str
    options: dict[str, Any]


def half(q: Question) -> str:
    """``A`` or ``B``: SQuAD's questions split in two by a hash of their text, so that rules tuned
    on one half are measured on the other too (``squad-A`` is the half they were tuned on)."""
    return "AB"[hashlib.sha1(q.text.encode("utf-8")).digest()[0] % 2]


def replayed(fake: FakeOpenAI, path: Path) -> list[Answerer]:
    """One answerer per answerer recorded in ``path``, whose replies ``fake`` serves again."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raw = {(r["answerer"], r["question"]): r["raw"] for r in records}
    current: list[str] = []

    def reply(request: dict[str, Any]) -> str:
        question = request["messages"][-1]["content"].rsplit("Question: ", 1)[-1].strip()
        return raw.get((current[0], question)) or prompts.SENTINEL

    fake.default_reply = reply
    names = list(dict.fromkeys(r["answerer"] for r in records if r["answerer"] != "extractive"))
    fake.chat_models.update(names)
    options = {"llm__llm": "openai", "openai__base_url": fake.base_url, "llm__context_window": CONTEXT_WINDOW}
    return [Answerer(name, {**options, "_current": (current, name)}) for name in names]


def answerers(spec: str) -> list[Answerer]:
    found = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item == "extractive":
            found.append(Answerer("extractive", {"llm__llm": "none"}))
        elif item == "local":
            for packaged in MODELS:
                if packaged.installed():
                    found.append(Answerer(packaged.name, {"llm__llm": "local", "_model": packaged}))
        elif item.startswith("local:"):
            path = Path(item[len("local:") :])
            found.append(Answerer(path.stem, {"llm__llm": "local", "llm__local_model": path}))
        elif "#" in item:
            url, model = item.split("#", 1)
            found.append(
                Answerer(f"{model} at {url}", {"llm__llm": "openai", "openai__base_url": url, "llm__chat_model": model})
            )
        else:
            sys.exit(f"answers: unknown answerer {item!r}")
    return found


@contextmanager
def engine_for(store: Path, index: str, answerer: Answerer, args: argparse.Namespace) -> Iterator[Engine]:
    options = {k: v for k, v in answerer.options.items() if not k.startswith("_")}
    if "_current" in answerer.options:  # a replay: the fake server answers as this answerer did
        current, name = answerer.options["_current"]
        current[:] = [name]
        options["llm__chat_model"] = name
    if "_model" in answerer.options:
        options["llm__local_model"] = answerer.options["_model"].path(store)
    with Engine(
        index=index,
        store=store,
        embedding__embedder="local",
        retrieval__k=args.top_k,
        llm__max_answer_tokens=args.max_tokens,
        llm__quote_fallback=args.quote_fallback == "on",
        openai__timeout=600.0,
        **options,
    ) as engine:
        yield engine


def question_sets(
    store: Path, limit: int, data_limit: int, article: str = "Normans"
) -> dict[str, tuple[list[Path], list[Question]]]:
    answerable = [q for q in QUESTIONS if q.answerable][:data_limit]
    unanswerable = [q for q in QUESTIONS if not q.answerable][: max(1, (data_limit + 2) // 3)]
    sets: dict[str, tuple[list[Path], list[Question]]] = {"data": ([DATA], answerable + unanswerable)}
    if limit:
        paragraphs, questions = squad_subset(limit, title=article)
        folder = store / f"squad-{article.lower()}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(paragraphs):
            (folder / f"p{i:03}.txt").write_text(text, encoding="utf-8")
        sets["squad"] = ([folder], questions)
    sets["manuals"] = ([MANUALS], MANUAL_QUESTIONS)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answerers", default="extractive,local")
    parser.add_argument("--limit", type=int, default=10, help="SQuAD questions of each kind (0: skip SQuAD)")
    parser.add_argument("--article", default="Normans", help="SQuAD part A article to ask about")
    parser.add_argument("--sets", default="data,squad")
    parser.add_argument(
        "--data-limit", type=int, default=15, help="data/ answerable questions (and a third as many unanswerable)"
    )
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--store", type=Path, help="store folder to reuse (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="write every answer here, as JSON lines")
    parser.add_argument("--replay", type=Path, help="answer with the raw replies an --out file recorded")
    parser.add_argument(
        "--quote-fallback",
        choices=("on", "off"),
        default="on",
        help="quote the sources when a model's answer fails the check (RAG_QUOTE_FALLBACK; on by default)",
    )
    parser.add_argument(
        "--quote-bar", type=float, help="the quotes' sentence-score bar (default: relevance.MIN_FALLBACK_SCORE)"
    )
    # ../shared next to the checkout, or next to the folder of worktrees.
    shared = next(
        (
            p
            for p in (llm_prompts.SQUAD, DATA.parents[2] / llm_prompts.SQUAD.relative_to(DATA.parents[1]))
            if p.is_file()
        ),
        llm_prompts.SQUAD,
    )
    parser.add_argument("--squad", type=Path, default=shared, help="SQuAD v2 dev JSON (part A)")
    args = parser.parse_args()
    llm_prompts.SQUAD = args.squad
    if args.quote_bar is not None:  # every embedder's bar, for this run
        relevance.MIN_FALLBACK_SCORE, relevance.DEFAULT_MIN_FALLBACK_SCORE = {}, args.quote_bar
    out = args.out.open("w", encoding="utf-8") if args.out else None
    with ExitStack() as stack:
        if args.replay:
            chosen = replayed(stack.enter_context(openai_server(api_key=None)), args.replay)
        else:
            chosen = answerers(args.answerers)
        store = args.store or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        os.environ["RAG_HOME"] = str(store)
        sets = {
            k: v
            for k, v in question_sets(store, args.limit, args.data_limit, args.article).items()
            if k in args.sets.split(",")
        }
        for name, (folders, _) in sets.items():
            with Engine(index=name, store=store, embedding__embedder="local") as engine:
                engine.ingest(folders, embedder="local")
        print(f"load average at the start: {os.getloadavg()[0]:.1f}")
        print(
            "| set | answerer | gold in text | citation precision | cited | declined | quoted instead "
            "| unsupported/answer | p50 s | tokens/s |"
        )
        print("| --- " * 10 + "|")
        replies = stack.enter_context(recorded_replies())
        for answerer in chosen:
            for name, (_, questions) in sets.items():
                row = Row()
                halves = {h: Row() for h in "AB"} if name == "squad" else {}
                with engine_for(store, name, answerer, args) as engine:
                    for q in questions:
                        before = len(replies)
                        started = time.perf_counter()
                        answer = engine.ask(q.text)
                        answer.seconds = answer.seconds or time.perf_counter() - started
                        row.add(q, answer)
                        if halves:
                            halves[half(q)].add(q, answer)
                        if out is not None:
                            raw = "".join(replies[-1]) if len(replies) > before else None
                            record = {"set": name, "answerer": answerer.name, "gold": list(q.gold), "raw": raw}
                            out.write(json.dumps({**answer.to_dict(include_context=True), **record}) + "\n")
                            out.flush()
                print(f"| {name} | {answerer.name} | " + " | ".join(row.cells()) + " |", flush=True)
                for h, part in halves.items():
                    print(f"| {name}-{h} | {answerer.name} | " + " | ".join(part.cells()) + " |", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
