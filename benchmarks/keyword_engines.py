"""Keyword engines compared: SQLite FTS5 (rag 0.1), Tantivy and bm25s, on quality and speed.

    python benchmarks/keyword_engines.py [--sizes 10000,100000] [--queries 200] [--scifact DIR]

Quality: SciFact test queries over whole abstracts (title + text), nDCG@10, with the same
query handling for all (stopwords dropped, English stemming, OR of the terms).
Speed: the Zipfian synthetic corpus of ``benchmarks/synthetic.py`` at each size; build
time, disk, and query latency for the top 100 (what hybrid fusion asks for) without and
with a path filter (5% of the files).  Run it on a quiet machine; the load is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import Corpus

from rag.eval.beir import load_beir
from rag.eval.metrics import evaluate
from rag.store.keyword import KeywordIndex, keyword_terms

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
Search = Callable[[str, int, "Sequence[str] | None"], list[tuple[str, float]]]


@dataclass
class Doc:
    id: str
    path: str
    text: str
    kind: str = "text"
    page: int | None = None
    heading: str = ""


class Fts5:
    """rag 0.1's keyword index: FTS5 with porter stemming, ranked by bm25()."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "fts.db"
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            """PRAGMA journal_mode=WAL;
            CREATE TABLE chunks (id TEXT PRIMARY KEY, path TEXT NOT NULL, heading TEXT NOT NULL, text TEXT NOT NULL);
            CREATE INDEX chunks_path ON chunks(path);
            CREATE VIRTUAL TABLE chunks_fts USING fts5(heading, text, content='chunks', content_rowid='rowid',
                tokenize='porter unicode61 remove_diacritics 2');
            CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
                INSERT INTO chunks_fts(rowid, heading, text) VALUES (new.rowid, new.heading, new.text);
            END;"""
        )

    def add(self, docs: Sequence[Doc]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO chunks(id, path, heading, text) VALUES (?, ?, ?, ?)",
                [(d.id, d.path, d.heading, d.text) for d in docs],
            )

    def search(self, query: str, k: int, paths: Sequence[str] | None = None) -> list[tuple[str, float]]:
        terms = keyword_terms(query)
        match = " OR ".join(f'"{t}"' for t in terms)
        if paths is None:
            sql = (
                "SELECT c.id, -f.score FROM (SELECT rowid, bm25(chunks_fts) AS score FROM chunks_fts "
                "WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?) AS f JOIN chunks c ON c.rowid = f.rowid "
                "ORDER BY f.score"
            )
            return [(r[0], float(r[1])) for r in self.db.execute(sql, (match, k))]
        sql = (
            "SELECT c.id, -bm25(chunks_fts) FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid "
            "WHERE chunks_fts MATCH ? AND c.path IN (SELECT value FROM json_each(?)) ORDER BY bm25(chunks_fts) LIMIT ?"
        )
        return [(r[0], float(r[1])) for r in self.db.execute(sql, (match, json.dumps(list(paths)), k))]

    def size(self) -> int:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self.path.stat().st_size


class Tantivy:
    def __init__(self, folder: Path) -> None:
        self.folder = folder / "tantivy"
        self.index = KeywordIndex(self.folder)

    def add(self, docs: Sequence[Doc]) -> None:
        self.index.add(docs)

    def search(self, query: str, k: int, paths: Sequence[str] | None = None) -> list[tuple[str, float]]:
        return self.index.search(query, k, paths=paths)

    def size(self) -> int:
        self.index.release()
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


class Bm25s:
    """bm25s: sparse matrix scoring in numpy.  In memory, rebuilt whole on every change."""

    def __init__(self, folder: Path) -> None:
        import bm25s
        import Stemmer

        self.folder = folder / "bm25s"
        self.bm25s = bm25s
        self.stemmer = Stemmer.Stemmer("english")
        self.docs: list[Doc] = []

    def add(self, docs: Sequence[Doc]) -> None:
        # No incremental add: everything is re-tokenised and re-indexed.
        self.docs.extend(docs)
        tokens = self.bm25s.tokenize(
            [d.text for d in self.docs], stopwords=None, stemmer=self.stemmer, show_progress=False
        )
        self.model = self.bm25s.BM25(k1=1.2, b=0.75)
        self.model.index(tokens, show_progress=False)
        self.paths = np.array([d.path for d in self.docs])

    def search(self, query: str, k: int, paths: Sequence[str] | None = None) -> list[tuple[str, float]]:
        terms = " ".join(keyword_terms(query))
        q = self.bm25s.tokenize([terms], stopwords=None, stemmer=self.stemmer, show_progress=False)
        mask = None
        if paths is not None:
            mask = np.isin(self.paths, list(paths)).astype(np.float32)
        k = min(k, len(self.docs))
        docs, scores = self.model.retrieve(q, k=k, weight_mask=mask, show_progress=False, n_threads=1)
        return [(self.docs[int(i)].id, float(s)) for i, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def size(self) -> int:
        self.model.save(str(self.folder))
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


ENGINES: dict[str, type[Fts5 | Tantivy | Bm25s]] = {"fts5": Fts5, "tantivy": Tantivy, "bm25s": Bm25s}


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def quality(data: Path, engines: list[str]) -> None:
    dataset = load_beir(data, split="test")
    docs = [
        Doc(id=d.id, path=d.id, text=f"{d.title}\n\n{d.text}" if d.title else d.text) for d in dataset.corpus.values()
    ]
    print(f"\nSciFact test ({len(dataset.queries)} queries, {len(docs)} abstracts), nDCG@10")
    for name in engines:
        with tempfile.TemporaryDirectory() as tmp:
            engine = ENGINES[name](Path(tmp))
            engine.add(docs)
            run = {q: [i for i, _ in engine.search(text, 100)] for q, text in dataset.queries.items()}
            metrics = evaluate(dataset.qrels, run)
            print(f"  {name:<8} nDCG@10 {metrics['ndcg@10']:.3f}  R@100 {metrics['recall@100']:.3f}")


def speed(size: int, n_queries: int, engines: list[str]) -> None:
    corpus = Corpus(size)
    queries = corpus.queries(n_queries)
    files = sorted({corpus.file_of(i) for i in range(size)})
    allowed = files[:: max(1, len(files) // max(1, len(files) // 20))]
    print(f"\n{size:,} chunks ({len(files):,} files), {n_queries} queries, top 100; load {os.getloadavg()[0]:.1f}")
    print(f"  {'engine':<8}{'build s':>9}{'MB':>8}{'p50 ms':>8}{'p95 ms':>8}{'filtered p50':>14}{'p95':>7}")
    for name in engines:
        tmp = Path(tempfile.mkdtemp(prefix=f"kw-{name}-"))
        try:
            engine = ENGINES[name](tmp)
            started = time.perf_counter()
            if name == "bm25s":
                # bm25s has no incremental add; give it everything at once (its best case).
                everything: list[Doc] = []
                for start, texts, _ in corpus.batches():
                    everything += [Doc(f"c{start + j}", corpus.file_of(start + j), t) for j, t in enumerate(texts)]
                generated = time.perf_counter()
                engine.add(everything)
                del everything
                build = time.perf_counter() - generated
            else:
                build = 0.0
                for start, texts, _ in corpus.batches():
                    docs = [Doc(f"c{start + j}", corpus.file_of(start + j), t) for j, t in enumerate(texts)]
                    t0 = time.perf_counter()
                    engine.add(docs)
                    build += time.perf_counter() - t0
            del started
            size_mb = engine.size() / 1e6
            for q in queries[:10]:  # warm caches
                engine.search(q, 100)
            plain = []
            for q in queries:
                t0 = time.perf_counter()
                engine.search(q, 100)
                plain.append((time.perf_counter() - t0) * 1000)
            filtered = []
            for q in queries:
                t0 = time.perf_counter()
                engine.search(q, 100, allowed)
                filtered.append((time.perf_counter() - t0) * 1000)
            p50, p95 = percentiles(plain)
            f50, f95 = percentiles(filtered)
            print(f"  {name:<8}{build:>9.1f}{size_mb:>8.0f}{p50:>8.1f}{p95:>8.1f}{f50:>14.1f}{f95:>7.1f}", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--engines", default="fts5,tantivy,bm25s")
    parser.add_argument("--scifact", type=Path, default=SHARED / "beir-scifact")
    parser.add_argument("--no-quality", action="store_true")
    args = parser.parse_args()
    engines = args.engines.split(",")
    if not args.no_quality:
        quality(args.scifact, engines)
    for size in (int(s) for s in args.sizes.split(",")):
        speed(size, args.queries, engines)


if __name__ == "__main__":
    main()
