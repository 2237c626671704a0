"""Search latency, in process, at SciFact size and at 100k+ chunks: p50/p95 per mode.

    python benchmarks/search_latency.py [--data ../shared/data/beir-scifact] [--chunks 100000]

The SciFact corpus is indexed through the real pipeline (embeddings come from the user's
cache after the first run).  The large index replicates its chunks: each copy's text is
the original with its sentences rotated, and its vector the original plus a little noise
(written straight to the store to skip hours of embedding).  Every search then goes
through the real ``Retriever``, Chroma and FTS5, with the SciFact test queries embedded by
the real model; keyword mode embeds nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.embed.base import Embedder
from rag.eval.beir import load_beir
from rag.eval.runner import eval_index, percentiles
from rag.retrieve.search import MODES, Retriever
from rag.settings import Settings
from rag.store.index import Index
from rag.store.records import ChunkRecord, FileRecord

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir-scifact"


def measure(index: Index, embedder: Embedder, queries: list[str], k: int) -> dict[str, dict[str, float]]:
    """p50/p95 milliseconds of ``Retriever.search`` per mode, after one warm-up pass."""
    rows: dict[str, dict[str, float]] = {}
    for mode in MODES:
        retriever = Retriever(index, None if mode == "keyword" else embedder)
        for query in queries[:20]:
            retriever.search(query, k, mode=mode)
        times = []
        for query in queries:
            started = time.perf_counter()
            retriever.search(query, k, mode=mode)
            times.append((time.perf_counter() - started) * 1000)
        rows[mode] = percentiles(times)
    return rows


def replicate(source: Index, target: Index, chunks: int, seed: int = 0) -> int:
    """Fill ``target`` with copies of ``source``'s chunks until it holds ``chunks``; returns the count."""
    rng = np.random.default_rng(seed)
    originals = [c for batch in source.iter_chunks() for c in batch]
    vectors = source.vectors_of([c.id for c in originals])
    copies = math.ceil(chunks / len(originals))
    by_file: dict[str, list[ChunkRecord]] = {}
    for c in originals:
        by_file.setdefault(c.path, []).append(c)
    for copy in range(copies):
        records: list[ChunkRecord] = []
        files: list[tuple[FileRecord, list[str]]] = []
        for path, file_chunks in by_file.items():
            new_path = f"/synthetic/{copy}/{Path(path).name}"
            ids = []
            for c in file_chunks:
                text = _rotate(c.text, copy)
                records.append(
                    ChunkRecord(
                        f"{copy}-{c.id}", new_path, c.kind, c.position, c.page, c.heading, 0, len(text), c.tokens, text
                    )
                )
                ids.append(records[-1].id)
            files.append((FileRecord(new_path, "-", "-", "text", 0, 0, None, len(ids), time.time()), ids))
        matrix = np.stack([vectors[r.id.split("-", 1)[1]] for r in records])
        if copy:
            # About 0.9 cosine to the original: near, but not a duplicate, as HNSW would meet in real data.
            matrix = matrix + rng.normal(0, 0.025, matrix.shape).astype(np.float32)
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        target.stage(records)
        target.write_vectors(records, matrix, {record.path: record for record, _ in files})
        for record, ids in files:
            target.commit_file(record, ids)
        print(f"  {target.chunk_count():,} chunks", file=sys.stderr, flush=True)
    return target.chunk_count()


def _rotate(text: str, n: int) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", text)
    n %= max(len(sentences), 1)
    return " ".join(sentences[n:] + sentences[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder")
    parser.add_argument("--chunks", type=int, default=100_000, help="size of the large index")
    parser.add_argument("-k", type=int, default=10, help="hits per search")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    dataset = load_beir(args.data)
    queries = list(dataset.queries.values())
    settings = Settings.load()
    results: dict[str, dict[str, dict[str, float]]] = {}
    sizes: dict[str, int] = {}
    with eval_index(dataset, settings) as scifact, tempfile.TemporaryDirectory(prefix="rag-latency-") as tmp:
        sizes["scifact"] = scifact.index.chunk_count()
        results["scifact"] = measure(scifact.index, scifact.embedder, queries, args.k)
        big = Index.open(settings.with_options(store__home=Path(tmp)), "large", create=True)
        big.bind_embedder(scifact.embedder.name, scifact.embedder.dimension)
        print(f"building a {args.chunks:,}-chunk index", file=sys.stderr)
        sizes["large"] = replicate(scifact.index, big, args.chunks)
        results["large"] = measure(big, scifact.embedder, queries, args.k)
        big.close()

    if args.json:
        print(json.dumps({"k": args.k, "queries": len(queries), "chunks": sizes, "latency_ms": results}, indent=2))
        return
    print(f"search latency, k={args.k}, {len(queries)} SciFact test queries (ms)")
    print(f"{'index':<26}{'mode':<10}{'p50':>8}{'p95':>8}")
    for name, rows in results.items():
        for mode, lat in rows.items():
            print(f"{f'{name} ({sizes[name]:,} chunks)':<26}{mode:<10}{lat['p50']:>8.1f}{lat['p95']:>8.1f}")


if __name__ == "__main__":
    main()
