"""Scale: one index grown to a million chunks, and a second machine catching up on a server.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--queries 200] [--catchup 20000]

The corpus is ``benchmarks/synthetic.py``'s: Zipfian text in files of about 20 chunks,
with vectors from a cheap hashing embedder, so that building measures the store (Chroma,
the manifest, the Tantivy keyword index) and not the model.  Chunks go through the same
``Index`` calls an ingest makes (stage, write vectors, commit per window of files).

One index is grown to each size in turn; at each size it reports:

- the store-path ingest rate so far (target >= 2,000 chunks/s),
- dense, keyword and hybrid p50/p95 (k = 10, through ``Retriever``), without filters and
  with a path filter that keeps a tenth of the files (targets at 1M: hybrid p50 <= 30 ms,
  p95 <= 60 ms; keyword p50 <= 10 ms),
- peak RSS of the process (target < 4 GB at 1M) and bytes on disk.

``--catchup N`` then starts a `chroma run`, has machine A ingest N chunks, machine B
build its cache, A change 1% of the files, and times B catching up against B rebuilding.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import Corpus

from rag.retrieve.search import MODES, Filters, Retriever
from rag.settings import Settings
from rag.store.index import Index
from rag.store.records import ChunkRecord, FileRecord
from tests.chroma_server import chroma_run

EMBEDDER = "synthetic-hash:v1"
WINDOW_FILES = 100  # files per commit: the size of an ingest window (~2,000 chunks)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


class Builder:
    """Feeds the synthetic corpus into an index through the ingest's calls, window by window."""

    def __init__(self, index: Index, corpus: Corpus, version: str = "v1") -> None:
        self.index = index
        self.corpus = corpus
        self.version = version
        self.stored = 0
        self.seconds = 0.0
        self._batches = corpus.batches(batch=2_000)
        self._carry: list[tuple[int, str, np.ndarray]] = []

    def grow_to(self, target: int) -> None:
        """Add chunks until the index holds ``target`` (whole windows at a time)."""
        while self.stored < target:
            try:
                start, texts, vectors = next(self._batches)
            except StopIteration:
                return
            self.write([(start + j, t, vectors[j]) for j, t in enumerate(texts)])

    def write(self, rows: list[tuple[int, str, np.ndarray]]) -> None:
        files: dict[str, FileRecord] = {}
        chunks: list[ChunkRecord] = []
        for number, text, _ in rows:
            path = self.corpus.file_of(number)
            position = number % 20
            chunks.append(
                ChunkRecord(
                    id=f"{self.version}-{number}",
                    path=path,
                    kind="text",
                    position=position,
                    page=position // 4 + 1,
                    heading="",
                    start=0,
                    end=len(text),
                    tokens=len(text.split()),
                    text=text,
                )
            )
            files.setdefault(path, FileRecord(path, self.version, "sig", "text", len(text), 0, None, 0, time.time()))
        counts: dict[str, list[str]] = {}
        for c in chunks:
            counts.setdefault(c.path, []).append(c.id)
        records = {p: replace(r, chunk_count=len(counts[p])) for p, r in files.items()}
        vectors = np.stack([v for _, _, v in rows])
        started = time.perf_counter()
        self.index.stage(chunks)
        self.index.write_vectors(chunks, vectors, records)
        self.index.commit_files([(records[p], ids) for p, ids in counts.items()])
        self.seconds += time.perf_counter() - started
        self.stored += len(chunks)


def latencies(index: Index, corpus: Corpus, queries: list[str], filtered: bool) -> dict[str, tuple[float, float]]:
    retriever = Retriever(index, corpus.embedder)
    # Files whose number ends in 3: a tenth of them, as a glob a user would type.
    filters = Filters(paths=("/corpus/*3.txt",)) if filtered else None
    out: dict[str, tuple[float, float]] = {}
    for mode in MODES:
        for q in queries[:10]:
            retriever.search(q, 10, mode=mode, filters=filters)
        samples = []
        for q in queries:
            t0 = time.perf_counter()
            retriever.search(q, 10, mode=mode, filters=filters)
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        out[mode] = (statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))])
    return out


def chroma_floor(corpus: Corpus, n: int = 10_000) -> float:
    """Chunks/s of Chroma alone (same vectors and filter metadata, same HNSW settings, same
    batches): the floor the store path is measured against, on the same machine, same load."""
    from rag.store.vectors import VectorStore

    with tempfile.TemporaryDirectory(prefix="rag-floor-") as tmp:
        store = VectorStore.connect("rag-floor", path=Path(tmp))
        store.create({})
        seconds, done = 0.0, 0
        for start, _, vectors in corpus.batches(batch=2_000):
            if done >= n:
                break
            ids = [f"c{start + j}" for j in range(len(vectors))]
            meta = [{"source": corpus.file_of(start + j), "page": (start + j) % 20 // 4 + 1} for j in range(len(ids))]
            t0 = time.perf_counter()
            store.upsert(ids, vectors, None, meta)
            seconds += time.perf_counter() - t0
            done += len(ids)
    return done / seconds


def grow(sizes: list[int], n_queries: int, keep: Path | None) -> None:
    home = keep or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    settings = Settings.load().with_options(store__home=home, store__chroma_url=None)
    corpus = Corpus(max(sizes))
    queries = corpus.queries(n_queries)
    index = Index.open(settings, "scale", create=True)
    index.bind_embedder(EMBEDDER, corpus.embedder.dimension)
    builder = Builder(index, corpus)
    print(f"# scale: {n_queries} queries, k=10; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    floor = chroma_floor(corpus)
    print(f"Chroma alone (floor, first 10,000 chunks): {floor:,.0f} chunks/s", flush=True)
    print(
        f"{'chunks':>10}{'ingest/s':>10}{'MB disk':>9}{'MB/M':>7}{'RSS MB':>8}  "
        f"{'mode':<8}{'p50':>7}{'p95':>7}{'filt p50':>10}{'filt p95':>9}  load",
        flush=True,
    )
    try:
        with index.write_lock(60):
            for size in sizes:
                builder.grow_to(size)
                plain = latencies(index, corpus, queries, filtered=False)
                filt = latencies(index, corpus, queries, filtered=True)
                count = index.chunk_count()
                disk = disk_mb(home)
                for i, mode in enumerate(MODES):
                    head = (
                        f"{count:>10,}{count / builder.seconds:>10,.0f}{disk:>9,.0f}{disk * 1e6 / count:>7,.0f}"
                        f"{rss_mb():>8,.0f}"
                        if i == 0
                        else " " * 44
                    )
                    print(
                        f"{head}  {mode:<8}{plain[mode][0]:>7.1f}{plain[mode][1]:>7.1f}"
                        f"{filt[mode][0]:>10.1f}{filt[mode][1]:>9.1f}  {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
    finally:
        index.close()
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)


# --- a second machine catching up -----------------------------------------------------------


def catchup(size: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rag-catchup-"))
    server = ExitStack()
    url = server.enter_context(chroma_run(folder))
    try:
        corpus = Corpus(size)
        machine_a = Settings.load().with_options(store__home=folder / "a", store__chroma_url=url)
        machine_b = Settings.load().with_options(store__home=folder / "b", store__chroma_url=url)
        a = Index.open(machine_a, "shared", create=True)
        a.bind_embedder(EMBEDDER, corpus.embedder.dimension)
        with a.write_lock(60):
            builder = Builder(a, corpus)
            builder.grow_to(size)
        print(f"\n# catch-up over a Chroma server, {size:,} chunks; load {os.getloadavg()[0]:.1f}")
        print(f"machine A stored {size:,} chunks at {size / builder.seconds:,.0f} chunks/s (server)")

        t0 = time.perf_counter()
        b = Index.open(machine_b, "shared")
        first = time.perf_counter() - t0
        print(f"machine B first open (full cache build): {first:.1f} s, {size / first:,.0f} chunks/s")
        b.close()

        # 1% of the files change: their chunks are replaced by new versions.
        files = sorted({corpus.file_of(i) for i in range(size)})
        changed = set(files[::100])
        rows = []
        for start, texts, vectors in corpus.batches(batch=2_000):
            for j, text in enumerate(texts):
                if corpus.file_of(start + j) in changed:
                    rows.append((start + j, text + " revised", vectors[j]))
        with a.write_lock(60):
            Builder(a, corpus, version="v2").write(rows)
        a.close()

        t0 = time.perf_counter()
        b = Index.open(machine_b, "shared")
        took = time.perf_counter() - t0
        sync: Any = b.last_sync
        print(
            f"machine B catch-up after {len(changed):,} of {len(files):,} files changed ({len(rows):,} chunks): "
            f"{took:.2f} s, fetched {sync.fetched:,} chunks in {sync.records} log records "
            f"(full rebuild {first:.1f} s: {first / took:.0f}x)"
        )
        b.close()
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated index sizes, ascending")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--catchup", type=int, default=20_000, help="chunks for the catch-up test (0: skip)")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    if sizes:
        grow(sizes, args.queries, args.keep)
        print(f"peak RSS {rss_mb():,.0f} MB")
    if args.catchup:
        catchup(args.catchup)


if __name__ == "__main__":
    main()
