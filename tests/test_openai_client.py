"""Client construction, the SDK's retry policy, and error translation, over a real socket."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import openai
import pytest

from rag import errors
from rag.openai_client import (
    PLACEHOLDER_KEY,
    make_async_client,
    make_client,
    to_rag_error,
    translate_errors,
)
from rag.settings import OpenAISettings
from tests.conftest import OPENAI_TEST_KEY
from tests.openai_server import FakeOpenAI, openai_server, settings_for

KEY = OPENAI_TEST_KEY
MODEL = "text-embedding-3-small"


def settings(fake_openai: FakeOpenAI, **overrides: Any) -> OpenAISettings:
    return settings_for(fake_openai, **overrides).openai


def embed(client: openai.OpenAI, text: str = "hello world", model: str = MODEL) -> Any:
    return client.embeddings.create(model=model, input=[text], encoding_format="float")


def call(config: OpenAISettings, text: str = "hello world", model: str = MODEL) -> Any:
    client = make_client(config)
    try:
        with translate_errors(config, model=model):
            return embed(client, text, model)
    finally:
        client.close()


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message
    return message


# --- building clients ------------------------------------------------------------------------


def test_client_takes_key_url_timeout_and_retries(fake_openai: FakeOpenAI) -> None:
    config = settings(fake_openai, openai__timeout=7.5, openai__max_retries=3)
    client = make_client(config)
    assert str(client.base_url).rstrip("/") == fake_openai.base_url
    assert client.api_key == KEY
    assert client.max_retries == 3
    assert client.timeout.read == 7.5  # type: ignore[union-attr]
    assert client.timeout.connect == 7.5  # type: ignore[union-attr]
    assert make_client(config, timeout=120, max_retries=0).max_retries == 0
    assert make_client(config, timeout=120).timeout.connect == 10.0  # type: ignore[union-attr]
    assert len(embed(client).data[0].embedding) == 1536
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_base_url_alone_gets_a_placeholder_key() -> None:
    with openai_server(api_key=None) as fake_openai:  # like Ollama: any key will do
        config = OpenAISettings.model_validate({"base_url": fake_openai.base_url})
        assert call(config).data
        assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_no_key_and_no_url_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="OPENAI_API_KEY"):
        make_client(OpenAISettings.model_validate({}))
    with pytest.raises(errors.ConfigError, match="OPENAI_API_KEY"):
        make_client(OpenAISettings.model_validate({"api_key": ""}))


def test_base_url_without_scheme_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="must start with http"):
        make_client(OpenAISettings.model_validate({"base_url": "localhost:11434/v1"}))


def test_async_client(fake_openai: FakeOpenAI) -> None:
    async def run() -> int:
        client = make_async_client(settings(fake_openai))
        try:
            result = await client.embeddings.create(model=MODEL, input=["a", "b", "c"])
            return len(result.data)
        finally:
            await client.close()

    assert asyncio.run(run()) == 3


# --- the SDK's retry policy, checked against the fake_openai --------------------------------------


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the client asks for between attempts, recorded instead of slept.

    rag's policy is how long to wait and how often to retry; how precisely the OS sleeps
    is not rag's, and a test that measured it would depend on the machine's load.
    """
    import openai._base_client

    asked: list[float] = []
    monkeypatch.setattr(openai._base_client.time, "sleep", asked.append)
    return asked


def test_429_is_retried_honouring_retry_after_ms(fake_openai: FakeOpenAI, waits: list[float]) -> None:
    fake_openai.rate_limit_next(2, retry_after_ms=20)
    assert call(settings(fake_openai, openai__max_retries=2)).data
    assert [r.status for r in fake_openai.requests] == [429, 429, 200]
    assert [r.headers["x-stainless-retry-count"] for r in fake_openai.requests] == ["0", "1", "2"]
    assert waits == [pytest.approx(0.02), pytest.approx(0.02)]  # 20 ms, not the >= 0.375 s backoff


def test_429_retry_after_seconds_is_honoured(fake_openai: FakeOpenAI, waits: list[float]) -> None:
    fake_openai.rate_limit_next(1, retry_after=1)
    assert call(settings(fake_openai)).data
    assert [r.status for r in fake_openai.requests] == [429, 200]
    assert waits == [pytest.approx(1.0)]


def test_500_is_retried_with_backoff(fake_openai: FakeOpenAI, waits: list[float]) -> None:
    fake_openai.error_next(1, 500)  # no Retry-After: the SDK backs off 0.5 s less up to 25 % jitter
    assert call(settings(fake_openai)).data
    first, second = fake_openai.requests
    assert [first.status, second.status] == [500, 200]
    (wait,) = waits
    assert 0.375 <= wait <= 0.5


def test_dropped_connection_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.drop_next(1)
    assert call(settings(fake_openai)).data
    assert [r.fault for r in fake_openai.requests] == ["drop", None]
    assert fake_openai.requests[-1].status == 200


def test_retries_exhausted_is_one_rate_limit_line(fake_openai: FakeOpenAI) -> None:
    fake_openai.rate_limit_next(10, retry_after_ms=5)
    with pytest.raises(errors.RateLimitError) as info:
        call(settings(fake_openai, openai__max_retries=2))
    assert len(fake_openai.requests) == 3
    message = one_line(info.value)
    assert message.startswith("rate limited by the API after 2 retries")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_long_retry_after_is_not_waited_for(fake_openai: FakeOpenAI, waits: list[float]) -> None:
    fake_openai.rate_limit_next(1, retry_after=3600)
    with pytest.raises(errors.RateLimitError, match="asks to wait 3600 s"):
        call(settings(fake_openai))
    assert len(fake_openai.requests) == 1 and waits == []


def test_500_retries_exhausted(fake_openai: FakeOpenAI) -> None:
    fake_openai.error_next(5, 503, message="Service overloaded", retry_after_ms=5)
    with pytest.raises(errors.ProviderError) as info:
        call(settings(fake_openai, openai__max_retries=1))
    assert type(info.value) is errors.ProviderError
    host = fake_openai.base_url.split("//")[1].split("/")[0]
    assert one_line(info.value) == f"{host} answered HTTP 503 after 1 retry: Service overloaded"


def test_400_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.error_next(1, 400, message="'$.input' is invalid.")
    with pytest.raises(errors.ProviderError, match=r"HTTP 400: '\$.input' is invalid."):
        call(settings(fake_openai))
    assert len(fake_openai.requests) == 1


# --- error translation -----------------------------------------------------------------------


def test_bad_key(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(errors.AuthenticationError) as info:
        call(settings(fake_openai, openai__api_key="sk-wrong-key-123456789"))
    assert one_line(info.value).startswith("authentication failed at 127.0.0.1:")
    assert one_line(info.value).endswith(": check OPENAI_API_KEY")
    assert len(fake_openai.requests) == 1  # 401 is final


def test_unknown_model(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(errors.ModelNotFoundError) as info:
        call(settings(fake_openai), model="text-embedding-9")
    host = fake_openai.base_url.split("//")[1].split("/")[0]
    assert one_line(info.value) == f"model 'text-embedding-9' not found on {host}"


def test_wrong_base_path_hints_at_v1(fake_openai: FakeOpenAI) -> None:
    config = settings(fake_openai, openai__base_url=fake_openai.base_url.removesuffix("/v1"))
    with pytest.raises(errors.ProviderError, match="ends in /v1"):
        call(config)


def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = OpenAISettings.model_validate(
        {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": KEY, "max_retries": 0}
    )
    with pytest.raises(errors.ProviderConnectionError) as info:
        call(config)
    assert one_line(info.value) == f"cannot connect to http://127.0.0.1:{port}/v1 (connection refused)"


def test_context_length(fake_openai: FakeOpenAI) -> None:
    text = "word " * 9000
    with pytest.raises(errors.ContextLengthError, match="input too long for 'text-embedding-3-small'"):
        call(settings(fake_openai), text=text)
    fake_openai.context_length_next(1)
    with pytest.raises(errors.ContextLengthError):
        call(settings(fake_openai))


def test_insufficient_quota_is_not_a_rate_limit(fake_openai: FakeOpenAI) -> None:
    fake_openai.error_next(5, 429, code="insufficient_quota", message="You exceeded your current quota.")
    with pytest.raises(errors.ProviderError, match="quota is used up") as info:
        call(settings(fake_openai, openai__max_retries=0))
    assert not isinstance(info.value, errors.RateLimitError)


def test_translate_errors_as_decorator(fake_openai: FakeOpenAI) -> None:
    config = settings(fake_openai)
    client = make_client(config)

    @translate_errors(config, model="nope")
    def go() -> Any:
        return embed(client, model="nope")

    with pytest.raises(errors.ModelNotFoundError):
        go()


def test_other_exceptions_pass_through(fake_openai: FakeOpenAI) -> None:
    config = settings(fake_openai)
    with pytest.raises(KeyError), translate_errors(config):
        raise KeyError("not ours")
    assert to_rag_error(ValueError("x"), config) is None


def test_key_never_leaks(fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    """No message, repr or log line carries the key, whatever fails."""
    caplog.set_level(logging.DEBUG)
    config = settings(fake_openai, openai__max_retries=1)
    wrong = OpenAISettings.model_validate(
        {"base_url": fake_openai.base_url, "api_key": "sk-proj-WRONGkey0123456789abcdefXYZ", "max_retries": 0}
    )
    messages: list[str] = []
    fake_openai.rate_limit_next(2, retry_after_ms=1)
    fake_openai.error_next(1, 500, message=f"echoing {KEY} back", retry_after_ms=1)
    for cfg, model in [(config, MODEL), (config, MODEL), (config, "nope"), (wrong, MODEL)]:
        try:
            call(cfg, model=model)
        except errors.RagError as exc:
            messages += [str(exc), repr(exc)]
    assert len(messages) >= 6
    client = make_client(config)
    texts = [*messages, repr(client), repr(config), str(config), caplog.text]
    for secret in (KEY, "sk-proj-WRONGkey0123456789abcdefXYZ", "WRONGkey0123"):
        assert not any(secret in text for text in texts), secret


# --- chat: streaming and usage -----------------------------------------------------------------


def test_chat_streams_incrementally_with_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("The answer is forty-two, as everyone knows.")
    held = fake_openai.gate_stream(after_deltas=3)
    client = make_client(settings(fake_openai))
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the answer?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals: list[tuple[bool, str]] = []  # (was the fake_openai holding the rest?, text)
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            # The first piece may come before the server reaches its gate: wait for it there.
            holding = held.wait_for(1, timeout=30) if not arrivals else held.holding
            arrivals.append((holding, chunk.choices[0].delta.content))
            held.open()
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(text for _, text in arrivals) == "The answer is forty-two, as everyone knows."
    assert len(arrivals) > 5
    assert arrivals[0][0], "the pieces arrived only once the whole reply was sent"
    assert usage is not None and usage.completion_tokens == 10
    assert usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) == (
        fake_openai.requests[-1].usage
    )


def test_chat_without_usage_and_scripted_replies(fake_openai: FakeOpenAI) -> None:
    fake_openai.include_usage = False
    fake_openai.reply(lambda request: "you said: " + request["messages"][-1]["content"])
    client = make_client(settings(fake_openai))
    result = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "you said: hi"
    assert result.usage is None
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "This is a fake answer."


def test_stream_cut_short_is_a_connection_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.stream_drop_after = 3
    config = settings(fake_openai)
    client = make_client(config)
    received: list[str] = []
    with pytest.raises(errors.ProviderConnectionError) as info, translate_errors(config, model="gpt-4o-mini"):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["This", " is ", "a fa"]  # what arrived before the cut is still usable
    assert one_line(info.value).startswith(f"connection to {fake_openai.base_url} failed (peer closed")


def test_chat_context_length(fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_context_window = 50
    config = settings(fake_openai)
    client = make_client(config)
    messages: Any = [{"role": "user", "content": "word " * 100}]
    guard = translate_errors(config, model="gpt-4o-mini")
    with pytest.raises(errors.ContextLengthError, match="'gpt-4o-mini'"), guard:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)


def test_models_listing(fake_openai: FakeOpenAI) -> None:
    ids = {m.id for m in make_client(settings(fake_openai)).models.list()}
    assert {"text-embedding-3-small", "gpt-4o-mini"} <= ids
