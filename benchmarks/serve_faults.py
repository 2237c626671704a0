"""Faults on a shared ``RAG_HOME``: a server killed again and again while others write.

One server (A) takes uploads (Unicode names, some large files) while a second server (B)
takes uploads too, a CLI ``rag ingest`` re-indexes a growing folder, and clients search and
ask both servers throughout.  A is SIGKILLed at ``--kills`` random points and restarted
each time.  Then everything stops, one server starts to settle what is left, and the store
is checked.  Each of these should be 0:

- client errors outside restarts: failed requests to a server that was not being killed
  (any non-200 answer, or a refused connection to B);
- searches short of k: a search with k=5 that returned fewer (the index always holds
  far more than five matching chunks);
- orphan vectors: ids in Chroma or the keyword index that no live chunk has;
- partial files marked complete: a file whose live chunks are not positions 0..n-1 of
  its recorded count, or whose recorded hash is not the file's;
- uploads lost: files of a 202 answer that are neither searchable nor reported failed;
- unlisted uploads: files under ``uploads/`` the index does not list, and staged leftovers.

Usage: python benchmarks/serve_faults.py [--kills 20] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.serve_process import RunningServer, rag_server, serve_env, write_docs

K = 5
UNICODE = ["отчёт", "договор", "Übersicht", "naïve-café", "報告書", "μελέτη"]


def paragraph_doc(tag: str, paragraphs: int) -> bytes:
    """A Markdown file whose every paragraph names ``tag`` (its marker for searches)."""
    return "\n\n".join(
        f"## Part {i}\n\nSurvey {tag} section {i} recorded {i * 3} lapwings near sluice {i % 17}."
        for i in range(paragraphs)
    ).encode()


@dataclass
class Upload:
    job: str
    server: str
    names: list[str]
    markers: dict[str, str]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    errors_outside_restarts: list[str] = field(default_factory=list)
    errors_during_restarts: int = 0
    short_searches: int = 0
    searches: int = 0
    uploads: list[Upload] = field(default_factory=list)
    refused_uploads: int = 0
    cli_runs: int = 0
    cli_failures: list[str] = field(default_factory=list)


class Killable:
    """Server A: its current URL, and when it was down (killed until restarted)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.server: RunningServer | None = None
        self.outages: list[tuple[float, float]] = []
        self.down_at: float | None = None
        self._stack = ExitStack()
        self.start()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self.server = self._stack.enter_context(rag_server(self.env))

    def kill_and_restart(self) -> None:
        assert self.server is not None
        self.down_at = time.monotonic()
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()
        self.start()
        self.outages.append((self.down_at, time.monotonic()))
        self.down_at = None

    def restarting(self, started: float, ended: float) -> bool:
        """Whether a request from ``started`` to ``ended`` overlapped a kill and restart."""
        outages = list(self.outages)
        if self.down_at is not None:
            outages.append((self.down_at, time.monotonic()))
        return any(down - 0.5 <= ended and started <= up + 0.5 for down, up in outages)

    def close(self) -> None:
        self._stack.close()


def client_loop(name: str, url_of: Any, killable: Killable | None, tally: Tally, stop: threading.Event) -> None:
    questions = ["When did the first public steam railway open?", "Which volcano is active in Sicily?"]
    rng = random.Random(name)
    while not stop.is_set():
        url = url_of()
        started = time.monotonic()
        ask = rng.random() < 0.3
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                if ask:
                    reply = client.post("/api/v1/ask", json={"question": rng.choice(questions)})
                else:
                    query = f"survey base{rng.randrange(4)} lapwings sluice"
                    reply = client.post(
                        "/api/v1/search",
                        json={"query": query, "k": K, "mode": rng.choice(["dense", "hybrid", "keyword"])},
                    )
            ok = reply.status_code == 200
            detail = f"{reply.status_code} {reply.text[:200]}"
            if ok and not ask:
                with tally.lock:
                    tally.searches += 1
                    tally.short_searches += len(reply.json()["results"]) < K
        except httpx.HTTPError as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        with tally.lock:
            tally.requests += 1
            if not ok:
                if killable is not None and killable.restarting(started, time.monotonic()):
                    tally.errors_during_restarts += 1
                else:
                    tally.errors_outside_restarts.append(f"{name}: {detail}")
        time.sleep(0.05 if ok else 0.5)


def upload_loop(
    name: str, url_of: Any, killable: Killable | None, tally: Tally, stop: threading.Event, seed: int
) -> None:
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        files: dict[str, bytes] = {}
        markers: dict[str, str] = {}
        for _ in range(rng.randint(1, 3)):
            tag = f"{name}x{n}x{len(files)}"
            stem = f"{rng.choice(UNICODE)}-{tag}"
            large = rng.random() < 0.15
            files[f"{stem}.md"] = paragraph_doc(tag, 1200 if large else rng.randint(3, 30))
            markers[f"{stem}.md"] = tag
        started = time.monotonic()
        try:
            with httpx.Client(base_url=url_of(), timeout=120) as client:
                reply = client.post("/api/v1/documents", files=[("files", (k, v)) for k, v in files.items()])
            if reply.status_code == 202:
                data = reply.json()
                names = [f["name"] for f in data["files"]]
                stored = dict(zip(names, markers.values(), strict=True))
                with tally.lock:
                    tally.uploads.append(Upload(data["job"], name, names, stored))
            else:
                with tally.lock:
                    tally.errors_outside_restarts.append(f"upload {name}: {reply.status_code} {reply.text[:200]}")
        except httpx.HTTPError as exc:
            with tally.lock:
                if killable is not None and killable.restarting(started, time.monotonic()):
                    tally.refused_uploads += 1  # never answered 202: not a lost upload
                else:
                    tally.errors_outside_restarts.append(f"upload {name}: {type(exc).__name__}: {exc}")
        time.sleep(rng.uniform(0.5, 2.0))


def cli_loop(env: dict[str, str], folder: Path, tally: Tally, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        (folder / f"cli-{n}.md").write_bytes(paragraph_doc(f"clix{n}", 20))
        done = subprocess.run(
            [sys.executable, "-m", "rag", "ingest", str(folder)], env=env, capture_output=True, text=True, timeout=600
        )
        with tally.lock:
            tally.cli_runs += 1
            if done.returncode != 0:
                tally.cli_failures.append(
                    done.stderr.strip().splitlines()[-1] if done.stderr.strip() else str(done.returncode)
                )
        time.sleep(0.5)


def job_state(server: RunningServer, job: str, deadline: float) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        while True:
            status: dict[str, Any] = client.get(f"/api/v1/jobs/{job}").json()
            if status.get("state") != "running" or time.monotonic() > deadline:
                return status
            time.sleep(0.5)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_store(home: Path) -> dict[str, int]:
    from rag import Engine

    engine = Engine(store=home)
    try:
        index = engine.open_index()
        live = index.live_ids()
        orphans = len(index.vector_ids() - live) + len(index.keyword_ids() - live)
        partial = 0
        for path, record in index.files().items():
            positions = [c.position for c in index.chunks_of(path)]
            whole = positions == list(range(record.chunk_count))
            same = not os.path.exists(path) or _sha256(Path(path)) == record.content_hash
            partial += not (whole and same)
        listed = {d.source for d in engine.documents()}
        uploads = home / "uploads" / "default"
        unlisted = (
            sum(1 for p in uploads.iterdir() if p.is_file() and str(p.resolve()) not in listed)
            if uploads.exists()
            else 0
        )
        incoming = uploads / ".incoming"
        unlisted += sum(1 for _ in incoming.rglob("*") if _.is_file()) if incoming.exists() else 0
        return {"orphans": orphans, "partial": partial, "unlisted": unlisted, "files": len(listed), "chunks": len(live)}
    finally:
        engine.close()


def run(kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="rag-faults-") as tmp:
        base = Path(tmp)
        # Writers wait for each other's turn rather than give up after 10 s: a CLI ingest
        # and two servers' upload queues take turns on one index all run long.
        env = serve_env(base / "home", RAG_LLM="none", RAG_LOCK_TIMEOUT="600")
        docs = write_docs(base / "docs")
        for i in range(4):  # plenty of chunks matching every search: never short of k
            (docs / f"base{i}.md").write_bytes(paragraph_doc(f"base{i}", 60))
        subprocess.run([sys.executable, "-m", "rag", "ingest", str(docs)], env=env, check=True, capture_output=True)
        cli_folder = base / "cli"
        cli_folder.mkdir()
        tally = Tally()
        stop = threading.Event()
        a = Killable(env)
        started = time.monotonic()
        with rag_server(env) as b:
            threads = [
                threading.Thread(target=client_loop, args=("A1", lambda: a.url, a, tally, stop)),
                threading.Thread(target=client_loop, args=("A2", lambda: a.url, a, tally, stop)),
                threading.Thread(target=client_loop, args=("B1", lambda: b.url, None, tally, stop)),
                threading.Thread(target=upload_loop, args=("A", lambda: a.url, a, tally, stop, seed)),
                threading.Thread(target=upload_loop, args=("B", lambda: b.url, None, tally, stop, seed + 1)),
                threading.Thread(target=cli_loop, args=(env, cli_folder, tally, stop)),
            ]
            for t in threads:
                t.start()
            for n in range(kills):
                time.sleep(rng.uniform(2.0, 8.0))
                a.kill_and_restart()
                print(f"kill {n + 1}/{kills}", file=sys.stderr, flush=True)
            time.sleep(3)
            stop.set()
            for t in threads:
                t.join()
        a.close()
        busy = time.monotonic() - started
        # Settle: one server starts alone, resumes what was cut short; every job is then asked for.
        lost = failed = searchable = 0
        with rag_server(env) as settler, httpx.Client(base_url=settler.url, timeout=60) as client:
            deadline = time.monotonic() + 900
            for upload in tally.uploads:
                status = job_state(settler, upload.job, deadline)
                states = {f["name"]: f["state"] for f in status.get("files", [])}
                for name in upload.names:
                    if states.get(name) == "failed":
                        failed += 1
                        continue
                    tag = upload.markers[name]
                    hits = client.post(
                        "/api/v1/search", json={"query": f"survey {tag} lapwings", "k": 3, "mode": "keyword"}
                    )
                    if any(Path(h["source"]).name == name for h in hits.json()["results"]):
                        searchable += 1
                    else:
                        lost += 1
        store = check_store(base / "home")
        return {
            "kills": kills,
            "seconds": round(busy, 1),
            "requests": tally.requests,
            "searches": tally.searches,
            "client_errors_outside_restarts": len(tally.errors_outside_restarts),
            "client_errors_during_restarts": tally.errors_during_restarts,
            "searches_short_of_k": tally.short_searches,
            "orphan_vectors": store["orphans"],
            "partial_files_marked_complete": store["partial"],
            "uploads_202_files": sum(len(u.names) for u in tally.uploads),
            "uploads_searchable": searchable,
            "uploads_reported_failed": failed,
            "uploads_lost": lost,
            "uploads_unlisted_or_left_staged": store["unlisted"],
            "uploads_refused_by_a_kill": tally.refused_uploads,
            "cli_ingests": tally.cli_runs,
            "cli_failures": len(tally.cli_failures),
            "final_files": store["files"],
            "final_chunks": store["chunks"],
            "error_samples": tally.errors_outside_restarts[:5] + tally.cli_failures[:3],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of server A (the issue asks for 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.kills, args.seed)
    result["uptime"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
