"""Start a real ``rag serve`` process on a free loopback port, for API and browser tests.

    with rag_server(env) as server:
        httpx.get(server.url + "/api/v1/health")

The server is started with ``--port 0``; its first line of output is the URL, printed once
it accepts requests, so tests wait for that line instead of sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.launch import launch
from tests.sample_docs import write_sample_docs

FIXTURES = Path(__file__).parent / "fixtures"
PDF = FIXTURES / "pdf" / "google-doc_zen-of-python.pdf"

START_TIMEOUT = 120.0  # seconds; a loaded 2-core CI machine imports FastAPI slowly


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[str]
    key: str | None = None
    output: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=60.0, **options)


def serve_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a server on store ``home``: no keys or settings from the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_"))}
    env.update({"RAG_HOME": str(home), "RAG_CONFIG": os.devnull, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@contextmanager
def rag_server(env: Mapping[str, str], *args: str, cwd: Path | None = None) -> Iterator[RunningServer]:
    """``rag serve --port 0 ARGS`` until the block ends; its output is kept in ``.output``."""
    command = [sys.executable, "-m", "rag", "serve", "--port", "0", *args]
    ready = "rag serve: http"
    with launch(
        command, what="rag serve", ready=lambda line: line.startswith(ready), env=env, cwd=cwd, timeout=START_TIMEOUT
    ) as running:
        key = env.get("RAG_API_KEY")
        if "--api-key" in args:
            key = args[args.index("--api-key") + 1]
        yield RunningServer(running.ready_line.split()[2], running.process, key, running.output)


def write_docs(root: Path) -> Path:
    write_sample_docs(root)
    shutil.copy(PDF, root / "zen.pdf")
    return root


def rag_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rag", *args], env=env, capture_output=True, text=True, timeout=300)


@dataclass
class OfflineServer:
    server: RunningServer
    env: dict[str, str]
    docs: Path


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineServer]:
    """A server answering offline (extractive) from ``write_docs``, indexed by ``rag ingest``; one per module."""
    base = tmp_path_factory.mktemp("serve")
    env = serve_env(base / "home", RAG_LLM="none")
    docs = write_docs(base / "docs")
    ingest = rag_cli(env, "ingest", str(docs))
    assert ingest.returncode == 0, ingest.stderr
    with rag_server(env) as server:
        yield OfflineServer(server, env, docs)


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) for each event of a stream; ("ping", None) for heartbeat comments."""
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith(":"):
            yield "ping", None
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""
