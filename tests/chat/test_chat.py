"""Chat in Python: follow-up rewriting, the history budget, saved sessions, ``Conversation``.

In-process, on the ``hash`` test embedder; the LLM cases talk to the fake OpenAI server.
The CLI, the real local model and interactive keys are in test_chat_cli.py.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag import Engine, prompts, tokens
from rag.answer import budget, followups
from rag.answer.base import Turn
from rag.chat.conversation import Conversation
from rag.chat.sessions import ChatTurn, SessionStore, new_session_name, validate_session_name
from rag.errors import UsageError
from rag.results import Citation, Hit
from tests.openai_server import FakeOpenAI

# --- deterministic follow-up rewriting --------------------------------------------------------

BRIDGE = [Turn("Tell me about the Golden Gate Bridge", "It is a suspension bridge in San Francisco [1].")]


@pytest.mark.parametrize(
    "question",
    [
        "and when did it open?",
        "Who designed it?",
        "what about the tolls?",
        "And for 2023?",
        "why?",
        "How long are those?",
        "So how much did they cost?",
    ],
)
def test_follow_ups_are_recognised(question: str) -> None:
    assert followups.is_follow_up(question)


@pytest.mark.parametrize(
    "question",
    [
        "Which volcano in Sicily is one of the most active in Europe?",
        "When did the Stockton and Darlington railway open?",
        "How do honey bees pollinate flowering plants?",
    ],
)
def test_standalone_questions_are_left_alone(question: str) -> None:
    assert not followups.is_follow_up(question)
    assert followups.expand_query(question, BRIDGE) == question


def test_a_follow_up_carries_the_subject_and_keeps_the_users_words_first() -> None:
    query = followups.expand_query("and when did it open?", BRIDGE)
    assert query.startswith("and when did it open? ")
    assert {"Golden", "Gate", "Bridge"} <= set(query.split())
    assert "Francisco" not in query  # the question named its subject; the answer's names are detail


def test_when_the_question_asked_for_a_name_the_answers_name_is_carried() -> None:
    history = [Turn("Which volcano in Sicily is very active?", "Mount Etna in Sicily erupts often [1].")]
    query = followups.expand_query("when did it last erupt?", history)
    assert query.startswith("when did it last erupt? ") and "Mount Etna" in query


def test_the_latest_turn_weighs_most_and_the_last_standalone_question_ends_the_chain() -> None:
    history = [
        Turn("How do honey bees make honey?", "From nectar [1]."),
        Turn("Tell me about the Golden Gate Bridge", "A suspension bridge [1]."),
        Turn("How long is its main span?", "1,280 metres [1]."),
    ]
    query = followups.expand_query("and who built it?", history)
    words = query.split()
    assert words.index("span") < words.index("Golden")  # latest question first
    assert "honey" not in query and "bees" not in query  # before the subject was set


def test_a_follow_up_that_names_its_own_year_or_place_replaces_the_earlier_one() -> None:
    history = [Turn("What was the revenue of Acme in 2022?", "Acme made $3M in 2022 [1].")]
    assert followups.expand_query("and for 2023?", history) == "and for 2023? Acme revenue"
    assert followups.expand_query("what about Globex?", history) == "what about Globex? 2022 revenue"
    # A name beside a pronoun is not a new subject: the old one still carries.
    assert "Acme" in followups.expand_query("was it profitable on Mondays?", history)


def test_no_history_means_no_rewrite() -> None:
    assert followups.expand_query("and when did it open?", []) == "and when did it open?"


# --- the history budget -----------------------------------------------------------------------

MODEL = "gpt-4o-mini"


def _turns(n: int, answer_words: int = 40) -> list[Turn]:
    return [Turn(f"question number {i}", " ".join([f"word{i}"] * answer_words)) for i in range(n)]


def test_fit_history_keeps_the_newest_turns_that_fit() -> None:
    turns = _turns(6)
    per_turn = budget.turn_tokens(turns[0], MODEL)
    kept = budget.fit_history(turns, 3 * per_turn + 5, MODEL)
    assert kept == turns[-3:]
    assert budget.fit_history(turns, 10**6, MODEL) == turns
    assert budget.fit_history(turns, 0, MODEL) == []


def test_fit_history_cuts_the_latest_answer_rather_than_lose_it() -> None:
    (turn,) = _turns(1, answer_words=500)
    room = budget.turn_tokens(turn, MODEL) // 2
    (kept,) = budget.fit_history([turn], room, MODEL)
    assert kept.question == turn.question and kept.answer.endswith(budget.CUT)
    assert budget.turn_tokens(kept, MODEL) <= room


def test_history_budget_leaves_the_sources_at_least_half() -> None:
    # 10,000 window - 1,000 answer - 1,000 fixed = 8,000 of room.
    common = {"window": 10_000, "answer_reserve": 1_000, "fixed_tokens": 1_000}
    assert budget.history_budget(**common, sources_tokens=1_000) == 4_000  # sources get half anyway
    assert budget.history_budget(**common, sources_tokens=6_000) == 2_000
    assert budget.history_budget(**common, sources_tokens=9_000) == 0
    assert budget.history_budget(**common, sources_tokens=0, cap=500) == 500


# --- the session store ------------------------------------------------------------------------


def _chat_turn(question: str, answer: str = "An answer [1].") -> ChatTurn:
    hit = Hit(
        rank=1, score=0.5, chunk_id="c1", source="/docs/a.txt", page=2, heading="H", text="Chunk text.", relevance=0.4
    )
    citation = Citation(1, "/docs/a.txt", 2, "c1", 0.5, "Chunk text.")
    return ChatTurn(
        question,
        answer,
        search_query=question + " expanded",
        citations=[citation],
        context=[hit],
        answerer="extractive",
        model="extractive",
        created=1.0,
    )


def test_sessions_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with SessionStore(path) as store:
        store.append("trip", "notes", _chat_turn("first"))
        store.append("trip", "notes", _chat_turn("second"))
        store.append("other", "papers", _chat_turn("elsewhere"))
    with SessionStore(path) as store:  # a new process, in effect
        first, second = store.turns("trip")
        assert (first.question, second.question) == ("first", "second")
        assert first == _chat_turn("first")  # citations and context come back whole
        assert [s.name for s in store.sessions("notes")] == ["trip"]
        assert {(s.name, s.index, s.turns) for s in store.sessions()} == {("trip", "notes", 2), ("other", "papers", 1)}
        store.clear("trip")
        assert store.turns("trip") == [] and store.info("trip") is not None
        assert store.delete("trip") and not store.delete("trip")
        assert store.info("trip") is None and store.turns("nope") == []
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_session_names_are_checked_and_generated_ones_are_valid() -> None:
    assert validate_session_name(new_session_name())
    assert new_session_name() != new_session_name()
    for bad in ("", "../x", "a b", "-x", "x" * 64):
        with pytest.raises(UsageError):
            validate_session_name(bad)


def _writer(path: str, session: str, n: int) -> None:
    with SessionStore(Path(path)) as store:
        for i in range(n):
            store.append(session, "notes", _chat_turn(f"{session} {i}"))


def test_concurrent_writers_do_not_mix_or_lose_turns(tmp_path: Path) -> None:
    path = str(tmp_path / "sessions.db")
    ctx = multiprocessing.get_context("spawn")
    # Two processes on their own sessions, and two on the same one.
    jobs = [("alpha", 40), ("beta", 40), ("shared", 40), ("shared", 40)]
    procs = [ctx.Process(target=_writer, args=(path, name, n)) for name, n in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with SessionStore(Path(path)) as store:
        assert [t.question for t in store.turns("alpha")] == [f"alpha {i}" for i in range(40)]
        assert [t.question for t in store.turns("beta")] == [f"beta {i}" for i in range(40)]
        shared = [t.question for t in store.turns("shared")]
        assert sorted(shared) == sorted([f"shared {i}" for i in range(40)] * 2)
        # Each writer's own turns stay in the order it wrote them.
        firsts = [q for i, q in enumerate(shared) if q not in shared[:i]]
        assert firsts == [f"shared {i}" for i in range(40)]


# --- Conversation, offline ----------------------------------------------------------------------


@pytest.fixture
def engine(docs: Path) -> Iterator[Engine]:
    with Engine() as engine:
        engine.ingest(docs, embedder="hash")
        yield engine


def test_conversation_asks_saves_and_resumes(engine: Engine) -> None:
    chat = engine.chat(session="volcano", llm="none")
    assert isinstance(chat, Conversation) and chat.name == "volcano" and not chat.resumed
    first = chat.ask("Which volcano in Sicily is one of the most active in Europe?")
    assert "Etna" in first.text and first.rewritten_question is None
    follow = chat.ask("and are its eruptions frequent?")
    assert follow.question == "and are its eruptions frequent?"
    assert follow.rewritten_question is not None and "Sicily" in follow.rewritten_question
    assert follow.context[0].source.endswith("volcanoes.txt")
    assert [t.question for t in chat.turns] == [first.question, follow.question]
    chat.close()

    with Engine() as again:
        resumed = again.chat(session="volcano", llm="none")
        assert resumed.resumed and [t.answer for t in resumed.turns] == [first.text, follow.text]
        last = resumed.last_answer
        assert last is not None and last.context[0].source.endswith("volcanoes.txt")
        assert "**You:** and are its eruptions frequent?" in resumed._repr_markdown_()
        resumed.reset()
        assert resumed.turns == [] and resumed.last_answer is None
        resumed.close()
    with SessionStore(engine.layout.sessions_path) as store:
        info = store.info("volcano")
        assert info is not None and info.turns == 0


def test_without_a_name_a_session_is_still_saved_under_a_generated_one(engine: Engine) -> None:
    chat = engine.chat(llm="none")
    chat.ask("What do bees collect?")
    with SessionStore(engine.layout.sessions_path) as store:
        assert [s.name for s in store.sessions()] == [chat.name]
    chat.close()


def test_save_false_keeps_nothing(engine: Engine) -> None:
    with engine.chat(llm="none", save=False) as chat:
        chat.ask("What do bees collect?")
        assert len(chat.turns) == 1
    assert not engine.layout.sessions_path.exists()


def test_a_session_belongs_to_its_index(engine: Engine, docs: Path) -> None:
    with engine.chat(session="s1", llm="none") as chat:
        chat.ask("What do bees collect?")
    with Engine(index="other") as other:
        other.ingest(docs, embedder="hash")
        with pytest.raises(UsageError, match="use --index default"):
            other.chat(session="s1", llm="none")


def test_options_are_checked(engine: Engine) -> None:
    with pytest.raises(TypeError, match="colour"):
        engine.chat(colour="red")
    with engine.chat(llm="none", save=False) as chat, pytest.raises(UsageError):
        chat.ask("   ")


def test_no_index_fails_at_once() -> None:
    from rag.errors import IndexNotFoundError

    with Engine() as engine, pytest.raises(IndexNotFoundError):
        engine.chat(llm="none")


# --- Conversation with an LLM ---------------------------------------------------------------------


@pytest.fixture
def fake_llm(openai_env: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("RAG_MIN_SCORE", "-1")
    return openai_env


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    return list(body["messages"])


def test_the_model_rewrites_the_follow_up_and_retrieval_uses_it(fake_llm: FakeOpenAI, engine: Engine) -> None:
    fake_llm.reply(
        "Mount Etna [1].",
        "When did the first public steam railway open?",  # the rewrite
        "It opened in 1825 [1].",
    )
    chat = engine.chat(save=False)
    chat.ask("Which volcano in Sicily is the most active?")
    rewritten: list[str] = []
    answer = chat.ask("and when did it open?", on_rewrite=rewritten.append)

    _, rewrite_call, second = (r.body for r in fake_llm.requests_to("/chat/completions"))
    assert rewrite_call["messages"][0]["content"] == prompts.REWRITE_SYSTEM
    sent = rewrite_call["messages"][1]["content"]
    assert "User: Which volcano in Sicily is the most active?" in sent and "Assistant: Mount Etna [1]." in sent
    assert sent.rstrip().endswith("Last question: and when did it open?")
    assert rewritten == ["When did the first public steam railway open?"]
    assert answer.rewritten_question == rewritten[0]
    # Retrieval used the rewrite: the railway, not the volcano the conversation was about.
    assert answer.context[0].source.endswith("trains.txt")
    # The model answers the question as asked, with the conversation before it.
    messages = _messages(second)
    assert messages[1] == {"role": "user", "content": "Which volcano in Sicily is the most active?"}
    assert messages[2] == {"role": "assistant", "content": "Mount Etna [1]."}
    assert messages[-1]["content"].rstrip().endswith("Question: and when did it open?")
    # The rewrite's call counts in the answer's usage and in the index's totals.
    assert answer.usage.requests == 2
    (row,) = engine.indexes()[0].usage
    assert (row["kind"], row["requests"]) == ("chat", 3)


def test_old_turns_are_dropped_to_fit_a_small_window(
    fake_llm: FakeOpenAI, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    window, reserve = 1500, 200
    monkeypatch.setenv("RAG_CONTEXT_WINDOW", str(window))
    monkeypatch.setenv("RAG_MAX_ANSWER_TOKENS", str(reserve))
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "60")
    # Uncited: rag attributes it to the bees chunk, whichever number that has here.
    long_answer = "Bees pollinate flowering plants while collecting nectar. " * 12  # ~150 tokens
    fake_llm.default_reply = lambda body: (
        "What do bees do?" if body["messages"][0]["content"] == prompts.REWRITE_SYSTEM else long_answer
    )
    # Letters, not numbers: an answer whose sources lack a number the question names is declined.
    with Engine() as small:
        chat = small.chat(save=False, rewrite_followups=False)
        for i in range(8):
            chat.ask(f"Question {'ABCDEFGHI'[i]}: what do bees do?")
        budget = chat.history_budget("Question I: what do bees do?")
        kept = chat.history_for("Question I: what do bees do?")
        chat.ask("Question I: what do bees do?")
    last = _messages(fake_llm.requests_to("/chat/completions")[-1].body)
    history = [m["content"] for m in last[1:-1] if m["role"] == "user"]
    assert 0 < len(history) < 8, "some turns kept, the oldest dropped"
    assert history == [f"Question {'ABCDEFGHI'[i]}: what do bees do?" for i in range(8 - len(history), 8)]
    assert history == [t.question for t in kept]  # the conversation's trimming, not a later one
    history_tokens = sum(tokens.count_tokens(m["content"], MODEL) + 3 for m in last[1:-1])
    assert history_tokens <= budget
    # The rules and the sources are still there, and the whole prompt fits.
    assert last[0]["content"] == prompts.SYSTEM_STRUCTURED and '<source id="1"' in last[-1]["content"]
    prompt = sum(tokens.count_tokens(m["content"], MODEL) + 3 for m in last) + 3
    assert prompt <= window - reserve


def test_streaming_deltas_reach_the_caller(fake_llm: FakeOpenAI, engine: Engine) -> None:
    fake_llm.reply("Honey bees live in colonies [1].")
    deltas: list[str] = []
    with engine.chat(save=False) as chat:
        answer = chat.ask("How do bees live?", on_delta=deltas.append)
    assert len(deltas) > 1 and "".join(deltas) == answer.text
