"""``/v1`` of a real ``rag serve``, driven by the real ``openai`` SDK, streamed and not.

Offline (extractive answers) against the shared offline server, and with an LLM (the fake
OpenAI server behind rag) to check history, follow-up rewriting and usage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from rag import prompts
from tests.openai_server import FakeOpenAI, openai_server
from tests.serve_process import OfflineServer, RunningServer, rag_cli, rag_server, serve_env, write_docs

pytestmark = pytest.mark.slow


def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key or "unused", max_retries=0)


def test_models_list_each_index(offline_server: OfflineServer) -> None:
    client = sdk(offline_server.server)
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["rag", "rag/default"]


def test_a_completion_cites_inline_with_a_sources_footer(offline_server: OfflineServer) -> None:
    client = sdk(offline_server.server)
    reply = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "Which volcano in Sicily is very active?"}]
    )
    text = reply.choices[0].message.content or ""
    body, _, sources = text.partition("\n\nSources:\n")
    assert "Etna" in body and "[1]" in body
    assert sources.startswith("[1] ") and "volcanoes.txt" in sources
    extra = reply.model_extra or {}
    assert extra["citations"][0]["source"].endswith("volcanoes.txt") and extra["refused"] is False
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.completion_tokens > 0


def test_a_streamed_completion_ends_with_done_and_carries_the_citations(offline_server: OfflineServer) -> None:
    client = sdk(offline_server.server)
    chunks = list(
        client.chat.completions.create(
            model="rag/default",
            messages=[{"role": "user", "content": "When did the first public steam railway open?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1825" in text and "\n\nSources:\n[1] " in text
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert (final.model_extra or {})["citations"][0]["n"] == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_the_stream_ends_with_the_done_line(offline_server: OfflineServer) -> None:
    import httpx

    server = offline_server.server
    request = {"model": "rag", "stream": True, "messages": [{"role": "user", "content": "Where do bees live?"}]}
    with httpx.Client(base_url=server.url) as client, client.stream("POST", "/v1/chat/completions", json=request) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert all("choices" in json.loads(line[6:]) for line in lines[:-1])


def test_an_unknown_model_is_an_openai_style_404(offline_server: OfflineServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk(offline_server.server).chat.completions.create(
            model="rag/nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert "rag/nope" in str(info.value)


def test_an_off_corpus_question_is_declined_without_sources(offline_server: OfflineServer) -> None:
    reply = sdk(offline_server.server).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "What is the capital city of Mongolia?"}]
    )
    assert "Sources:" not in (reply.choices[0].message.content or "")
    assert (reply.model_extra or {})["refused"] is True
    assert (reply.model_extra or {})["refusal"] in ("not_relevant", "not_found")


# --- with an LLM behind rag ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, FakeOpenAI]]:
    base = tmp_path_factory.mktemp("serve-llm")
    with openai_server() as fake:
        env = serve_env(
            base / "home", OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=fake.api_key or "", RAG_EMBEDDER="local"
        )
        assert rag_cli(env, "ingest", str(write_docs(base / "docs"))).returncode == 0
        with rag_server(env) as server:
            yield server, fake


def test_earlier_messages_are_history_and_follow_ups_are_rewritten(llm: tuple[RunningServer, FakeOpenAI]) -> None:
    server, fake = llm
    fake.reply("Which year did the first public steam railway open?", "It opened in 1825 [1].")
    messages: list[Any] = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Where did the first public steam railway run?"},
        {"role": "assistant", "content": "Between Stockton and Darlington [1].\n\nSources:\n[1] docs/sub/trains.txt"},
        {"role": "user", "content": "and when did it open?"},
    ]
    before = len(fake.requests)
    reply = sdk(server).chat.completions.create(model="rag", messages=messages)
    assert (reply.choices[0].message.content or "").startswith("It opened in 1825 [1].\n\nSources:\n[1] ")
    rewrite, answer = [r.body for r in fake.requests[before:] if r.path.endswith("/chat/completions")]
    conversation = json.dumps(rewrite["messages"])
    assert "Stockton and Darlington" in conversation and "and when did it open?" in conversation
    assert "Sources:" not in conversation, "our own footer is not history"
    sent = answer["messages"]
    assert sent[-1]["content"].endswith("Question: and when did it open?") and "1825" in sent[-1]["content"]
    assert {"role": "assistant", "content": "Between Stockton and Darlington [1]."} in sent
    # Usage is what the two model calls reported, summed.
    calls = [r.usage for r in fake.requests[before:] if r.usage]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == sum(u["prompt_tokens"] for u in calls)
    assert reply.usage.completion_tokens == sum(u["completion_tokens"] for u in calls)


def test_a_streamed_llm_answer_arrives_as_the_model_writes_it(llm: tuple[RunningServer, FakeOpenAI]) -> None:
    server, fake = llm
    fake.reply("Mount Etna is very active [1].")
    stream = sdk(server).chat.completions.create(
        model="rag", stream=True, messages=[{"role": "user", "content": "Which volcano in Sicily is active?"}]
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3
    assert "".join(deltas).startswith("Mount Etna is very active [1].\n\nSources:\n[1] ")


def test_concurrent_requests_each_report_their_own_usage(llm: tuple[RunningServer, FakeOpenAI]) -> None:
    server, fake = llm

    def reply(request: dict[str, Any]) -> str:
        text = json.dumps(request["messages"])
        n = int(re.findall(r"case-(\d+)", text)[-1])
        if "Rewrite the last question" in text:
            return f"Which volcano in Sicily is active, case-{n}?"
        return "Mount Etna [1]." + " Indeed." * n  # answers of different lengths

    fake.default_reply = reply
    client = sdk(server)

    def ask(n: int) -> Any:
        messages: list[Any] = [
            {"role": "user", "content": f"Tell me about Sicily, case-{n}."},
            {"role": "assistant", "content": "Sicily has volcanoes [1]."},
            {"role": "user", "content": f"Which one is active, case-{n}?"},
        ]
        return client.chat.completions.create(model="rag", messages=messages)

    before = len(fake.requests)
    try:
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(ask, range(6)))
    finally:
        fake.default_reply = "This is a fake answer."
    calls = [r for r in fake.requests[before:] if r.path.endswith("/chat/completions")]
    for n, got in enumerate(replies):
        mine = [r.usage for r in calls if r.usage and f"case-{n}" in json.dumps(r.body)]
        assert len(mine) == 2, "a rewrite and an answer"
        assert got.usage is not None
        assert got.usage.prompt_tokens == sum(u["prompt_tokens"] for u in mine)
        assert got.usage.completion_tokens == sum(u["completion_tokens"] for u in mine)


def test_the_support_check_rides_with_the_answer(llm: tuple[RunningServer, FakeOpenAI]) -> None:
    server, fake = llm
    reply_text = "Mount Etna is very active [1]. It last erupted in 1492 [1]."
    fake.reply(reply_text, reply_text)
    messages: list[Any] = [{"role": "user", "content": "Which volcano in Sicily is active?"}]
    reply = sdk(server).chat.completions.create(model="rag", messages=messages)
    content = reply.choices[0].message.content or ""
    support = (reply.model_extra or {})["support"]
    assert [(content[s["start"] : s["end"]], s["supported"]) for s in support] == [
        ("Mount Etna is very active [1].", True),
        ("It last erupted in 1492 [1].", False),  # no source says 1492
    ]
    assert _streamed_extra(server, messages)["support"] == support


@pytest.mark.parametrize(
    ("question", "quoted"),
    [
        ("Which volcano in Sicily is active?", True),  # the documents answer it: quotes stand in
        ("Which volcano did Captain Ahab describe in 1742?", False),  # nothing to quote: declined
    ],
)
def test_a_model_answer_no_source_backs_gives_way_to_quotes_or_is_declined_and_says_so(
    llm: tuple[RunningServer, FakeOpenAI], question: str, quoted: bool
) -> None:
    server, fake = llm
    reply_text = "Captain Ahab first described Mount Etna in 1742 [1]."
    fake.reply(reply_text, reply_text)
    messages: list[Any] = [{"role": "user", "content": question}]
    reply = sdk(server).chat.completions.create(model="rag", messages=messages)
    extra = reply.model_extra or {}
    content = reply.choices[0].message.content or ""
    assert "Ahab" not in content
    streamed = _streamed_extra(server, messages)
    if quoted:
        assert extra["refused"] is False and extra["refusal"] is None and extra["set_aside"] == "unsupported"
        assert "Etna" in content and extra["citations"]
        assert streamed["set_aside"] == "unsupported" and streamed["citations"] == extra["citations"]
    else:
        assert extra["refused"] is True and extra["refusal"] == "unsupported" and extra["set_aside"] is None
        assert streamed["refusal"] == "unsupported" and streamed["set_aside"] is None


def _streamed_extra(server: RunningServer, messages: list[Any]) -> dict[str, Any]:
    """rag's fields on the last chunk of a streamed answer to ``messages``."""
    chunks = list(sdk(server).chat.completions.create(model="rag", messages=messages, stream=True))
    last = next(c for c in reversed(chunks) if c.choices and c.choices[0].finish_reason == "stop")
    return last.model_extra or {}


def test_quotes_for_a_copied_source_go_below_the_streamed_words_marked(llm: tuple[RunningServer, FakeOpenAI]) -> None:
    server, fake = llm
    copy = "Its eruptions are frequent and mostly effusive."  # word for word, from the volcano file
    messages: list[Any] = [{"role": "user", "content": "What do bees collect while they pollinate flowering plants?"}]
    fake.reply(copy)
    chunks = list(sdk(server).chat.completions.create(model="rag", messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = (chunks[-1].model_extra or {}) if chunks[-1].choices else (chunks[-2].model_extra or {})
    assert streamed.startswith(copy), streamed
    assert last["set_aside"] == "copied", last
    quotes = streamed.index(prompts.SET_ASIDE)
    assert copy in streamed[:quotes] and "Bees pollinate flowering plants" in streamed[quotes:]
