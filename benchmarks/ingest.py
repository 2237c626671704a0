"""Ingest throughput against its floor: the embedding model alone.

Writes the BEIR SciFact corpus (5,183 abstracts) as one text file per document, then, each
in a fresh process so that peak RSS is its own:

1. floor: chunk every file and time only the embedding model on those chunks;
2. ingest: `Engine.ingest` into an empty store (empty embedding cache);
3. re-run: the same ingest again, with nothing changed.

Usage: python benchmarks/ingest.py [--corpus PATH] [--limit N] [--json]
Targets (2 cores): total <= 1.25 x floor, peak RSS < 1.5 GB, unchanged re-run < 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir-scifact" / "corpus.jsonl"


def write_corpus(corpus: Path, folder: Path, limit: int | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            text = f"{doc.get('title', '').strip()}\n\n{doc['text'].strip()}\n"
            (folder / f"{doc['_id']}.txt").write_text(text, encoding="utf-8")
            count += 1
            if limit and count >= limit:
                break
    return count


def phase_floor(folder: str) -> dict[str, float]:
    from rag.embed.base import embed_many
    from rag.embed.factory import create
    from rag.ingest.chunk import chunk_document
    from rag.ingest.loaders import load
    from rag.settings import Settings

    settings = Settings.load()
    embedder = create("local", settings)
    chunk_tokens = min(settings.ingest.chunk_tokens or embedder.default_chunk_tokens, embedder.max_input_tokens)
    texts, tokens = [], []
    for path in sorted(Path(folder).iterdir()):
        for draft in chunk_document(
            load(path),
            embedder.count_tokens,
            max_tokens=embedder.max_input_tokens,
            target_tokens=chunk_tokens,
            overlap=settings.ingest.chunk_overlap,
        ):
            texts.append(draft.text)
            tokens.append(draft.tokens)
    embedder.embed_batch(["warm up"])  # model load is not embedding time
    started = time.perf_counter()
    embed_many(embedder, texts, token_counts=tokens)
    return {"seconds": time.perf_counter() - started, "chunks": len(texts), "tokens": sum(tokens)}


def phase_ingest(folder: str) -> dict[str, float]:
    from rag import Engine

    engine = Engine(index="bench")
    engine.embedder().embed_batch(["warm up"])
    started = time.perf_counter()
    report = engine.ingest([folder])
    seconds = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"{len(report.failed)} files failed: {report.failed[:3]}")
    return {
        "seconds": seconds,
        "files": report.added + report.updated + report.unchanged,
        "chunks": report.chunks_total,
        "embedded": report.embedded,
    }


def run_phase(name: str, folder: Path, env: dict[str, str]) -> dict[str, float]:
    """Run a phase in a child process, which reports its own peak RSS."""
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, __file__, "--phase", name, str(folder)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="only the first N documents")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("folder", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        fn = {"floor": phase_floor, "ingest": phase_ingest}[args.phase]
        result = fn(args.folder)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        folder = Path(tmp) / "scifact"
        n = write_corpus(args.corpus, folder, args.limit)
        env = {**os.environ, "RAG_HOME": str(Path(tmp) / "home")}
        env.pop("OPENAI_API_KEY", None)
        env.pop("OPENAI_BASE_URL", None)
        floor = run_phase("floor", folder, env)
        ingest = run_phase("ingest", folder, env)
        rerun = run_phase("ingest", folder, env)

    rows = [
        ("documents", f"{n:,}"),
        ("chunks", f"{int(ingest['chunks']):,}"),
        ("model-only time (floor)", f"{floor['seconds']:.1f} s  ({floor['tokens'] / floor['seconds']:,.0f} tokens/s)"),
        ("ingest time", f"{ingest['seconds']:.1f} s"),
        ("ingest / floor", f"{ingest['seconds'] / floor['seconds']:.2f}x  (target <= 1.25x)"),
        ("files/s", f"{ingest['files'] / ingest['seconds']:,.1f}"),
        ("chunks/s", f"{ingest['chunks'] / ingest['seconds']:,.1f}"),
        ("peak RSS, ingest", f"{ingest['peak_rss_mb']:,.0f} MB  (target < 1,536 MB)"),
        ("peak RSS, floor", f"{floor['peak_rss_mb']:,.0f} MB"),
        (
            "unchanged re-run",
            f"{rerun['seconds']:.2f} s in-process, {rerun['wall']:.1f} s with start-up  (target < 3 s)",
        ),
        ("re-run embedded", f"{int(rerun['embedded'])} chunks"),
    ]
    if args.json:
        print(json.dumps({"floor": floor, "ingest": ingest, "rerun": rerun, "documents": n}, indent=2))
        return
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value\n{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
