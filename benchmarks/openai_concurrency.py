"""How much requests in flight speed up OpenAI embedding, against a fake server with fixed latency.

    python benchmarks/openai_concurrency.py [--chunks 2000] [--batch-size 25] [--latency 0.2]

Each request to the fake server (tests/openai_server.py) takes ``--latency`` seconds, like a
round trip to the real API, so the run measures what ``embed_many`` + ``OpenAIEmbedder``
make of that latency at 1, 4 and 16 requests in flight.  A small batch size makes many
requests; the client-side rate limiter is off so that only concurrency is measured.  The
server runs in its own process, so its work does not compete with the client for the GIL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.embed.base import embed_many
from rag.embed.openai import OpenAIEmbedder
from rag.settings import Settings
from tests.openai_server import openai_server

SENTENCE = (
    "retrieval augmented generation splits documents into chunks embeds each chunk and stores "
    "the vectors so that a question finds the passages that answer it with citations to pages"
)


def serve(conn: Connection, latency: float) -> None:
    """Child process: run the fake server; answer "stats" with (requests, max in flight)."""
    with openai_server(latency=latency) as server:
        conn.send((server.base_url, server.api_key))
        while conn.recv() == "stats":
            conn.send((len(server.requests), server.max_in_flight))
            server.max_in_flight = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=25, help="texts per request")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--levels", default="1,4,16", help="requests in flight to try")
    args = parser.parse_args()

    rng = random.Random(0)
    words = SENTENCE.split(" ")
    texts = [" ".join(rng.choices(words, k=rng.randint(60, 120))) for _ in range(args.chunks)]
    levels = [int(x) for x in args.levels.split(",")]

    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=serve, args=(child, args.latency), daemon=True)
    process.start()
    base_url, api_key = parent.recv()

    overrides = {
        "openai.base_url": base_url,
        "openai.api_key": api_key,
        "embedding.requests_per_minute": 0,
        "embedding.tokens_per_minute": 0,
    }
    settings = Settings.load(overrides, environ={}, config_file=Path(os.devnull), dotenv=None)

    warm = OpenAIEmbedder(settings, batch_size=args.batch_size)
    warm.embed_batch(texts[:2])  # import the SDK and load the tokenizer outside the timings
    warm.close()
    rows = []
    for level in levels:
        parent.send("stats")
        before, _ = parent.recv()
        embedder = OpenAIEmbedder(settings, batch_size=args.batch_size, concurrency=level)
        start = time.perf_counter()
        vectors = embed_many(embedder, texts)
        seconds = time.perf_counter() - start
        embedder.close()
        assert vectors.shape == (len(texts), embedder.dimension)
        parent.send("stats")
        after, seen = parent.recv()
        requests = after - before
        rows.append((level, seen, requests, seconds, len(texts) / seconds, requests / seconds))
    parent.send("stop")
    process.join(timeout=5)

    floor = rows[0][4]
    print(f"{args.chunks} chunks, {args.batch_size} per request, {args.latency * 1000:.0f} ms per request\n")
    print("| in flight | max seen by server | requests | seconds | chunks/s | requests/s | vs 1 in flight |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for level, seen, requests, seconds, chunks_s, requests_s in rows:
        print(
            f"| {level} | {seen} | {requests} | {seconds:.2f} | {chunks_s:.0f} | {requests_s:.1f} "
            f"| {chunks_s / floor:.2f}x |"
        )


if __name__ == "__main__":
    main()
