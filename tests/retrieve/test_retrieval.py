"""Search modes, filters, MMR and fusion on real files, and ``rag eval`` end to end.

Filters and modes run on the ``hash`` test embedder (their logic does not depend on the
model); the fusion-quality test uses the real local model on a slice of real data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.engine import Engine
from rag.errors import UsageError
from rag.eval.beir import load_beir, load_squad
from rag.eval.runner import eval_index, score
from rag.retrieve.fusion import normalized_scores, reciprocal_rank
from rag.retrieve.mmr import MMR, mmr
from rag.retrieve.search import MODES, Filters, Mode, Retriever
from rag.settings import Settings
from tests.conftest import Cli

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture
def library(docs: Path) -> Path:
    """The shared text and Markdown docs plus a three-page PDF whose page 3 is a table."""
    shutil.copy(FIXTURES / "pdf" / "latex_two-column-lorem.pdf", docs / "sub" / "lorem.pdf")
    return docs


@pytest.fixture
def engine(library: Path) -> Engine:
    engine = Engine(index="lib")
    report = engine.ingest(library, embedder="hash")
    assert report.ok and report.added == 4
    return engine


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_page_range_keeps_only_those_pages(engine: Engine, mode: Mode) -> None:
    query = "Table EU countries population capital"
    everywhere = engine.search(query, 10, mode=mode)
    assert any(h.page == 3 for h in everywhere)
    assert {h.page for h in engine.search(query, 10, Filters.parse(pages="3"), mode=mode)} == {3}
    early = engine.search(query, 10, Filters.parse(pages="-2"), mode=mode)
    assert early and all(h.page in (1, 2) for h in early)
    # Text files have no pages, so no chunk of theirs matches a page range.
    assert all(h.source.endswith(".pdf") for h in early)


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_type_and_glob_filters(engine: Engine, library: Path, mode: Mode) -> None:
    query = "bees volcanoes railway"
    only_md = engine.search(query, 10, Filters.parse(types=["md"]), mode=mode)
    assert only_md and {Path(h.source).name for h in only_md} == {"bees.md"}
    in_sub = engine.search(query, 10, Filters.parse(paths=["sub/*"]), mode=mode)
    assert in_sub and {Path(h.source).parent.name for h in in_sub} == {"sub"}
    txt_in_sub = engine.search(query, 10, Filters.parse(paths=["sub/*"], types=["txt"]), mode=mode)
    assert {Path(h.source).name for h in txt_in_sub} == {"trains.txt"}
    absolute = engine.search(query, 10, Filters.parse(paths=[str(library / "*.txt")]), mode=mode)
    assert {Path(h.source).name for h in absolute} == {"volcanoes.txt"}
    assert not engine.search(query, 10, Filters.parse(paths=["nothing/*.md"]), mode=mode)


def test_filter_parsing_rejects_bad_input() -> None:
    assert Filters.parse(pages="2-5").pages == (2, 5)
    assert Filters.parse(pages="7-").pages == (7, None)
    with pytest.raises(UsageError):
        Filters.parse(pages="two")
    with pytest.raises(UsageError):
        Filters.parse(types=["pages"])


def test_modes_differ_and_keyword_needs_no_embedder(engine: Engine) -> None:
    index = engine.open_index()
    keyword = Retriever(index, None).search("Stockton Darlington railway", 3, mode="keyword")
    assert keyword[0].source.endswith("trains.txt") and keyword[0].relevance is None
    with pytest.raises(UsageError):
        Retriever(index, None).search("railway", 3, mode="hybrid")
    with pytest.raises(UsageError):
        engine.search("railway", 3, mode="fuzzy")  # type: ignore[arg-type]
    hybrid = engine.search("Stockton Darlington railway", 3, mode="hybrid")
    assert hybrid[0].source.endswith("trains.txt") and hybrid[0].relevance is not None


def test_mmr_skips_near_duplicates(docs: Path) -> None:
    text = "Honey bees live in colonies with a single queen and pollinate flowers.\n"
    for name in ("copy1.txt", "copy2.txt", "copy3.txt"):
        (docs / name).write_text(text, encoding="utf-8")
    engine = Engine(index="dups")
    engine.ingest(docs, embedder="hash")
    retriever = Retriever(engine.open_index(), engine.embedder())
    # A query the copies match best, and a lambda at which a second copy (redundancy 1) always
    # loses to a fresh chunk: at 0.5 it only ties a chunk of relevance 0 and similarity 0.
    query = "honey bees queen colonies pollinate flowers"
    plain = retriever.search(query, 3, mode="hybrid")
    diverse = Retriever(retriever.index, retriever.embedder, [MMR(0.3)]).search(query, 3, mode="hybrid")
    assert sum(Path(h.source).name.startswith("copy") for h in plain) >= 2
    assert sum(Path(h.source).name.startswith("copy") for h in diverse) == 1
    assert diverse[0].chunk_id == plain[0].chunk_id


def test_mmr_pure_function() -> None:
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.0]), "c": np.array([0.0, 1.0])}
    ranked = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    query = np.array([0.8, 0.6])
    assert [i for i, _ in mmr(ranked, vectors, query, 2, 1.0)] == ["a", "b"]
    assert [i for i, _ in mmr(ranked, vectors, query, 2, 0.5)] == ["a", "c"]


def test_fusion_functions() -> None:
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    keyword = [("c", 10.0), ("b", 9.0), ("a", 1.0)]
    # Second in both lists, close to each top: score fusion puts it first.
    assert normalized_scores([dense, keyword])[0][0] == "b"
    assert normalized_scores([dense, keyword], method="zscore")[0][0] == "b"
    # An item missing from a list counts as that list's last; a lone or flat list scores 1.
    assert dict(normalized_scores([[("x", 5.0)], [("y", 2.0), ("x", 1.0)]])) == {"x": 1.0, "y": 1.0}
    assert [i for i, _ in reciprocal_rank([dense, keyword], [2.0, 1.0])] == ["a", "b", "c"]
    assert reciprocal_rank([[], []]) == [] and normalized_scores([[], []]) == []


# --- fusion quality on real text, with the real model ---------------------------------------


def test_hybrid_is_at_least_as_good_as_the_better_single_mode(settings: Settings) -> None:
    """The default must not fall below whichever single method suits the corpus (within 2%)."""
    pytest.importorskip("rag.embed.local")
    dataset = load_squad(FIXTURES / "squad" / "normans.json")
    with eval_index(dataset, settings, embedder="local") as target:
        ndcg = {mode: score(target, dataset, mode).metrics["ndcg@10"] for mode in MODES}
    best_single = max(ndcg["dense"], ndcg["keyword"])
    assert ndcg["hybrid"] >= 0.98 * best_single, ndcg


# --- rag eval --------------------------------------------------------------------------------


def test_a_temporary_eval_index_uses_the_users_embedding_cache(settings: Settings, isolated: Path) -> None:
    """Each eval indexes into a store of its own, embedding only what no eval embedded before."""
    dataset = load_beir(FIXTURES / "beir-mini")
    with eval_index(dataset, settings, embedder="hash") as first:
        chunks = len(first.chunk_docs)
        assert first.report.embedded == chunks > 0 and not first.kept
    with eval_index(dataset, settings, embedder="hash") as second:
        assert second.report.embedded == 0 and second.report.from_cache == chunks
        assert score(second, dataset, "dense").metrics["ndcg@10"] > 0
    assert (isolated / "cache" / "embeddings.db").is_file()
    assert not (isolated / "indexes").exists()  # the index itself was temporary


def test_eval_json_shape(cli: Cli, isolated: Path) -> None:
    code, output, _ = cli("eval", str(FIXTURES / "beir-mini"), "--mode", "keyword", "--embedder", "hash", "--json")
    assert code == 0, output
    data = json.loads(output)
    assert set(data) == {"dataset", "mode", "queries", "metrics", "latency_ms"}
    assert data["dataset"] == "beir-mini" and data["mode"] == "keyword" and data["queries"] == 8
    assert set(data["metrics"]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
    assert set(data["latency_ms"]) == {"p50", "p95"}
    # BM25 ranks most relevant abstracts first among 30; one query shares no word with its abstract.
    assert data["metrics"]["recall@100"] == 0.875 and data["metrics"]["ndcg@10"] > 0.7
    # The temporary index is gone; its vectors stay in the user's cache for the next eval.
    assert Engine().indexes() == [] and (isolated / "cache" / "embeddings.db").is_file()


def test_eval_keeps_a_named_index_and_reuses_it(cli: Cli, isolated: Path) -> None:
    args = ("eval", str(FIXTURES / "beir-mini"), "--embedder", "hash", "--index", "mini")
    code, first, err = cli(*args)
    assert code == 0, err
    assert "nDCG@10" in first and "p95" in first and "━" not in first + err  # no progress bar when piped
    code, second, _ = cli(*args, "--json")
    assert code == 0, second
    assert json.loads(second)["metrics"]["ndcg@10"] > 0
    info = {i.name: i for i in Engine().indexes()}["mini"]
    assert info.files == 30
    # Dropping the index also removes the documents eval wrote for it.
    assert (isolated / "eval" / "mini").is_dir()
    assert cli("drop", "mini", "--yes")[0] == 0
    assert not (isolated / "eval" / "mini").exists() and Engine().indexes() == []


def test_eval_rejects_a_folder_that_is_not_beir(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("eval", str(tmp_path))
    assert code == 2 and "not a BEIR dataset" in err
