"""Citations that survive any model: structured output, its fallbacks, and attribution.

Against the fake server (tests/openai_server.py), told which ``response_format`` types it
takes: OpenAI/vLLM's ``json_schema``, llama-cpp-python's ``json_object`` with a schema
(it answers ``json_schema`` with HTTP 500), or neither.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rag import prompts
from rag.answer.llm import MODES_FILE, LLMAnswerer
from rag.answer.structured import MODE_TTL, StructuredReply
from rag.results import Answer
from rag.settings import Settings
from tests.answer.test_answer_llm import HITS, chat_requests, hit, make_answerer
from tests.openai_server import FakeOpenAI

ETNA = {
    "sentences": [{"text": "Etna is one of the most active volcanoes in Europe.", "sources": [1]}],
    "not_found": False,
}


def ask(answerer: LLMAnswerer, question: str = "Is Etna active?", hits: Any = HITS) -> tuple[Answer, list[str]]:
    shown: list[str] = []
    return answerer.answer(question, hits, on_delta=shown.append), shown


def formats(server: FakeOpenAI) -> list[str | None]:
    return [(body.get("response_format") or {}).get("type") for body in chat_requests(server)]


def remembered(home: Path) -> dict[str, str]:
    return {k: v["mode"] for k, v in json.loads((home / MODES_FILE).read_text(encoding="utf-8")).items()}


def test_json_schema_answer_streams_as_prose_with_citations(openai_env: FakeOpenAI, isolated: Path) -> None:
    openai_env.response_formats = {"json_schema"}
    openai_env.reply(json.dumps(ETNA))
    answer, shown = ask(make_answerer())

    assert answer.text == "Etna is one of the most active volcanoes in Europe [1]."
    assert len(shown) > 3 and "".join(shown) == answer.text  # words as they came, never rewritten
    assert [(c.n, c.attributed) for c in answer.citations] == [(1, False)]
    assert [s.to_dict() for s in answer.support] == [
        {"start": 0, "end": len(answer.text), "supported": True, "attributed": False, "citations": [1]}
    ]
    (body,) = chat_requests(openai_env)
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["sentences", "not_found"]
    assert body["messages"][0]["content"] == prompts.SYSTEM_STRUCTURED
    assert list(remembered(isolated).values()) == ["json_schema"]


def test_llama_cpp_server_refuses_json_schema_and_gets_json_object(openai_env: FakeOpenAI, isolated: Path) -> None:
    openai_env.response_formats, openai_env.format_status = {"json_object"}, 500
    openai_env.reply(json.dumps(ETNA), json.dumps(ETNA), json.dumps(ETNA))
    settings = Settings.load().with_options(openai__max_retries=5)  # the refusal must not be retried
    answer, shown = ask(make_answerer(settings))

    assert not answer.refused and [c.n for c in answer.citations] == [1] and "".join(shown) == answer.text
    assert formats(openai_env) == ["json_schema", "json_object"]
    assert chat_requests(openai_env)[1]["response_format"]["schema"]["properties"]["sentences"]
    assert list(remembered(isolated).values()) == ["json_object"]
    # Remembered: in this process, and by the next one (a new answerer reads RAG_HOME).
    ask(make_answerer(settings))
    ask(make_answerer(settings))
    assert formats(openai_env) == ["json_schema", "json_object", "json_object", "json_object"]


def test_a_server_that_refuses_both_gets_the_marker_prompt(openai_env: FakeOpenAI, isolated: Path) -> None:
    openai_env.response_formats, openai_env.format_status = set(), 400
    openai_env.reply("Etna is one of the most active volcanoes in Europe [1].")
    answer, shown = ask(make_answerer())

    assert answer.text == "Etna is one of the most active volcanoes in Europe [1]." == "".join(shown)
    assert formats(openai_env) == ["json_schema", "json_object", None]
    assert chat_requests(openai_env)[-1]["messages"][0]["content"] == prompts.SYSTEM
    assert list(remembered(isolated).values()) == ["markers"]
    openai_env.reply("Etna is one of the most active volcanoes in Europe [1].")
    ask(make_answerer())
    assert formats(openai_env)[-1] is None and len(chat_requests(openai_env)) == 4


def test_a_remembered_mode_is_asked_again_once_it_is_old(openai_env: FakeOpenAI, isolated: Path) -> None:
    # The server refused structured output once (say, before an upgrade), a day ago.
    answerer = make_answerer()
    path = answerer.modes.path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"{answerer.base_url().rstrip('/')} {answerer.model}"
    found = time.time() - MODE_TTL - 60
    path.write_text(json.dumps({key: {"mode": "markers", "found": found}}), encoding="utf-8")
    openai_env.response_formats = {"json_schema"}
    openai_env.reply(json.dumps(ETNA))
    answer, _ = ask(make_answerer())
    assert formats(openai_env) == ["json_schema"] and answer.citations
    assert remembered(isolated) == {key: "json_schema"}
    # A recent one is trusted; one written by an older rag (a bare mode) counts as old.
    openai_env.reply("Etna is one of the most active volcanoes in Europe [1].")
    path.write_text(json.dumps({key: {"mode": "markers", "found": time.time()}}), encoding="utf-8")
    ask(make_answerer())
    path.write_text(json.dumps({key: "markers"}), encoding="utf-8")
    openai_env.reply(json.dumps(ETNA))
    ask(make_answerer())
    assert formats(openai_env) == ["json_schema", None, "json_schema"]


def test_a_passing_server_error_is_retried_not_taken_for_a_refusal(openai_env: FakeOpenAI, isolated: Path) -> None:
    openai_env.response_formats = {"json_schema"}
    openai_env.error_next(1, 503)
    openai_env.reply(json.dumps(ETNA))
    settings = Settings.load().with_options(openai__max_retries=1)
    answer, _ = ask(make_answerer(settings))
    assert not answer.refused and formats(openai_env) == ["json_schema", "json_schema"]
    assert list(remembered(isolated).values()) == ["json_schema"]


def test_not_found_is_a_refusal_that_shows_nothing(openai_env: FakeOpenAI) -> None:
    openai_env.response_formats = {"json_schema"}
    openai_env.reply(json.dumps({"sentences": [], "not_found": True}))
    answer, shown = ask(make_answerer(), "What is the capital of Peru?")
    assert answer.refused and answer.text == prompts.REFUSAL and not shown and not answer.support


def test_uncited_sentences_are_attributed_and_labelled(openai_env: FakeOpenAI) -> None:
    # The 0.5B Qwen's habit: right answer, no [n] (here once as JSON, once as prose).
    reply = {
        "sentences": [
            {"text": "Honey bees live in colonies with a single queen.", "sources": []},
            {"text": "Etna is in Sicily.", "sources": [1]},
        ],
        "not_found": False,
    }
    openai_env.response_formats = {"json_schema"}
    openai_env.reply(json.dumps(reply))
    answer, _ = ask(make_answerer(), "How do bees live, and where is Etna?")

    assert answer.text == "Honey bees live in colonies with a single queen. Etna is in Sicily [1]."
    assert [(c.n, c.attributed) for c in answer.citations] == [(1, False), (2, True)]
    first, second = answer.support
    assert (first.attributed, first.citations, first.supported) == (True, (2,), True)
    assert (second.attributed, second.citations, second.supported) == (False, (1,), True)
    data = answer.to_dict()
    assert [c["attributed"] for c in data["citations"]] == [False, True]

    openai_env.reply("Honey bees live in colonies with a single queen.")
    prose, _ = ask(make_answerer(), "How do bees live?")
    assert [(c.n, c.attributed) for c in prose.citations] == [(2, True)]


def test_a_sentence_nothing_backs_is_not_attributed(openai_env: FakeOpenAI) -> None:
    openai_env.reply("Etna is in Sicily [1]. Honey bees were brought to Sicily by Archimedes in 212 BC.")
    answer, _ = ask(make_answerer(), "Tell me about Etna and bees.")
    assert [(s.supported, s.attributed, s.citations) for s in answer.support] == [
        (True, False, (1,)),
        (False, False, ()),
    ]
    assert [c.n for c in answer.citations] == [1]


def test_the_local_embedder_breaks_ties_between_chunks(openai_env: FakeOpenAI) -> None:
    hits = [hit(1, "The queen lays eggs. Workers forage."), hit(2, "Workers forage. The queen lays eggs.")]
    calls: list[str] = []

    class Embedder:
        def embed_batch(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0], [0.0, 1.0]]

        def embed_query(self, text: str) -> list[float]:
            calls.append(text)
            return [0.1, 1.0]  # closest to chunk 2

    settings = Settings.load()
    answerer = LLMAnswerer(settings, min_relevance=0.0, embedder=lambda: Embedder())  # type: ignore[arg-type,return-value]
    openai_env.reply("The queen lays eggs.")
    answer, _ = ask(answerer, "Who lays eggs?", hits)
    assert calls == ["The queen lays eggs."] and [(c.n, c.attributed) for c in answer.citations] == [(2, True)]


def test_partial_json_is_read_as_it_streams() -> None:
    raw = json.dumps(
        {
            "sentences": [
                {"text": 'It says "no" \u2014 twice.\nReally!', "sources": [2, 2, 3]},
                {"text": "  ", "sources": [1]},
                {"text": "End", "sources": []},
            ],
            "not_found": False,
        }
    )
    outputs = set()
    for step in (1, 2, 5, len(raw)):
        reply = StructuredReply()
        outputs.add("".join(reply.feed(raw[i : i + step]) for i in range(0, len(raw), step)) + reply.finish())
        assert reply.is_json and reply.not_found is False and len(reply.sentences) == 3
    assert outputs == {'It says "no" \u2014 twice. Really [2, 3]! End'}
    cut = StructuredReply()
    assert cut.feed('```json\n{"sentences": [{"text": "Cut off mid') + cut.finish() == "Cut off mid"
    prose = StructuredReply()
    assert prose.feed("  Plain [1] text") + prose.finish() == "  Plain [1] text" and prose.is_json is False
