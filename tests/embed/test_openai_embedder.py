"""OpenAIEmbedder through the real SDK against the fake fake_openai, driven by embed_many."""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from rag import errors, tokens
from rag.embed.base import embed_all, embed_many
from rag.embed.openai import OpenAIEmbedder
from rag.usage import Usage, cost_usd
from tests.conftest import OPENAI_TEST_KEY
from tests.openai_server import (
    MAX_INPUT_TOKENS,
    MAX_INPUTS,
    MAX_REQUEST_TOKENS,
    FakeOpenAI,
    openai_server,
    settings_for,
)

KEY = OPENAI_TEST_KEY
MODEL = "text-embedding-3-small"


def make(fake_openai: FakeOpenAI, model: str | None = None, **overrides: Any) -> OpenAIEmbedder:
    kwargs = {k: overrides.pop(k) for k in ("batch_size", "concurrency") if k in overrides}
    return OpenAIEmbedder(settings_for(fake_openai, **overrides), model=model, **kwargs)


def words(n: int, rng: random.Random) -> str:
    vocabulary = [
        "retrieval",
        "augmented",
        "vector",
        "index",
        "chunk",
        "token",
        "model",
        "answer",
        "citation",
        "page",
        "Größe",
        "東京",
        "2024",
        "ε",
        "query",
        "score",
        "the",
        "of",
        "a",
    ]
    return " ".join(rng.choices(vocabulary, k=n))


def expected(fake_openai: FakeOpenAI, texts: list[str]) -> np.ndarray:
    return np.vstack([fake_openai.embedding(t) for t in texts])


def successful(fake_openai: FakeOpenAI) -> list[Any]:
    return [r for r in fake_openai.requests_to("/embeddings") if r.status == 200]


def test_attributes(fake_openai: FakeOpenAI) -> None:
    emb = make(fake_openai, embedding__concurrency=6)
    assert emb.name == "openai:text-embedding-3-small"
    assert emb.dimension == 1536
    assert emb.max_input_tokens == 8191
    assert emb.batch_size == 2048 and emb.max_batch_tokens <= MAX_REQUEST_TOKENS
    assert emb.concurrency == 6
    assert make(fake_openai, "text-embedding-3-large").dimension == 3072
    assert fake_openai.requests == []  # known models need no probe
    fake_openai.embedding_models["mxbai-embed-large"] = 1024
    other = make(fake_openai, "mxbai-embed-large")
    assert other.max_input_tokens < 512 and other.default_chunk_tokens <= other.max_input_tokens


def test_many_texts_never_break_a_limit(fake_openai: FakeOpenAI) -> None:
    """Thousands of short texts and some near the per-input limit, packed to the API's own limits."""
    rng = random.Random(7)
    short = [words(rng.randint(1, 30), rng) for _ in range(3000)]
    long = [tokens.truncate(words(9000, rng), MODEL, 8191 - i) for i in range(45)]
    texts = short + long
    emb = make(fake_openai, embedding__concurrency=4, embedding__tokens_per_minute=0)
    emb.max_batch_tokens = MAX_REQUEST_TOKENS  # exact counts make even the API's own limit safe
    delivered: list[int] = []
    vectors = embed_many(emb, texts, lambda idx, _vec: delivered.extend(idx))
    assert sorted(delivered) == list(range(len(texts)))
    requests = fake_openai.requests_to("/embeddings")
    assert all(r.status == 200 for r in requests), [r.status for r in requests]
    assert len(requests) >= 3
    for r in requests:
        assert len(r.body["input"]) <= MAX_INPUTS
        assert max(r.input_tokens) <= MAX_INPUT_TOKENS
        assert sum(r.input_tokens) <= MAX_REQUEST_TOKENS
    assert max(sum(r.input_tokens) for r in requests) > 0.9 * MAX_REQUEST_TOKENS  # really packed
    assert max(len(r.body["input"]) for r in requests) == MAX_INPUTS
    np.testing.assert_allclose(vectors, expected(fake_openai, texts), atol=1e-6)
    # Our counts are the fake_openai's counts, text by text.
    counted = dict(zip(texts, emb.count_tokens(texts), strict=True))
    for r in requests:
        assert [counted[t] for t in r.body["input"]] == r.input_tokens


def test_default_batches_stay_well_inside_the_limits(fake_openai: FakeOpenAI) -> None:
    rng = random.Random(3)
    texts = [words(300, rng) for _ in range(800)]
    emb = make(fake_openai)
    embed_many(emb, texts)
    for r in fake_openai.requests_to("/embeddings"):
        assert sum(r.input_tokens) <= emb.max_batch_tokens


def test_batches_run_concurrently(fake_openai: FakeOpenAI) -> None:
    held = fake_openai.gate_requests("/embeddings")
    texts = [f"text number {i}" for i in range(80)]
    emb = make(fake_openai, batch_size=10, concurrency=4)
    result: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: result.append(embed_many(emb, texts)))
    worker.start()
    assert held.wait_for(4)  # four requests in flight at once, none answered yet
    held.open()
    worker.join()
    assert len(fake_openai.requests) == 8
    assert fake_openai.max_in_flight == 4
    np.testing.assert_allclose(result[0], expected(fake_openai, texts), atol=1e-6)


def test_429_and_500_are_retried_and_usage_counts_only_successes(fake_openai: FakeOpenAI) -> None:
    fake_openai.rate_limit_next(2, retry_after_ms=5)
    fake_openai.error_next(1, 500, retry_after_ms=5)
    fake_openai.rate_limit_next(1, retry_after=0.01)
    texts = [f"passage {i} about vectors" for i in range(60)]
    emb = make(fake_openai, batch_size=10, concurrency=3, openai__max_retries=5)
    vectors, usage = embed_all(emb, texts)
    np.testing.assert_allclose(vectors, expected(fake_openai, texts), atol=1e-6)
    statuses = [r.status for r in fake_openai.requests]
    assert statuses.count(429) == 3 and statuses.count(500) == 1 and statuses.count(200) == 6
    ok = successful(fake_openai)
    assert usage.requests == len(ok) == 6
    assert usage.prompt_tokens == sum(r.usage["prompt_tokens"] for r in ok)
    assert usage.prompt_tokens == sum(emb.count_tokens(texts))


def test_dropped_connection_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.drop_next(1)
    emb = make(fake_openai)
    np.testing.assert_allclose(emb.embed_batch(["hello world"]), expected(fake_openai, ["hello world"]), atol=1e-6)
    assert [r.fault for r in fake_openai.requests] == ["drop", None]


def test_failure_keeps_the_batches_already_delivered(fake_openai: FakeOpenAI) -> None:
    """A 429 that outlasts the retries ends the run, but what was paid for was handed over."""
    texts = [f"chunk {i}" for i in range(50)]
    emb = make(fake_openai, batch_size=10, concurrency=1, openai__max_retries=2)
    delivered: list[list[int]] = []

    def on_batch(indices: list[int], vectors: np.ndarray) -> None:
        delivered.append(indices)
        if len(delivered) == 2:
            fake_openai.rate_limit_next(100, retry_after_ms=1)

    spent: list[Usage] = []
    with pytest.raises(errors.RateLimitError) as info:
        embed_all(emb, texts, on_batch, on_usage=spent.append)
    assert str(info.value).startswith("rate limited by the API after 2 retries")
    assert "\n" not in str(info.value)
    assert len(delivered) == 2 and sum(spent, Usage()).requests == 2


def test_base64_and_float_give_the_same_vectors(fake_openai: FakeOpenAI) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    emb = make(fake_openai)
    as_base64 = emb.embed_batch(texts)
    emb._encoding_format = "float"
    as_float = emb.embed_batch(texts)
    assert [r.body["encoding_format"] for r in fake_openai.requests] == ["base64", "float"]
    np.testing.assert_array_equal(as_base64, as_float)
    assert as_base64.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(as_base64, axis=1), 1.0, atol=1e-6)


def test_server_rejecting_base64_switches_to_float(fake_openai: FakeOpenAI) -> None:
    fake_openai.accept_base64 = False
    emb = make(fake_openai)
    first = emb.embed_batch(["one"])
    emb.embed_batch(["two"])
    assert [(r.status, r.body["encoding_format"]) for r in fake_openai.requests] == [
        (400, "base64"),
        (200, "float"),
        (200, "float"),
    ]
    np.testing.assert_allclose(first, expected(fake_openai, ["one"]), atol=1e-6)


def test_similar_texts_are_similar(fake_openai: FakeOpenAI) -> None:
    emb = make(fake_openai)
    a, b, c = emb.embed_batch(["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue grew"])
    assert float(a @ b) > float(a @ c)
    assert float(a @ emb.embed_query("the cat sat on the mat")) == pytest.approx(1.0, abs=1e-6)


def test_unknown_model_dimension_is_probed_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.embedding_models["nomic-embed-text"] = 768
    emb = make(fake_openai, "nomic-embed-text", embedding__concurrency=4)
    assert "dim=?" in repr(emb) and fake_openai.requests == []  # repr never calls the API
    vectors, usage = embed_all(emb, [f"t{i}" for i in range(30)])
    assert vectors.shape == (30, 768) and emb.dimension == 768
    assert [r.body["input"] for r in fake_openai.requests].count(["dimension probe"]) == 1
    assert usage.requests == len(fake_openai.requests) - 1  # the probe is the embedder's, not the run's


def test_unknown_model_is_model_not_found(fake_openai: FakeOpenAI) -> None:
    emb = make(fake_openai, "no-such-embedder")
    expected_message = r"model 'no-such-embedder' not found on 127\.0\.0\.1:\d+$"
    with pytest.raises(errors.ModelNotFoundError, match=expected_message):
        embed_many(emb, ["x"])


def test_wrong_dimension_is_a_provider_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.embedding_models[MODEL] = 512  # a "compatible" fake_openai serving something else under the name
    with pytest.raises(errors.ProviderError, match="returned 512-d vectors, expected 1536"):
        make(fake_openai).embed_batch(["x"])


def test_bad_key_and_key_never_leaks(fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-proj-NOTTHEkey0123456789abcdefLMN"
    emb = make(fake_openai, openai__api_key=wrong)
    with pytest.raises(errors.AuthenticationError) as info:
        embed_many(emb, ["hello"])
    good = make(fake_openai, openai__max_retries=1)
    fake_openai.rate_limit_next(5, retry_after_ms=1)
    with pytest.raises(errors.RateLimitError) as limited:
        good.embed_batch(["hello"])
    texts = [
        str(info.value),
        repr(info.value),
        str(limited.value),
        repr(emb),
        repr(good),
        repr(good.settings),
        str(good.settings.openai),
        caplog.text,
    ]
    for secret in (wrong, KEY, "NOTTHEkey01", "SECRETkey01"):
        assert not any(secret in text for text in texts), secret


def test_usage_without_server_usage_falls_back_to_our_count() -> None:
    with openai_server(api_key=KEY, include_usage=False) as fake_openai:
        texts = [f"some words number {i}" for i in range(25)]
        emb = make(fake_openai, batch_size=10)
        _, usage = embed_all(emb, texts)
        assert all(r.usage is None for r in fake_openai.requests)
        assert usage.prompt_tokens == sum(sum(r.input_tokens) for r in fake_openai.requests)
        assert usage.requests == 3 and usage.estimated


def test_cost(fake_openai: FakeOpenAI) -> None:
    emb = make(fake_openai)
    _, usage = emb.embed_batch_usage(["hello world"] * 1000)
    assert usage.prompt_tokens == 2000
    assert usage.cost_usd == pytest.approx(2000 * 0.02 / 1_000_000)
    fake_openai.embedding_models["nomic-embed-text"] = 768
    local = make(fake_openai, "nomic-embed-text")
    assert local.embed_batch_usage(["x"])[1].cost_usd is None


def test_empty_text_and_overlong_query(fake_openai: FakeOpenAI) -> None:
    emb = make(fake_openai)
    assert emb.embed_batch(["", "x"]).shape == (2, 1536)
    assert fake_openai.requests[-1].body["input"] == [" ", "x"]
    rng = random.Random(1)
    query = words(12_000, rng)
    assert emb.embed_query(query).shape == (1536,)
    assert fake_openai.requests[-1].input_tokens[0] <= emb.max_input_tokens


def test_rate_limiter_is_asked_for_each_batch(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = make(fake_openai, batch_size=5, concurrency=2)
    asked: list[int] = []

    def acquire(tokens: int = 0) -> float:
        asked.append(tokens)
        return 0.0

    monkeypatch.setattr(emb.limiter, "acquire", acquire)
    texts = [f"word{i} " * (i + 1) for i in range(20)]
    embed_many(emb, texts)
    assert len(asked) == 4
    assert sorted(asked) == sorted(sum(r.input_tokens) for r in fake_openai.requests)


def test_client_side_rpm_cap_spaces_requests(fake_openai: FakeOpenAI) -> None:
    emb = make(fake_openai, batch_size=1, concurrency=4, embedding__requests_per_minute=1200)  # 20/s, burst 1200
    emb.limiter.acquire()  # fine: bursts are allowed...
    for _ in range(1199):  # ...so drain the burst to see the steady rate
        emb.limiter.acquire()
    start = time.monotonic()
    embed_many(emb, [f"t{i}" for i in range(6)])
    assert time.monotonic() - start >= 0.25  # 6 requests at 20/s


def test_missing_openai_package(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(errors.MissingDependencyError, match="pip install"):
        make(fake_openai)


def test_usage_is_a_value_summed_with_plus_and_priced_by_family() -> None:
    from rag.settings import Settings

    prices = Settings().prices
    call = Usage.call("gpt-4o-mini-2024-07-18", prices, prompt_tokens=3, completion_tokens=2)
    total = sum([call] * 8000, Usage())
    assert (total.requests, total.prompt_tokens, total.completion_tokens, total.total_tokens) == (
        8000,
        24_000,
        16_000,
        40_000,
    )
    assert total.cost_usd == pytest.approx((24_000 * 0.15 + 16_000 * 0.60) / 1_000_000)
    assert Usage() + call == call and call + Usage() == call
    with pytest.raises(AttributeError):
        call.requests = 2  # type: ignore[misc]
    assert cost_usd("llama3:8b", 10, 0, prices) is None
    assert (call + Usage.call("llama3:8b", prices, prompt_tokens=1)).cost_usd is None
