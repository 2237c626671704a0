"""The local model in fp32 and int8: speed against fp32 (measured alternately), agreement, quality.

    python benchmarks/embed_models.py [--docs 1000] [--rounds 4] [--quality] [--variants fp32,int8]

Speed: each round embeds the same texts with every variant, in turn (the order swaps every
round), so load on a shared machine hits all of them; wall-clock and process CPU time are
both summed.  Two samples: SciFact abstracts (title + abstract, ~300 word pieces, cut at
256) and short passages (their first sentences, ~30).  Query latency is ``embed_query``
on SciFact's test queries, alternated the same way.  ``--quality`` indexes SciFact and
SQuAD v2 dev part A through the real pipeline once per variant (vectors are cached under
RAG_HOME, per embedder) and scores dense and hybrid retrieval as ``rag eval`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from statistics import median

import numpy as np

from rag.embed.base import Vectors, embed_many
from rag.embed.local import NAMES, LocalEmbedder
from rag.embed.quantize import INT8_FLAGS, int8_flags

SHARED = Path(os.environ.get("RAG_SHARED_DATA", "/work/shared/data"))


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        model = "?"
    flags = ", ".join(int8_flags()) or f"none of {', '.join(INT8_FLAGS)}"
    return f"{model}; int8 dot products: {flags}; {len(os.sched_getaffinity(0))} cores"


def samples(docs: int) -> dict[str, list[str]]:
    corpus = [json.loads(line) for line in (SHARED / "beir-scifact" / "corpus.jsonl").open()]
    abstracts = [f"{d['title']} {d['text']}".strip() for d in corpus[:docs]]
    short = [d["text"].split(". ")[0] for d in corpus[docs : 3 * docs] if d["text"]]
    return {"abstracts": abstracts, "short passages": short}


def speed(models: dict[str, LocalEmbedder], texts: list[str], rounds: int) -> tuple[dict, dict, dict, int]:
    """Wall seconds, CPU seconds and vectors per variant, and the word pieces embedded per round."""
    counts = [min(n, LocalEmbedder.max_input_tokens) for n in next(iter(models.values())).count_tokens(texts)]
    wall = dict.fromkeys(models, 0.0)
    cpu_s = dict.fromkeys(models, 0.0)
    vectors: dict[str, Vectors] = {}
    names = list(models)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            vectors[name] = embed_many(models[name], texts, token_counts=counts)
            wall[name] += time.perf_counter() - start
            cpu_s[name] += time.process_time() - start_cpu
    return wall, cpu_s, vectors, sum(n + 2 for n in counts)


def query_latency(models: dict[str, LocalEmbedder], queries: list[str]) -> dict[str, float]:
    """Median ms per ``embed_query``, variants alternating query by query."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for i, query in enumerate(queries):
        for name in models if i % 2 == 0 else list(models)[::-1]:
            start = time.perf_counter()
            models[name].embed_query(query)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: median(t) for name, t in times.items()}


def quality(name: str) -> dict[str, float]:
    from rag.eval.beir import load_beir, load_squad
    from rag.eval.runner import eval_index, score
    from rag.settings import Settings

    settings = Settings.load()
    out: dict[str, float] = {}
    scifact = load_beir(SHARED / "beir-scifact")
    with eval_index(scifact, settings, embedder=name) as target:
        for mode in ("dense", "hybrid"):
            metrics = score(target, scifact, mode).metrics
            out[f"scifact {mode} nDCG@10"], out[f"scifact {mode} R@100"] = metrics["ndcg@10"], metrics["recall@100"]
    squad = load_squad(SHARED / "squad-v2-dev-part-a" / "dev-v2.0.json")
    with eval_index(squad, settings, embedder=name) as target:
        out["squad hybrid nDCG@10"] = score(target, squad, "hybrid").metrics["ndcg@10"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="abstracts per round (and twice as many short passages)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="runs at once, one thread each [default: one per core]")
    parser.add_argument("--variants", default="fp32,int8")
    parser.add_argument("--quality", action="store_true", help="also SciFact and SQuAD retrieval per variant")
    args = parser.parse_args()

    variants = args.variants.split(",")
    models = {v: LocalEmbedder(threads=args.threads, precision=v) for v in variants}
    for model in models.values():
        model.embed_query("warm up")  # load outside the timings
    print(f"CPU: {cpu()}; load average {os.getloadavg()[0]:.1f}")
    head = ("sample", "variant", "tokens/s", "x fp32", "tok/CPU-s", "x fp32", "cos min", "cos mean")
    print("{:<15} {:<8} {:>9} {:>7} {:>10} {:>7} {:>8} {:>9}".format(*head))
    for label, texts in samples(args.docs).items():
        wall, cpu_s, vectors, tokens = speed(models, texts, args.rounds)
        for v in variants:
            cos = np.sum(vectors[v] * vectors[variants[0]], axis=1)
            print(
                f"{label:<15} {v:<8} {tokens * args.rounds / wall[v]:>9.0f} {wall[variants[0]] / wall[v]:>6.2f}x "
                f"{tokens * args.rounds / cpu_s[v]:>10.0f} {cpu_s[variants[0]] / cpu_s[v]:>6.2f}x "
                f"{cos.min():>8.4f} {cos.mean():>9.4f}"
            )
    queries = [json.loads(line)["text"] for line in (SHARED / "beir-scifact" / "queries.jsonl").open()][:300]
    latency = query_latency(models, queries)
    print("query embedding p50: " + ", ".join(f"{v} {ms:.2f} ms" for v, ms in latency.items()))
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.quality:
        rows = {v: quality(NAMES[v]) for v in variants}
        keys = list(rows[variants[0]])
        print(f"\n{'variant':<8}" + "".join(f"{k:>24}" for k in keys))
        for v in variants:
            print(f"{v:<8}" + "".join(f"{rows[v][k]:>24.4f}" for k in keys))


if __name__ == "__main__":
    main()
