"""rag against a real model: Gemma 3 270M behind llama.cpp's OpenAI-compatible server.

Everything else about the LLM path is tested against canned replies (tests/openai_server.py).
Here the replies are whatever a real (tiny, base) model writes, so the checks are an oracle:
the raw text the server sent is recorded at the SDK (``replies``) and rag's answer must be
what our rules make of that text: refused exactly when the reply is the sentinel, citations
exactly the valid ``[n]`` in it, the streamed pieces adding up to the answer.

The model does not follow instructions (it is not instruction-tuned), but it copies from its
sources.  So that the sentinel path is exercised for real, one ingested note says that a
motto *is* the sentinel, and the model, asked for the motto, replies with it.

Opt-in: needs the ``llm`` extra (``pip install -e ".[llm]"``, which compiles llama.cpp);
without it the module is skipped with the reason.  CI sets ``RAG_TEST_LLM=required`` so
that a broken install fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import prompts
from rag.answer.citations import CITATION
from rag.engine import Engine
from rag.results import Answer
from rag.settings import Settings
from tests import llama_server

pytestmark = pytest.mark.slow

_REASON = llama_server.missing()
if _REASON and os.environ.get("RAG_TEST_LLM") == "required":
    raise RuntimeError(f"RAG_TEST_LLM=required but {_REASON}")
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

DATA = Path(__file__).resolve().parent.parent / "data"
# What CitationFilter strips around a bare sentinel reply.
_WRAPPING = " \t\r\n`\"'*"
# Short answers keep the test quick; rag must cope with a reply cut off mid-sentence.
MAX_TOKENS = 48

ANSWERABLE = [
    "When did the 1973 oil crisis begin?",
    "Who is credited with coining the name packet switching?",
]
UNANSWERABLE = ["What was the price of a barrel of oil in 2008?"]
# A note the model copies its reply from: the answer to MOTTO is the sentinel itself.
NOTE = f"""# The Orion vault

The motto of the Orion vault is {prompts.SENTINEL}.

The Orion vault was opened in 1987 by a team of three engineers.
"""
MOTTO = "What is the motto of the Orion vault?"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[llama_server.LlamaServer]:
    model = llama_server.model_path(tmp_path_factory.mktemp("model"))
    with llama_server.llama_server(model) as running:
        yield running


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample documents, indexed once with the bundled local embedder."""
    home = tmp_path_factory.mktemp("store")
    # Module-scoped, so outside the per-test isolation: no environment, config file or .env.
    settings = Settings.load(environ={}, config_file=home / "no-config.toml", dotenv=None)
    settings = settings.with_options(store__home=home)
    note = home / "notes" / "orion-vault.md"
    note.parent.mkdir()
    note.write_text(NOTE, encoding="utf-8")
    with Engine(index="sample", settings=settings) as engine:
        report = engine.ingest([DATA, note.parent], embedder="local")
    assert not report.failed, report.failed
    return home


@pytest.fixture
def engine(store: Path, server: llama_server.LlamaServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # Configured the way the README tells a user to point rag at a compatible server.
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("RAG_CHAT_MODEL", server.model)
    monkeypatch.setenv("RAG_CONTEXT_WINDOW", str(server.context_window))
    monkeypatch.setenv("RAG_MAX_ANSWER_TOKENS", str(MAX_TOKENS))
    monkeypatch.setenv("RAG_TOP_K", "3")
    monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("RAG_OPENAI_TIMEOUT", "300")
    with Engine(index="sample", store=store) as engine:
        yield engine


@pytest.fixture
def replies() -> Iterator[list[list[str]]]:
    """The raw text of every chat completion, as the pieces the server sent."""
    with llama_server.recorded_replies() as record:
        yield record


# --- the oracle -------------------------------------------------------------------------------


def is_sentinel_reply(raw: str) -> bool:
    """Our rule, restated: the reply is the sentinel (possibly wrapped), or nothing at all."""
    head = raw.lstrip(_WRAPPING)
    return head.startswith(prompts.SENTINEL) or prompts.SENTINEL.startswith(head.rstrip(_WRAPPING))


def valid_citations(raw: str, n_sources: int) -> set[int]:
    numbers = {int(p) for m in CITATION.finditer(raw) for p in m.group(2).split(",")}
    return {n for n in numbers if 1 <= n <= n_sources}


def check_answer(answer: Answer, raw: str, shown: list[str] | None, requests: int = 1) -> None:
    """``answer`` is what rag's rules make of the model's reply ``raw``."""
    assert answer.answerer == "llm" and answer.model == llama_server.MODEL_NAME
    # llama-cpp-python sends no usage chunk when streaming: rag then counts tokens itself.
    assert answer.usage.requests == requests and answer.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens > 0 or not raw
    if is_sentinel_reply(raw):
        assert answer.refused and answer.text == prompts.REFUSAL and not answer.citations
        assert not shown, "a refusal must not stream any of the model's text"
        return
    if prompts.SENTINEL in raw and not valid_citations(raw, len(answer.context)):
        # Words, then the sentinel, citing nothing: a refusal, after what was already shown.
        assert answer.refused and answer.text == prompts.REFUSAL and not answer.citations
        return
    assert not answer.refused
    assert prompts.SENTINEL not in answer.text
    assert {c.n for c in answer.citations} == valid_citations(raw, len(answer.context))
    for c in answer.citations:
        assert (c.source, c.chunk_id) == (answer.context[c.n - 1].source, answer.context[c.n - 1].chunk_id)
    assert valid_citations(answer.text, len(answer.context)) == {c.n for c in answer.citations}
    assert not [n for n in _all_citations(answer.text) if not 1 <= n <= len(answer.context)]
    if shown is not None:
        assert "".join(shown) == answer.text


def _all_citations(text: str) -> list[int]:
    return [int(p) for m in CITATION.finditer(text) for p in m.group(2).split(",")]


# --- tests ------------------------------------------------------------------------------------


def test_server_speaks_the_openai_api(server: llama_server.LlamaServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    assert server.model in [m.id for m in client.models.list()]


def test_streamed_answers_are_what_the_model_said(engine: Engine, replies: list[list[str]]) -> None:
    answers: list[tuple[Answer, str]] = []
    for question in [*ANSWERABLE, *UNANSWERABLE, MOTTO]:
        stream = engine.ask_stream(question)
        shown = list(stream)
        answer = stream.answer
        assert answer is not None
        if not answer.usage.requests:
            continue  # declined by the relevance gate: the model was not asked
        pieces = replies[-1]
        raw = "".join(pieces)
        check_answer(answer, raw, shown)
        answers.append((answer, raw))

    asked = [a.question for a, _ in answers]
    assert set(ANSWERABLE) <= set(asked), "the relevance gate declined an answerable question"
    assert any(len(pieces) > 1 for pieces in replies), "no reply was streamed in more than one piece"
    assert any(not a.refused and len(a.text) > 1 for a, _ in answers), "every answer was a refusal"
    motto = next((a, raw) for a, raw in answers if a.question == MOTTO)
    assert is_sentinel_reply(motto[1]) and motto[0].refused, f"the sentinel reply was not a refusal: {motto[1]!r}"


def test_follow_up_is_rewritten_by_the_model(engine: Engine, replies: list[list[str]]) -> None:
    """A chat follow-up makes two calls, rewrite then answer; whatever the rewrite says is searched."""
    follow_up = "And when did it end?"
    with engine.chat(save=False) as chat:
        chat.ask(ANSWERABLE[0])
        before = len(replies)
        second = chat.ask(follow_up)
    assert len(replies) > before, "the follow-up was not rewritten by the model"
    searched = "".join(replies[before]).strip().strip('"').strip() or follow_up
    assert (second.rewritten_question or follow_up) == searched
    assert second.question == follow_up
    if len(replies) == before + 2:  # the answer's call; the gate may have declined first
        check_answer(second, "".join(replies[-1]), None, requests=2)
