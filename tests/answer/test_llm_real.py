"""rag against a real model: Gemma 3 270M behind llama.cpp's OpenAI-compatible server.

Everything else about the LLM path is tested against canned replies (tests/openai_server.py).
Here the replies are whatever a real (tiny, base) model writes, so the checks are an oracle:
the raw text the server sent is recorded at the SDK (``replies``) and rag's answer must be
what our rules make of that text: the JSON sentences (llama-cpp-python's server refuses
``json_schema`` and takes ``json_object`` with a schema) read as prose with ``[n]``, refused
exactly when the reply is the sentinel or not_found without a citation or has no supported
sentence, citations exactly the valid ``[n]`` in it plus the attributed ones, the streamed
pieces adding up to the answer.  ``--llm local`` is tested too: rag starting and sharing
its own llama.cpp server for the same model.

The model does not follow instructions (it is not instruction-tuned), but it copies from its
sources.  So that the sentinel path is exercised for real, one ingested note says that a
motto *is* the sentinel, and the model, asked for the motto, replies with it.

Opt-in: needs the ``llm`` extra (``pip install -e ".[llm]"``, which compiles llama.cpp);
without it the module is skipped with the reason.  CI sets ``RAG_TEST_LLM=required`` so
that a broken install fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rag import prompts
from rag.answer import support
from rag.answer.citations import CITATION, CitationFilter
from rag.answer.llm import MODES_FILE, copied_sentences
from rag.answer.structured import StructuredReply
from rag.engine import Engine
from rag.results import Answer, Refusal
from rag.settings import Settings
from tests import llama_server

pytestmark = pytest.mark.slow

_REASON = llama_server.missing()
if _REASON and os.environ.get("RAG_TEST_LLM") == "required":
    raise RuntimeError(f"RAG_TEST_LLM=required but {_REASON}")
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

DATA = Path(__file__).resolve().parents[2] / "data"
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
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[llama_server.LlamaServer]:
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
def engine(store: Path, llama: llama_server.LlamaServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # Configured the way the README tells a user to point rag at a compatible server.
    monkeypatch.setenv("OPENAI_BASE_URL", llama.base_url)
    monkeypatch.setenv("RAG_CHAT_MODEL", llama.model)
    monkeypatch.setenv("RAG_CONTEXT_WINDOW", str(llama.context_window))
    monkeypatch.setenv("RAG_MAX_ANSWER_TOKENS", str(MAX_TOKENS))
    monkeypatch.setenv("RAG_TOP_K", "3")
    monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("RAG_OPENAI_TIMEOUT", "300")
    # The base model writes `{"sentences": []}` when made to write JSON, so these tests take
    # the [n] marker path (as for a server that refuses structured output); the JSON path
    # is the next-to-last test's and --llm local's.
    modes = {f"{llama.base_url.rstrip('/')} {llama.model}": {"mode": "markers", "found": time.time()}}
    (store / MODES_FILE).write_text(json.dumps(modes), encoding="utf-8")
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


def check_answer(
    answer: Answer, raw: str, shown: list[str] | None, requests: int = 1, model: str = llama_server.MODEL_NAME
) -> None:
    """``answer`` is what rag's rules make of the model's reply ``raw``."""
    copied = answer.set_aside == "copied"
    quoted = answer.set_aside is not None
    if quoted:
        # The rules refused the reply (checked below as that refusal), or it copies a source
        # the quotes did not choose (checked below); quotes of the sources the model was given
        # stood in.
        assert answer.answerer == "extractive" and not answer.refused and answer.citations
        assert {(c.source, c.chunk_id) for c in answer.citations} <= {(h.source, h.chunk_id) for h in answer.context}
        refused = answer.set_aside == "unsupported"
        text = prompts.REFUSAL if refused else ""
        refusal: Refusal | None = "unsupported" if refused else None
        answer = replace(answer, answerer="llm", model=model, refused=refused, refusal=refusal, text=text, citations=[])
    assert answer.answerer == "llm" and answer.model == model
    # llama-cpp-python sends no usage chunk when streaming: rag then counts tokens itself.
    assert answer.usage.requests == requests and answer.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens > 0 or not raw
    reply = StructuredReply()
    text = reply.feed(raw) + reply.finish()  # JSON sentences as prose with [n]; prose as it is
    if is_sentinel_reply(text):
        assert answer.refused and answer.text == prompts.REFUSAL and not answer.citations and not quoted
        assert not shown, "a refusal must not stream any of the model's text"
        return
    n = len(answer.context)
    if (prompts.SENTINEL in text or reply.not_found) and not valid_citations(text, n):
        # Words, then the sentinel (or not_found), citing nothing: a refusal, after what was shown.
        assert answer.refused and answer.text == prompts.REFUSAL and not answer.citations and not quoted
        return
    shown_text = CitationFilter(n, prompts.SENTINEL)
    shown_text.feed(text)
    shown_text.finish()
    verdicts = support.check(shown_text.text, answer.context)
    cited = [v for v in verdicts if not v.attributed and v.citations]
    if not shown_text.text.strip():
        assert answer.refused and answer.text == prompts.REFUSAL and not answer.citations and not quoted
        return
    if copied:
        # The checks let the reply stand, but it copies a source word for word, and the
        # quotes chose other sources.
        as_written = replace(answer, refused=False, text=shown_text.text, support=verdicts)
        assert copied_sentences(as_written), "quotes stood in for a reply that copies no source"
        return
    if answer.refused:  # the support check found no sentence backed
        assert answer.text == prompts.REFUSAL and not answer.citations and not answer.support
        assert not any(v.supported for v in cited), "refused, though a cited sentence is backed"
        return
    assert answer.text == shown_text.text and prompts.SENTINEL not in answer.text
    assert {c.n for c in answer.citations if not c.attributed} == valid_citations(raw if not reply.is_json else text, n)
    for c in answer.citations:
        assert (c.source, c.chunk_id) == (answer.context[c.n - 1].source, answer.context[c.n - 1].chunk_id)
    assert valid_citations(answer.text, n) == {c.n for c in answer.citations if not c.attributed}
    assert not [k for k in _all_citations(answer.text) if not 1 <= k <= n]
    # The support check: the same sentences; those the model cited judged the same way (which
    # chunk backs an uncited one may differ: rag weighs in the embedder's cosine too).
    assert [(s.start, s.end) for s in answer.support] == [(v.start, v.end) for v in verdicts]
    assert [s for s in answer.support if not s.attributed and s.citations] == cited
    assert any(s.supported for s in answer.support)
    for s in answer.support:
        if s.attributed:
            assert s.supported and {c.n for c in answer.citations} >= set(s.citations)
    if shown is not None:
        assert "".join(shown) == answer.text


def _all_citations(text: str) -> list[int]:
    return [int(p) for m in CITATION.finditer(text) for p in m.group(2).split(",")]


# --- tests ------------------------------------------------------------------------------------


def test_server_speaks_the_openai_api(llama: llama_server.LlamaServer) -> None:
    import openai

    client = openai.OpenAI(base_url=llama.base_url, api_key="unused", max_retries=0)
    assert llama.model in [m.id for m in client.models.list()]


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
    assert any(not a.refused and len(a.text) > 1 for a, _ in answers), f"every answer was a refusal: {answers}"
    motto = next((a, raw) for a, raw in answers if a.question == MOTTO)
    # The model copies the sentinel, bare or in a sentence ("The motto ... is NOT_IN_DOCUMENTS.",
    # seen once in three runs): either way, citing nothing, it is a refusal.
    assert prompts.SENTINEL in motto[1] and motto[0].refused, f"the sentinel reply was not a refusal: {motto[1]!r}"


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


def test_the_server_refuses_json_schema_and_takes_json_object(
    engine: Engine, store: Path, replies: list[list[str]]
) -> None:
    (store / MODES_FILE).unlink()
    answer = engine.ask(ANSWERABLE[0])
    raw = "".join(replies[-1])
    assert raw.lstrip().startswith("{"), f"not asked for JSON: {raw!r}"
    check_answer(answer, raw, None)
    modes = json.loads((store / MODES_FILE).read_text(encoding="utf-8"))
    assert [m["mode"] for m in modes.values()] == ["json_object"]


def test_local_answerer_starts_and_shares_its_own_server(
    store: Path, monkeypatch: pytest.MonkeyPatch, replies: list[list[str]]
) -> None:
    """``--llm local``: rag serves the GGUF itself, asks for JSON, and a second engine (as a
    second rag process would) finds the same server through RAG_HOME."""
    gguf = llama_server.model_path()
    for name, value in {
        "RAG_LOCAL_MODEL": str(gguf),
        "RAG_LOCAL_THREADS": "1",
        "RAG_CONTEXT_WINDOW": str(llama_server.CONTEXT_WINDOW),
        "RAG_MAX_ANSWER_TOKENS": str(MAX_TOKENS),
        "RAG_TOP_K": "3",
        "RAG_OPENAI_TIMEOUT": "300",
    }.items():
        monkeypatch.setenv(name, value)
    states: list[dict[str, object]] = []
    try:
        for _ in range(2):
            with Engine(index="sample", store=store) as engine:
                stream = engine.ask_stream(ANSWERABLE[1], llm="local")
                shown = list(stream)
                answer = stream.answer
            assert answer is not None
            (state_file,) = (store / "llm").glob("*.json")
            states.append(json.loads(state_file.read_text(encoding="utf-8")))
            if answer.usage.requests:
                raw = "".join(replies[-1])
                assert raw.lstrip().startswith("{"), f"the local model was not asked for JSON: {raw!r}"
                check_answer(answer, raw, shown, model=gguf.stem)
        assert states[0] == states[1], "the second engine started another server"
        modes = json.loads((store / MODES_FILE).read_text(encoding="utf-8"))
        assert modes[f"local:{gguf.resolve()} {gguf.stem}"]["mode"] == "json_object"
    finally:
        for running in states[:1]:
            os.kill(int(str(running["pid"])), 15)
