"""Retrieval quality on SciFact (and a SQuAD-derived set) in every mode, beside published anchors.

    python benchmarks/retrieval.py [--data ../shared/data/beir-scifact] [--squad FILE] [--grid] [--embedder local:int8]

Each corpus is indexed once through the real pipeline into a temporary store (vectors come
from the user's embedding cache after the first run) and scored exactly as ``rag eval``
scores it.  ``--grid`` also prints the fusion tuning grid on SciFact's *train* queries:
each mode's candidate lists are fetched once, then every fusion setting is scored on them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rag.eval.beir import BeirDataset, load_beir, load_squad
from rag.eval.metrics import evaluate
from rag.eval.runner import EvalIndex, eval_index, score
from rag.retrieve import fusion
from rag.retrieve.search import MODES, Retriever
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ANCHORS = [
    ("BM25 (BEIR paper / Pyserini)", "0.665 to 0.679"),
    ("all-MiniLM-L6-v2 (dense)", "0.645"),
    ("bge-small-en-v1.5 (dense)", "0.713"),
]


def evaluate_modes(target: EvalIndex, dataset: BeirDataset) -> list[dict[str, Any]]:
    return [score(target, dataset, mode).to_dict() for mode in MODES]


def fusion_grid(target: EvalIndex, dataset: BeirDataset) -> list[tuple[str, dict[str, float]]]:
    """Score fusion settings on the same candidate lists: what the defaults were chosen from."""
    retriever = Retriever(target.index, target.embedder)
    lists = {
        q: (retriever.rank(text, 300, mode="dense"), retriever.rank(text, 300, mode="keyword"))
        for q, text in dataset.queries.items()
    }

    def run(fuse: Callable[[fusion.Ranked, fusion.Ranked], fusion.Ranked], pool: int = 100) -> dict[str, float]:
        ranked = {q: fuse(d[:pool], k[:pool]) for q, (d, k) in lists.items()}
        docs = {q: list(dict.fromkeys(target.chunk_docs[i] for i, _ in r))[:100] for q, r in ranked.items()}
        return evaluate(dataset.qrels, docs)

    settings: list[tuple[str, Callable[[fusion.Ranked, fusion.Ranked], fusion.Ranked]]] = [
        ("dense", lambda d, k: d),
        ("keyword", lambda d, k: k),
    ]
    for rrf_k in (5, 20, 60):
        for w in (0.5, 1.0, 2.0):
            rrf = partial(_rrf, weights=[w, 1.0], k=rrf_k)
            settings.append((f"rrf k={rrf_k} dense weight {w}", rrf))
    for method in ("minmax", "zscore"):
        for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
            cc = partial(_convex, weights=[alpha, 1 - alpha], method=method)
            settings.append((f"{method} dense weight {alpha}", cc))
    rows = [(name, run(fuse)) for name, fuse in settings]
    rows += [(f"default, {pool} candidates", run(retriever.fuse, pool)) for pool in (50, 100, 300)]
    return rows


def _rrf(dense: fusion.Ranked, keyword: fusion.Ranked, weights: list[float], k: int) -> fusion.Ranked:
    return fusion.reciprocal_rank([dense, keyword], weights, k)


def _convex(dense: fusion.Ranked, keyword: fusion.Ranked, weights: list[float], method: str) -> fusion.Ranked:
    return fusion.normalized_scores([dense, keyword], weights, method)


def _table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'mode':<9}{'nDCG@10':>9}{'R@10':>8}{'R@100':>8}{'MRR@10':>8}{'p50 ms':>8}{'p95 ms':>8}")
    for r in rows:
        m, lat = r["metrics"], r["latency_ms"]
        print(
            f"{r['mode']:<9}{m['ndcg@10']:>9.4f}{m['recall@10']:>8.4f}{m['recall@100']:>8.4f}{m['mrr@10']:>8.4f}"
            f"{lat['p50']:>8.1f}{lat['p95']:>8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "beir-scifact", help="BEIR SciFact folder")
    parser.add_argument("--squad", type=Path, default=SHARED / "squad-v2-dev-part-a" / "dev-v2.0.json")
    parser.add_argument("--grid", action="store_true", help="also print the fusion grid on SciFact train")
    parser.add_argument("--fusion", choices=("minmax", "zscore", "rrf"), help="hybrid fusion [default: Retriever's]")
    parser.add_argument("--embedder", help="embedder for the indexes, e.g. local:int8 or local:fp32 [default: auto]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings.load()
    if args.fusion:
        Retriever.fusion = args.fusion

    scifact = load_beir(args.data)
    report: dict[str, Any] = {}
    with eval_index(scifact, settings, embedder=args.embedder) as target:
        report["scifact"] = evaluate_modes(target, scifact)
        if args.grid:
            train = load_beir(args.data, "train")  # the same corpus, the other queries
            report["grid"] = [{"setting": name, **metrics} for name, metrics in fusion_grid(target, train)]
    if args.squad.is_file():
        squad = load_squad(args.squad)
        with eval_index(squad, settings, embedder=args.embedder) as target:
            report["squad"] = evaluate_modes(target, squad)

    if args.json:
        print(json.dumps(report, indent=2))
        return
    _table(f"SciFact test ({len(scifact.queries)} queries)", report["scifact"])
    print("published nDCG@10 on SciFact test: " + "; ".join(f"{name} {value}" for name, value in ANCHORS))
    if "squad" in report:
        _table("SQuAD v2 dev part A, answerable questions -> their paragraph", report["squad"])
    if "grid" in report:
        print("\nfusion grid, SciFact train (809 queries), 100 candidates per list")
        print(f"{'setting':<34}{'nDCG@10':>9}{'R@100':>8}")
        for row in report["grid"]:
            print(f"{row['setting']:<34}{row['ndcg@10']:>9.4f}{row['recall@100']:>8.4f}")


if __name__ == "__main__":
    main()
