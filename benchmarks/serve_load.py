"""Load on a real ``rag serve``: latency and throughput, readers during an ingest, memory, and
exactly-once under a mixed load.

1. Latency: p50/p95 and requests/s for ``search`` and offline ``ask`` with 1, 8 and 32
   concurrent clients, on an index of SciFact abstracts.  The floor is ``Engine.search``
   in-process (no HTTP), on the same index, in this process.
2. Readers during a writer: search p95 with 8 clients while more SciFact abstracts are
   uploaded to the same index (an ingest job in the server), against p95 idle.
3. Memory: the server's peak RSS with three indexes open, and how many embedding models
   it loaded (one).
4. Mixed load: uploads (new files and new versions), deletes and questions at once; then
   every HTTP status, every job, and the index itself are checked: the documents are
   exactly the uploaded minus the deleted, and Chroma holds exactly the manifest's chunks
   (nothing lost, nothing twice).

Usage: python benchmarks/serve_load.py [--base 500] [--during 300] [--json]
Reports ``uptime`` with the numbers: the machine is shared, so compare ratios in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.serve_process import RunningServer, rag_server, serve_env, sse_events

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir-scifact"


def write_docs(corpus: Path, folder: Path, start: int, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with corpus.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines):
            if n < start:
                continue
            if len(paths) >= count:
                break
            doc = json.loads(line)
            path = folder / f"{doc['_id']}.txt"
            path.write_text(f"{doc.get('title', '').strip()}\n\n{doc['text'].strip()}\n", encoding="utf-8")
            paths.append(path)
    return paths


def queries(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line, _ in zip(lines, range(n), strict=False)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], seconds: float, engine: list[float] | None = None) -> dict[str, float]:
    result = {
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "max_ms": round(1000 * max(latencies), 1),
        "req_s": round(len(latencies) / seconds, 1),
        "n": len(latencies),
    }
    if engine:
        result["engine_p50_ms"] = round(statistics.median(engine), 1)
    return result


def load(
    server: RunningServer,
    clients: int,
    total: int,
    request: Callable[[httpx.Client, int], httpx.Response],
    until: Callable[[], bool] | None = None,
) -> tuple[dict[str, float], int]:
    """``total`` requests from ``clients`` threads (or until ``until()``); (summary, errors)."""
    latencies: list[float] = []
    engine: list[float] = []  # the server's own time for the request (Server-Timing), in ms
    errors = 0
    lock = threading.Lock()
    counter = iter(range(10**9))

    def client_loop() -> None:
        nonlocal errors
        with server.client() as http:
            while True:
                with lock:
                    n = next(counter)
                if (until is None and n >= total) or (until is not None and until()):
                    return
                started = time.perf_counter()
                response = request(http, n)
                elapsed = time.perf_counter() - started
                timing = response.headers.get("server-timing", "")
                with lock:
                    latencies.append(elapsed)
                    if "dur=" in timing:
                        engine.append(float(timing.split("dur=")[1]))
                    if response.status_code >= 400:
                        errors += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()
    return summary(latencies, time.perf_counter() - started, engine), errors


def upload(http: httpx.Client, index: str, files: list[tuple[str, bytes]], *, replace: bool = False) -> str:
    # Without ``replace``, a new version under a taken name is kept beside it as ``name (2)``.
    data = {"replace": "true"} if replace else None
    response = http.post("/api/v1/documents", params={"index": index}, files=[("files", f) for f in files], data=data)
    response.raise_for_status()
    return str(response.json()["job"])


def wait_job(http: httpx.Client, job: str) -> dict[str, Any]:
    with http.stream("GET", f"/api/v1/jobs/{job}/events") as response:
        for name, data in sse_events(response):
            if name == "done":
                return dict(data)
    raise RuntimeError(f"job {job} ended without a done event")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_floor(home: Path, index: str, texts: list[str], n: int) -> dict[str, float]:
    """``Engine.search`` without HTTP, same index and queries: the floor for search latency."""
    from rag.engine import Engine
    from rag.settings import Settings

    settings = Settings.load({"store.home": home}, environ={}, config_file=Path(os.devnull), dotenv=None)
    with Engine(index=index, settings=settings) as engine:
        engine.search(texts[0])
        latencies = []
        started = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            engine.search(texts[i % len(texts)])
            latencies.append(time.perf_counter() - t)
        return summary(latencies, time.perf_counter() - started)


def mixed_load(server: RunningServer, folder: Path, questions: list[str]) -> dict[str, Any]:
    """Uploads, new versions, deletes and questions at once; then check the index is exact.

    Two uploaders send disjoint halves of the files in batches (each a job); the second then
    sends new versions of some of its files.  A deleter removes files of the first half once
    their job is done, and an asker asks throughout.  A name is in ``expected`` only after its
    job finished, so the index must end up holding exactly ``expected``.
    """
    index, rng = "mixed", random.Random(7)
    errors: list[str] = []
    expected: dict[str, bytes] = {}
    deletable: list[str] = []
    deleted: set[str] = set()
    lock = threading.Lock()
    first, second = (sorted(folder.iterdir())[:60][i::2] for i in (0, 1))
    uploads_done = threading.Event()

    def send(http: httpx.Client, batch: list[tuple[str, bytes]], *, may_delete: bool, replace: bool = False) -> None:
        job = upload(http, index, batch, replace=replace)
        done = wait_job(http, job)
        if done["state"] != "done":
            errors.append(f"job {job}: {done}")
        with lock:
            expected.update(batch)
            if may_delete:
                deletable.extend(name for name, _ in batch)

    def uploader(part: list[Path], *, may_delete: bool, revise: bool) -> None:
        with server.client() as http:
            for i in range(0, len(part), 5):
                send(http, [(p.name, p.read_bytes()) for p in part[i : i + 5]], may_delete=may_delete)
            if revise:
                for path in part[:10]:
                    revised = path.read_bytes() + f"\nRevised {rng.random()}\n".encode()
                    send(http, [(path.name, revised)], may_delete=False, replace=True)

    def deleter() -> None:
        with server.client() as http:
            while len(deleted) < 10 and not (uploads_done.is_set() and not deletable):
                with lock:
                    victim = deletable.pop(rng.randrange(len(deletable))) if deletable else None
                if victim is None:
                    uploads_done.wait(0.05)
                    continue
                listed = http.get("/api/v1/documents", params={"index": index}).json()["documents"]
                doc = next((d for d in listed if d["name"] == victim), None)
                if doc is None:
                    errors.append(f"{victim}: stored by its job but not listed")
                    continue
                response = http.delete(f"/api/v1/documents/{doc['id']}", params={"index": index})
                if response.status_code != 204:
                    errors.append(f"delete {victim}: {response.status_code} {response.text}")
                with lock:
                    expected.pop(victim, None)
                    deleted.add(victim)

    def asker() -> None:
        with server.client() as http:
            for q in questions[:20]:
                response = http.post("/api/v1/ask", json={"question": q, "index": index, "llm": "none"})
                if response.status_code not in (200, 404):  # 404 until the first upload made the index
                    errors.append(f"ask: {response.status_code} {response.text}")

    with ThreadPoolExecutor(4) as pool:
        writers = [
            pool.submit(uploader, first, may_delete=True, revise=False),
            pool.submit(uploader, second, may_delete=False, revise=True),
        ]
        others = [pool.submit(deleter), pool.submit(asker)]
        for future in writers:
            future.result()
        uploads_done.set()
        for future in others:
            future.result()
    with server.client() as http:
        listed = {d["name"]: d for d in http.get("/api/v1/documents", params={"index": index}).json()["documents"]}
        # Every kept file holds its latest version: re-sending it changes nothing (exactly once).
        again = wait_job(http, upload(http, index, sorted(expected.items())))
    unchanged = sum(1 for f in again["files"] if f["state"] == "unchanged")
    return {
        "errors": errors,
        "expected": expected,
        "listed": listed,
        "deleted": len(deleted),
        "resent_unchanged": unchanged,
    }


def chroma_check(home: Path, index: str) -> dict[str, int]:
    """Chroma's ids against the manifest's live chunks, read from the store after the server stopped."""
    from rag.engine import Engine
    from rag.settings import Settings

    settings = Settings.load({"store.home": home}, environ={}, config_file=Path(os.devnull), dotenv=None)
    with Engine(index=index, settings=settings) as engine:
        idx = engine.open_index()
        live, in_chroma = idx.live_ids(), idx.vector_ids()
        # A file's chunk at one position must exist once: two would mean a version stored twice.
        places = [(c.path, c.position) for batch in idx.iter_chunks() for c in batch]
        return {
            "duplicates": len(places) - len(set(places)),
            "manifest_chunks": len(live),
            "chroma_chunks": len(in_chroma),
            "lost": len(live - in_chroma),
            "orphans": len(in_chroma - live),
            "file_chunks": sum(d.chunks for d in engine.documents()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--base", type=int, default=500, help="abstracts in the index under load")
    parser.add_argument("--during", type=int, default=300, help="abstracts uploaded during the reader load")
    parser.add_argument("--requests", type=int, default=240, help="search requests per concurrency level")
    parser.add_argument("--asks", type=int, default=64, help="ask requests per concurrency level")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {"uptime_before": os.getloadavg()}
    texts = queries(args.data / "queries.jsonl", 1000)
    with tempfile.TemporaryDirectory(prefix="rag-serve-load-") as tmp:
        base = Path(tmp)
        home = base / "home"
        env = serve_env(home, RAG_LLM="none")
        write_docs(args.data / "corpus.jsonl", base / "scifact", 0, args.base)
        during = write_docs(args.data / "corpus.jsonl", base / "during", args.base, args.during)
        write_docs(args.data / "corpus.jsonl", base / "mixed", args.base + args.during, 60)
        started = time.perf_counter()
        for index, folder in (("scifact", base / "scifact"), ("small-a", base / "mixed"), ("small-b", base / "mixed")):
            command = [sys.executable, "-m", "rag", "ingest", str(folder), "--index", index]
            subprocess.run(command, env=env, check=True, capture_output=True)
        results["setup_s"] = round(time.perf_counter() - started, 1)
        results["floor_search"] = in_process_floor(home, "scifact", texts, 100)

        with rag_server(env) as server, server.client() as http:
            offset = 0  # each level asks new questions: the extractive answerer caches sentence vectors

            def search(client: httpx.Client, n: int) -> httpx.Response:
                query = texts[(offset + n) % len(texts)]
                return client.post("/api/v1/search", json={"query": query, "index": "scifact"})

            def ask(client: httpx.Client, n: int) -> httpx.Response:
                question = texts[(offset + n) % len(texts)]
                return client.post("/api/v1/ask", json={"question": question, "index": "scifact"})

            search(http, 0), ask(http, 0)  # warm: model loaded, answerer built
            levels: dict[str, Any] = {}
            errors = 0
            for clients in (1, 8, 32):
                offset += args.asks
                levels[f"search_{clients}"], e1 = load(server, clients, args.requests, search)
                levels[f"ask_{clients}"], e2 = load(server, clients, args.asks, ask)
                errors += e1 + e2
            results["levels"], results["load_errors"] = levels, errors

            # Readers while the same index is written: search at 8 clients until the upload's job ends.
            files = [(p.name, p.read_bytes()) for p in during]
            job_started = time.perf_counter()
            jobs = [upload(http, "scifact", files[i : i + 100]) for i in range(0, len(files), 100)]
            finished = threading.Event()

            def watch() -> None:
                with server.client() as watcher:
                    for job in jobs:
                        results.setdefault("during_jobs", []).append(wait_job(watcher, job)["state"])
                results["ingest_s"] = round(time.perf_counter() - job_started, 1)
                finished.set()

            threading.Thread(target=watch, daemon=True).start()
            results["during"], results["during_errors"] = load(server, 8, 0, search, until=finished.is_set)
            finished.wait()

            for index in ("scifact", "small-a", "small-b"):
                http.post("/api/v1/search", json={"query": "cancer", "index": index}).raise_for_status()
            status = http.get("/api/v1/status").json()
            results["models_loaded"] = status["server"]["models_loaded"]
            results["peak_rss_mb"] = round(peak_rss_mb(server.process.pid), 1)

            mixed_result = mixed_load(server, base / "mixed", texts)
        consistency = chroma_check(home, "mixed")
        expected, listed = mixed_result["expected"], mixed_result["listed"]
        results["mixed"] = {
            "errors": mixed_result["errors"],
            "documents_expected": len(expected),
            "documents_listed": len(listed),
            "missing": sorted(set(expected) - set(listed)),
            "unexpected": sorted(set(listed) - set(expected)),
            "deleted": mixed_result["deleted"],
            "resent_unchanged": mixed_result["resent_unchanged"],
            **consistency,
        }
    results["uptime_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    report(results)


def report(r: dict[str, Any]) -> None:
    print(f"load average before {r['uptime_before'][0]:.1f}, after {r['uptime_after'][0]:.1f} (2 cores, shared)")
    floor = r["floor_search"]
    print(f"\nfloor: Engine.search in-process p50 {floor['p50_ms']} ms, p95 {floor['p95_ms']} ms\n")
    print("| request | clients | p50 ms | p95 ms | req/s | engine p50 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, row in r["levels"].items():
        what, clients = key.split("_")
        engine = row.get("engine_p50_ms", "–")
        print(f"| {what} | {clients} | {row['p50_ms']} | {row['p95_ms']} | {row['req_s']} | {engine} |")
    idle, during = r["levels"]["search_8"], r["during"]
    print(
        f"\nsearch, 8 clients, during an upload of {len(r.get('during_jobs', []))} job(s) "
        f"({r.get('ingest_s')} s): p95 {during['p95_ms']} ms vs {idle['p95_ms']} ms idle "
        f"({during['p95_ms'] / idle['p95_ms']:.2f}x), p50 {during['p50_ms']} ms, max {during['max_ms']} ms "
        f"(idle max {idle['max_ms']} ms), {during['n']} requests, "
        f"jobs {r.get('during_jobs')}"
    )
    print(f"errors under load: {r['load_errors']} + {r['during_errors']} during ingest")
    print(f"peak RSS with three indexes open: {r['peak_rss_mb']} MB; embedding models loaded: {r['models_loaded']}")
    m = r["mixed"]
    print(
        f"mixed load: {len(m['errors'])} errors; documents {m['documents_listed']} listed / "
        f"{m['documents_expected']} expected (missing {m['missing']}, unexpected {m['unexpected']}, "
        f"{m['deleted']} deleted; re-sent {m['resent_unchanged']} unchanged); "
        f"chunks: manifest {m['manifest_chunks']}, Chroma {m['chroma_chunks']}, "
        f"lost {m['lost']}, orphans {m['orphans']}, duplicates {m['duplicates']}, per-file sum {m['file_chunks']}"
    )
    for line in m["errors"][:10]:
        print("  ", line)


if __name__ == "__main__":
    main()
