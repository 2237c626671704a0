"""Does prepending a chunk's heading path to the text that is embedded help dense retrieval?

BM25 already indexes heading paths; this measures the embedding side only.  Data: the
SQuAD v2.0 dev articles in ``../shared/data/squad-v2-dev-part-a`` (8 Wikipedia articles,
301 paragraphs, 1,299 answerable questions): each paragraph is a chunk whose heading is
its article's title ("1973 oil crisis"), the heading a Markdown or HTML copy of the
article would give it.  Each question's gold chunk is its paragraph.  The local MiniLM
embeds each paragraph as it is and as "title\\n\\nparagraph"; questions are embedded once.

Usage: python benchmarks/heading_prefix.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v2-dev-part-a" / "dev-v2.0.json"


def metrics(scores: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """MRR@10, Recall@1 and Recall@5 of the gold paragraph for each question (rows)."""
    order = np.argsort(-scores, axis=1)
    ranks = np.argmax(order == gold[:, None], axis=1) + 1
    return {
        "mrr@10": float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0))),
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@5": float(np.mean(ranks <= 5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from rag.embed.base import embed_many
    from rag.embed.factory import create
    from rag.settings import Settings

    articles = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    paragraphs: list[str] = []
    titles: list[str] = []
    questions: list[str] = []
    gold: list[int] = []
    for article in articles:
        title = article["title"].replace("_", " ")
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if not qa["is_impossible"]:
                    questions.append(qa["question"])
                    gold.append(len(paragraphs))
            paragraphs.append(paragraph["context"])
            titles.append(title)
    embedder = create("local", Settings.load())
    embedder.embed_batch(["warm up"])
    started = time.perf_counter()
    plain = embed_many(embedder, paragraphs)
    headed = embed_many(embedder, [f"{t}\n\n{p}" for t, p in zip(titles, paragraphs, strict=True)])
    queries = embed_many(embedder, questions)  # the local model embeds queries as passages
    seconds = time.perf_counter() - started
    gold_array = np.array(gold)
    result: dict[str, Any] = {
        "paragraphs": len(paragraphs),
        "questions": len(questions),
        "plain": metrics(queries @ plain.T, gold_array),
        "heading_prefixed": metrics(queries @ headed.T, gold_array),
        "seconds": seconds,
        "load": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['paragraphs']} paragraphs, {result['questions']} questions, load {result['load']:.1f}")
    print("| embedded text | MRR@10 | Recall@1 | Recall@5 |\n| --- | --- | --- | --- |")
    for name in ("plain", "heading_prefixed"):
        m = result[name]
        print(f"| {name} | {m['mrr@10']:.3f} | {m['recall@1']:.3f} | {m['recall@5']:.3f} |")


if __name__ == "__main__":
    main()
