"""The eval metrics against a reference implementation (ranx), and their edge cases."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest

from rag.errors import UsageError
from rag.eval.beir import load_beir, load_squad
from rag.eval.metrics import evaluate, ndcg, per_query, recall, reciprocal_rank

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _ranx(qrels: dict[str, dict[str, int]], run: dict[str, list[str]]) -> dict[str, float]:
    ranx = pytest.importorskip("ranx")
    # Strictly decreasing scores so that the reference keeps our order (no ties to break).
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items() if docs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety chatter
        result = ranx.evaluate(
            ranx.Qrels(qrels),
            ranx.Run(scored),
            ["ndcg@10", "recall@10", "recall@100", "mrr@10"],
            make_comparable=True,
        )
    return {k: float(v) for k, v in result.items()}


def _random_case(seed: int) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(300)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(60):
        judged = rng.sample(docs, rng.randint(1, 12))
        # Graded: 0 (judged not relevant), 1 and 2, as in TREC-COVID or NFCorpus.
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 1, 2]) for d in judged}
        if q % 15 == 7:
            continue  # a query the system returned nothing for
        pool = set(judged) | set(rng.sample(docs, 150))
        run[f"q{q}"] = rng.sample(sorted(pool), rng.randint(0, 130))
    qrels["all-zero"] = {"d1": 0, "d2": 0}
    run["all-zero"] = ["d1", "d2"]
    return qrels, run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_agree_with_ranx(seed: int) -> None:
    qrels, run = _random_case(seed)
    ours = evaluate(qrels, run)
    reference = _ranx(qrels, run)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=5e-5), name


def test_ndcg_uses_linear_gains_and_all_judged_documents() -> None:
    judged = {"a": 2, "b": 1, "c": 0, "z": 1}
    # DCG = 2/log2(3) + 1/log2(5); ideal = 2 + 1/log2(3) + 1/log2(4) (z was never retrieved).
    expected = (2 / 1.5849625 + 1 / 2.3219281) / (2 + 1 / 1.5849625 + 0.5)
    assert ndcg(["c", "a", "d", "b"], judged, 10) == pytest.approx(expected, abs=1e-6)
    assert ndcg(["x"], {"x": 0}, 10) == 0.0


def test_recall_and_mrr_count_only_relevant_documents() -> None:
    judged = {"a": 1, "b": 0, "c": 3}
    assert recall(["b", "x", "a"], judged, 10) == 0.5
    assert recall(["b", "x", "a"], judged, 2) == 0.0
    assert reciprocal_rank(["b", "x", "a"], judged, 10) == pytest.approx(1 / 3)
    assert reciprocal_rank(["b", "x", "a"], judged, 2) == 0.0


def test_duplicates_in_a_run_count_once_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert per_query(qrels, {"q1": ["a", "a", "x"]})["q1"]["recall@10"] == 1.0
    assert evaluate(qrels, {"q1": ["a"]})["mrr@10"] == 0.5


def test_load_beir_reads_the_fixture_and_rejects_other_folders(tmp_path: Path) -> None:
    data = load_beir(FIXTURES / "beir-mini")
    assert data.name == "beir-mini"
    assert len(data.corpus) == 30 and len(data.queries) == 8
    assert data.qrels["36"] == {"5152028": 1, "11705328": 1}
    assert all(doc.title and doc.text for doc in data.corpus.values())
    with pytest.raises(UsageError, match=r"corpus\.jsonl is missing"):
        load_beir(tmp_path)


def test_load_squad_keeps_answerable_questions(tmp_path: Path) -> None:
    path = tmp_path / "squad.json"
    path.write_text(
        '{"data": [{"title": "Bees_and_wasps", "paragraphs": [{"context": "Bees make honey.", "qas": ['
        '{"id": "q1", "question": "What do bees make?", "is_impossible": false, "answers": []},'
        '{"id": "q2", "question": "What do wasps make?", "is_impossible": true, "answers": []}]}]}]}',
        encoding="utf-8",
    )
    data = load_squad(path)
    assert data.queries == {"q1": "What do bees make?"}
    assert data.qrels == {"q1": {"0-0": 1}}
    assert data.corpus["0-0"].title == "Bees and wasps"
