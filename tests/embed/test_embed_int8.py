"""The int8 local model: agreement with fp32, the precision an index keeps, and `auto` on a
server that does not embed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.embed import factory, quantize
from rag.embed import openai as openai_embedder
from rag.embed.base import embed_many
from rag.embed.local import NAMES, LocalEmbedder
from rag.engine import Engine
from rag.errors import EmbedderMismatchError
from rag.settings import Settings
from tests.chroma_server import chroma_run
from tests.openai_server import FakeOpenAI

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz"
INT8, FP32 = NAMES["int8"], NAMES["fp32"]


def _cpu(monkeypatch: pytest.MonkeyPatch, int8: bool) -> None:
    """This process's CPU, as the precision choice sees it."""
    monkeypatch.setattr(quantize, "int8_flags", lambda cpuinfo="": ["avx512_vnni"] if int8 else [])


def _docs(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "volcanoes.txt").write_text("Mount Etna is an active volcano on the east coast of Sicily.\n")
    (root / "bees.md").write_text("# Bees\n\nHoney bees dance to tell the hive where the flowers are.\n")
    return root


def test_int8_agrees_with_fp32_on_the_reference_sentences() -> None:
    sentences = [str(s) for s in np.load(FIXTURE)["sentences"]]
    fp32 = embed_many(LocalEmbedder(threads=1, precision="fp32"), sentences)
    int8 = embed_many(LocalEmbedder(threads=1, precision="int8"), sentences)
    cosines = np.sum(fp32 * int8, axis=1)
    # Activations are quantized per run, so a text of one or two word pieces, whose mean is
    # mostly [CLS] and [SEP], strays most: "?" is at 0.975.  Every text of 3 word pieces or more is >= 0.98.
    pieces = LocalEmbedder(threads=1).count_tokens(sentences)
    worded = [i for i, n in enumerate(pieces) if n >= 3]
    assert len(worded) >= 38 and cosines[worded].min() >= 0.98, cosines[worded].min()
    assert cosines.min() >= 0.97 and cosines.mean() >= 0.99, (cosines.min(), cosines.mean())
    assert cosines.mean() < 0.99999  # really another graph, not fp32 under a second name
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)


def test_weights_are_quantized_per_output_column() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, 4)).astype(np.float32) * np.array([[0.01], [1], [5], [0.2], [3], [40]], np.float32)
    q, scale = quantize.quantize(weight)
    assert q.dtype == np.int8 and q.shape == (4, 6) and scale.shape == (6,)
    assert np.abs(q).max(axis=0).tolist() == [127] * 6  # each column uses its whole range
    np.testing.assert_allclose(q.T * scale[:, None], weight, atol=float(scale.max()) / 2 + 1e-7)


def test_int8_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\n")
    assert quantize.int8_flags(str(cpuinfo)) == ["avx512_vnni"]
    cpuinfo.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    assert quantize.int8_flags(str(cpuinfo)) == []
    assert quantize.int8_flags(str(tmp_path / "missing")) == []


def test_precision_is_chosen_by_the_cpu_and_can_be_forced(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    settings = Settings.load()
    _cpu(monkeypatch, True)
    assert factory.normalize("local", settings) == INT8
    assert factory.choose(settings, None, "x") == INT8
    assert "avx512_vnni" in factory.explain(settings)[1]
    assert factory.normalize("local:fp32", settings) == FP32
    _cpu(monkeypatch, False)
    assert factory.choose(settings, None, "x") == FP32
    assert factory.normalize("local:int8", settings) == INT8
    assert factory.normalize("local:all-MiniLM-L6-v2-int8", settings) == INT8
    assert "fp32 as this CPU has none of" in factory.explain(settings)[1]


@pytest.mark.parametrize(("built_on_int8_cpu", "kept"), [(True, INT8), (False, FP32)])
def test_an_index_keeps_its_precision_across_restarts_and_machines(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, tmp_path: Path, built_on_int8_cpu: bool, kept: str
) -> None:
    docs = _docs(tmp_path / "docs")
    _cpu(monkeypatch, built_on_int8_cpu)
    with Engine() as engine:
        assert engine.ingest(docs).ok
        assert engine.embedder_name() == kept
    _cpu(monkeypatch, not built_on_int8_cpu)  # another machine, or this one's detection turned over
    with Engine() as engine:
        assert engine.embedder_name() == kept
        hits = engine.search("an active volcano in Sicily", k=1)
        assert hits[0].source.endswith("volcanoes.txt")
        assert engine.store.embedders_loaded() == [kept]  # the query was embedded in the index's precision
        # `local` names no precision: the index's own is kept, for ingest too.
        (docs / "more.txt").write_text("Stromboli erupts every few minutes.\n")
        assert engine.ingest(docs, embedder="local").ok
        assert engine.embedder_name() == kept
    with Engine(embedding__embedder="local") as engine:
        assert engine.embedder_name() == kept


def test_fp32_on_an_int8_index_is_refused_with_one_line(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, tmp_path: Path
) -> None:
    docs = _docs(tmp_path / "docs")
    with Engine() as engine:
        assert engine.ingest(docs, embedder="local:int8").ok
        with pytest.raises(EmbedderMismatchError):
            engine.ingest(docs, embedder="local:fp32")
    env = {**os.environ, "RAG_EMBEDDER": "local:fp32"}
    for args in (["ingest", str(docs)], ["search", "volcano"]):
        result = subprocess.run(
            [sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"built with embedder '{INT8}', not '{FP32}'" in result.stderr


# --- `auto` with a server that does not embed (a chat-only llama.cpp, Ollama or vLLM) -----


@pytest.fixture
def chat_only(openai_env: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    openai_env.embedding_models.clear()  # every embeddings request: 404 model_not_found
    monkeypatch.setattr(openai_embedder, "_PROBED", {})
    return openai_env


def test_auto_checks_once_that_the_server_embeds_and_else_uses_the_local_model(
    chat_only: FakeOpenAI, isolated: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = _docs(tmp_path / "docs")
    with caplog.at_level(logging.WARNING, logger="rag.embed.factory"), Engine() as engine:
        report = engine.ingest(docs)
        assert report.ok and report.added == 2
        assert report.embedder == factory.normalize("local", engine.settings)
        assert engine.search("an active volcano in Sicily", k=1)[0].source.endswith("volcanoes.txt")
    assert len(chat_only.requests_to("/embeddings")) == 1  # asked once, not retried
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "does not serve embeddings (HTTP 404)" in warning and "local model" in warning
    assert str(chat_only.api_key) not in warning


def test_llama_cpp_style_500_also_falls_back(chat_only: FakeOpenAI, isolated: Path) -> None:
    chat_only.embedding_models["text-embedding-3-small"] = 1536
    chat_only.error_next(1, 500, path="/embeddings")
    name, why = factory.auto(Settings.load())
    assert name.startswith("local:") and "HTTP 500" in why


def test_a_server_that_embeds_is_used(openai_env: FakeOpenAI, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_embedder, "_PROBED", {})
    assert factory.auto(Settings.load())[0] == "openai:text-embedding-3-small"


def test_a_failed_first_ingest_does_not_pin_its_embedder_and_counts_its_failures(
    chat_only: FakeOpenAI, isolated: Path, tmp_path: Path
) -> None:
    docs = _docs(tmp_path / "docs")
    with Engine() as engine:
        report = engine.ingest(docs, embedder="openai")  # named, so not checked first
        assert not report.ok and report.added == 0 and report.interrupted
        assert len(report.failed) == 2 and all("not stored" in p.reason for p in report.failed)
        assert engine.store.open_index(engine.index_name).embedder_name is None
        report = engine.ingest(docs)  # auto chooses again, now the local model
        assert report.ok and report.added == 2 and report.embedder.startswith("local:")


@pytest.mark.server
def test_a_chroma_server_client_on_another_machine_searches_in_the_index_precision(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, tmp_path: Path
) -> None:
    docs = _docs(tmp_path / "docs")
    (tmp_path / "chroma").mkdir()
    with chroma_run(tmp_path / "chroma") as url:
        monkeypatch.setenv("RAG_CHROMA_URL", url)
        _cpu(monkeypatch, True)
        with Engine(store=tmp_path / "machine-a") as engine:
            assert engine.ingest(docs).ok and engine.embedder_name() == INT8
        _cpu(monkeypatch, False)  # a second machine: its own cache folder, a CPU without VNNI
        with Engine(store=tmp_path / "machine-b") as engine:
            assert engine.embedder_name() == INT8
            assert engine.search("an active volcano in Sicily", k=1)[0].source.endswith("volcanoes.txt")
            assert engine.store.embedders_loaded() == [INT8]
