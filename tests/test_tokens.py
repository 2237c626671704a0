"""Offline token counting from the vendored BPE tables."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load

from rag import tokens
from rag.tokens import estimate_tokens


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Load encodings anew in this test, and forget whatever it loaded (or failed to)."""
    tokens._clear_cache()
    yield
    tokens._clear_cache()


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything asks tiktoken to fetch a table."""

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken tried to download a BPE table")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_vendored_tables_match_tiktoken(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our copy of each table, pattern and special tokens equals what tiktoken itself would build."""
    import tiktoken_ext.openai_public as public

    raw = gzip.decompress((tokens.DATA_DIR / f"{name}.tiktoken.gz").read_bytes())
    seen: dict[str, str | None] = {}

    def load_from_vendored(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["url"], seen["hash"] = url, expected_hash
        return tokens._parse_ranks(raw)

    monkeypatch.setattr(public, "load_tiktoken_bpe", load_from_vendored)
    reference = getattr(public, name)()
    assert hashlib.sha256(raw).hexdigest() == seen["hash"] == tokens._SPECS[name].sha256
    ours = tokens.get_encoding(name)
    assert ours is not None
    assert ours._pat_str == reference["pat_str"]
    assert ours._special_tokens == reference["special_tokens"]
    assert ours._mergeable_ranks == reference["mergeable_ranks"]
    assert ours.n_vocab == tiktoken.Encoding(**reference).n_vocab


def test_counts_offline_match_known_values(fresh_cache: None, no_download: None) -> None:
    # "hello world" ids are in tiktoken's own test suite.
    cl100k, o200k = tokens.encoding_for_model("text-embedding-3-small"), tokens.encoding_for_model("gpt-4o")
    assert cl100k is not None and o200k is not None
    assert cl100k.encode_ordinary("hello world") == [15339, 1917]
    assert o200k.encode_ordinary("hello world") == [24912, 2375]
    assert tokens.count_tokens("hello world", "text-embedding-3-small") == 2
    assert tokens.count_tokens("hello world", "gpt-4o-mini") == 2
    # From tiktoken's README (cl100k), and values computed with tiktoken.Encoding on these tables.
    assert tokens.count_tokens("tiktoken is great!", "gpt-4") == 6
    assert tokens.count_tokens("antidisestablishmentarianism", "gpt-3.5-turbo") == 6
    assert tokens.count_tokens("antidisestablishmentarianism", "gpt-4o") == 6
    assert tokens.count_tokens("Größenwahn über Ärzte 東京 🚀", "gpt-4") == 15
    assert tokens.count_tokens("Größenwahn über Ärzte 東京 🚀", "gpt-4.1") == 10
    # Special tokens are counted as the plain text they are in a document.
    assert tokens.count_tokens("<|endoftext|>", "gpt-4") == 7
    assert tokens.count_tokens("", "gpt-4") == 0


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("llama3.1:8b", "cl100k_base"),
        ("nomic-embed-text", "cl100k_base"),
    ],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    assert tokens.encoding_name_for_model(model) == encoding
    enc = tokens.encoding_for_model(model)
    assert enc is not None and enc.name == encoding


def test_batch_counts_equal_single_counts() -> None:
    texts = [f"document {i}: " + "lorem ipsum dolor sit amet " * (i % 7) for i in range(40)]
    for batch in (texts, texts[:3], []):
        assert tokens.count_tokens_batch(batch, "gpt-4o") == [tokens.count_tokens(t, "gpt-4o") for t in batch]


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_truncate(model: str) -> None:
    text = "Größenwahn über Ärzte in 東京 🚀🚀 and the rest of a long sentence. " * 20
    for limit in (1, 2, 3, 7, 50, 100):
        cut = tokens.truncate(text, model, limit)
        assert text.startswith(cut)
        assert tokens.count_tokens(cut, model) <= limit
        assert "\ufffd" not in cut
        assert tokens.count_tokens(cut, model) >= limit - 2  # nothing more than a split character lost
    assert tokens.truncate(text, model, 10_000) == text
    assert tokens.truncate(text, model, 0) == ""


def test_context_window() -> None:
    assert tokens.context_window("gpt-4o-mini") == 128_000
    assert tokens.context_window("gpt-4o-2024-08-06") == 128_000
    assert tokens.context_window("gpt-4.1-mini") == 1_047_576
    assert tokens.context_window("gpt-4") == 8_192
    assert tokens.context_window("gpt-4-turbo") == 128_000
    assert tokens.context_window("gpt-3.5-turbo") == 16_385
    assert tokens.context_window("o3-mini") == 200_000
    assert tokens.context_window("llama3:8b") == tokens.DEFAULT_CONTEXT_WINDOW == 8_192


def test_missing_tables_fall_back_to_the_estimate(
    fresh_cache: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tokens, "DATA_DIR", tmp_path)
    text = "The quick brown fox jumps over the lazy dog. " * 10
    with caplog.at_level(logging.WARNING, logger="rag.tokens"):
        assert tokens.encoding_for_model("gpt-4o") is None
        assert tokens.count_tokens(text, "gpt-4o") == estimate_tokens(text)
        assert tokens.count_tokens(text, "gpt-4o") == estimate_tokens(text)
        batch = tokens.count_tokens_batch([text, "x"], "gpt-4o")
        assert batch == [estimate_tokens(text), estimate_tokens("x")]
        cut = tokens.truncate(text, "gpt-4o", 20)
    assert text.startswith(cut) and estimate_tokens(cut) <= 20 < estimate_tokens(text[: len(cut) + 1])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "estimated" in warnings[0].getMessage()
    # The estimate errs high, so chunks sized by it still fit the real limit.
    monkeypatch.undo()
    tokens._clear_cache()
    assert estimate_tokens(text) >= tokens.count_tokens(text, "gpt-4o")


def test_damaged_table_is_refused(
    fresh_cache: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(b"aGVsbG8= 0\n"))
    (tmp_path / "o200k_base.tiktoken.gz").write_bytes(b"not gzip at all")
    monkeypatch.setattr(tokens, "DATA_DIR", tmp_path)
    with caplog.at_level(logging.WARNING, logger="rag.tokens"):
        assert tokens.count_tokens("hello world", "gpt-4") == estimate_tokens("hello world")
        assert tokens.count_tokens("hello world", "gpt-4o") == estimate_tokens("hello world")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "sha256" in messages and "o200k_base" in messages


def test_loading_is_shared_between_threads(fresh_cache: None) -> None:
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(tokens.get_encoding("cl100k_base"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results) and results[0] is not None
