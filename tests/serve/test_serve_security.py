"""A server that other writers, hostile pages and planted links cannot turn against its user.

Each test is one of the reproductions of issue 23 (parts 3-5 and the smaller findings),
against a real ``rag serve`` process over HTTP; the browser ones are in
``test_serve_browser.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.openai_server import FakeOpenAI, openai_server
from tests.serve_process import RunningServer, rag_cli, rag_server, serve_env, sse_events, write_docs

pytestmark = pytest.mark.slow

SECRET = "The launch code of the walrus vault is 7741."
SWAPPED = "SWAPPED CONTENT that was never indexed."
KEY = "security-test-key-0123456789"


@dataclass
class Setup:
    server: RunningServer
    env: dict[str, str]
    base: Path
    docs: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A folder with a link out of it (to a secret), a link inside it, and a file edited later."""
    base = tmp_path_factory.mktemp("security")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    (outside / "other.txt").write_text(SWAPPED + "\n", encoding="utf-8")
    docs = write_docs(base / "docs")
    (docs / "passwd.txt").symlink_to(outside / "secret.txt")
    (docs / "sub" / "real.txt").write_text("Lighthouses guide ships along rocky coasts.\n", encoding="utf-8")
    (docs / "swap.txt").symlink_to(Path("sub") / "real.txt")
    (docs / "edit.txt").write_text("Otters hold hands while they sleep.\n", encoding="utf-8")
    env = serve_env(base / "home", RAG_LLM="none")
    ingest = rag_cli(env, "ingest", str(docs))
    assert ingest.returncode == 0, ingest.stderr
    assert "passwd.txt: link to outside the folder" in ingest.stderr
    with rag_server(env) as server:
        yield Setup(server, env, base, docs)


@pytest.fixture
def http(setup: Setup) -> Iterator[httpx.Client]:
    with setup.server.client() as client:
        yield client


def wait_for_job(http: httpx.Client, job: str, index: str | None = None) -> list[tuple[str, Any]]:
    with http.stream("GET", f"/api/v1/jobs/{job}/events") as response:
        return [(n, d) for n, d in sse_events(response) if n != "ping"]


def upload(http: httpx.Client, index: str, name: str, data: bytes, **form: str) -> dict[str, Any]:
    response = http.post("/api/v1/documents", params={"index": index}, files=[("files", (name, data))], data=form)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    body["events"] = wait_for_job(http, body["job"])
    return body


def documents(http: httpx.Client, index: str | None = None) -> dict[str, dict[str, Any]]:
    params = {"index": index} if index else {}
    return {d["name"]: d for d in http.get("/api/v1/documents", params=params).json()["documents"]}


# --- part 3: upload names ----------------------------------------------------------------


def test_unicode_names_are_kept_and_never_collide(http: httpx.Client, setup: Setup) -> None:
    report = upload(http, "names", "отчёт.md", "# Отчёт\n\nThe heron census counted 412 herons.\n".encode())
    contract = upload(http, "names", "договор.md", "# Договор\n\nThe ferry lease runs for nine years.\n".encode())
    assert [d["file"] for n, d in report["events"] if n == "stored"] == ["отчёт.md"]
    assert [d["file"] for n, d in contract["events"] if n == "stored"] == ["договор.md"]
    assert set(documents(http, "names")) == {"отчёт.md", "договор.md"}

    # A different file under a taken name gets a suffix: the first one is not destroyed.
    other = upload(http, "names", "отчёт.md", b"The kestrel survey found 19 nests.\n")
    assert other["files"] == [{"name": "отчёт (2).md", "state": "queued", "chunks": 0, "uploaded_as": "отчёт.md"}]
    assert [d["file"] for n, d in other["events"] if n == "stored"] == ["отчёт (2).md"]
    assert set(documents(http, "names")) == {"отчёт.md", "договор.md", "отчёт (2).md"}
    for query, name in [("heron census", "отчёт.md"), ("kestrel nests", "отчёт (2).md")]:
        hits = http.post("/api/v1/search", json={"query": query, "index": "names", "k": 1}).json()["results"]
        assert hits[0]["source"] == name

    # The same file again is the same document; a new version replaces it only when asked.
    again = upload(http, "names", "отчёт.md", "# Отчёт\n\nThe heron census counted 412 herons.\n".encode())
    assert [d["file"] for n, d in again["events"] if n == "unchanged"] == ["отчёт.md"]
    replaced = upload(http, "names", "отчёт.md", b"The heron census counted 530 herons.\n", replace="true")
    assert [d["file"] for n, d in replaced["events"] if n == "stored"] == ["отчёт.md"]
    assert set(documents(http, "names")) == {"отчёт.md", "договор.md", "отчёт (2).md"}
    hit = http.post("/api/v1/search", json={"query": "heron census", "index": "names", "k": 1}).json()["results"][0]
    assert "530" in hit["text"]


def test_refused_uploads_leave_no_staging_folders(http: httpx.Client, setup: Setup) -> None:
    refused = upload(http, "staging", "notes.xyz", b"whatever")
    assert refused["events"][-1][1]["state"] == "failed"
    incoming = Path(setup.env["RAG_HOME"]) / "uploads" / "staging" / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir()), list(incoming.iterdir())


# --- part 4: Host and origin -------------------------------------------------------------


def test_a_dns_rebinding_host_is_refused(setup: Setup) -> None:
    url = setup.server.url
    port = url.rsplit(":", 1)[1]
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io"):
        response = httpx.get(url + "/api/v1/documents", headers={"Host": host})
        assert response.status_code == 421, host
        assert "unknown Host" in response.json()["error"] and "--public-url" in response.json()["error"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert httpx.get(url + "/api/v1/documents", headers={"Host": host}).status_code == 200, host


def test_a_public_url_adds_its_host(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "home", RAG_LLM="none", RAG_PUBLIC_URL="https://rag.example.org")
    with rag_server(env) as server:
        assert httpx.get(server.url + "/api/v1/health", headers={"Host": "rag.example.org"}).status_code == 200
        assert httpx.get(server.url + "/api/v1/health", headers={"Host": "evil.example.org"}).status_code == 421
        # The public origin may write (its page is ours, behind a proxy).
        headers = {"Host": "rag.example.org", "Origin": "https://rag.example.org"}
        response = httpx.post(server.url + "/api/v1/sessions", json={"name": "s1"}, headers=headers)
        assert response.status_code == 404  # no index yet: past the origin check


def test_writes_from_another_origin_are_refused(http: httpx.Client, setup: Setup) -> None:
    files = [("files", ("planted.md", b"Planted text about the walrus vault."))]
    elsewhere = {"Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-site"}
    for headers in (elsewhere, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = http.post("/api/v1/documents", params={"index": "planted"}, files=files, headers=headers)
        assert response.status_code == 403, headers
        assert "cross" in response.json()["error"]
        assert http.delete("/api/v1/sessions/x", headers=headers).status_code == 403
    assert http.get("/api/v1/indexes").json()["indexes"] == http.get("/api/v1/indexes").json()["indexes"]
    assert "planted" not in [i["name"] for i in http.get("/api/v1/indexes").json()["indexes"]]
    # Reading is allowed from anywhere the browser lets it (it cannot read the answer without CORS).
    assert http.get("/api/v1/health", headers=elsewhere).status_code == 200
    # The page itself (same origin) and clients that are not browsers (no Origin) may write.
    own = {"Origin": setup.server.url, "Sec-Fetch-Site": "same-origin"}
    assert http.post("/api/v1/sessions", json={"name": "mine"}, headers=own).status_code == 201
    assert http.post("/api/v1/sessions", json={"name": "curl"}).status_code == 201


def test_no_page_may_frame_the_server(http: httpx.Client) -> None:
    for path in ("/", "/api/v1/health", "/docs"):
        response = http.get(path)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY", path


# --- part 5: links and what is served ----------------------------------------------------


def test_a_link_out_of_the_folder_is_neither_followed_nor_served(http: httpx.Client, setup: Setup) -> None:
    listed = documents(http)
    assert "passwd.txt" not in listed
    hits = http.post("/api/v1/search", json={"query": "walrus vault launch code", "k": 50}).json()["results"]
    assert all("7741" not in h["text"] for h in hits)

    # Asked for, the link is followed; but the file outside the folder is still not served.
    index = rag_cli(setup.env, "ingest", str(setup.docs), "--index", "followed", "--follow-links")
    assert index.returncode == 0, index.stderr
    followed = documents(http, "followed")["passwd.txt"]
    response = http.get(f"/api/v1/documents/{followed['id']}/file", params={"index": "followed"})
    assert response.status_code == 404 and "7741" not in response.text


def test_a_link_swapped_after_the_ingest_serves_what_was_indexed(http: httpx.Client, setup: Setup) -> None:
    swap = documents(http)["swap.txt"]
    assert http.get(f"/api/v1/documents/{swap['id']}/file").text.startswith("Lighthouses")
    link = setup.docs / "swap.txt"
    link.unlink()
    link.symlink_to(setup.base / "outside" / "other.txt")
    text = http.get(f"/api/v1/documents/{swap['id']}/text").json()["text"]
    assert text.startswith("Lighthouses") and "SWAPPED" not in text
    response = http.get(f"/api/v1/documents/{swap['id']}/file")
    assert response.status_code == 404 and "SWAPPED" not in response.text
    assert str(setup.base) not in response.text


def test_a_file_changed_since_the_ingest_is_409(http: httpx.Client, setup: Setup) -> None:
    edit = documents(http)["edit.txt"]
    assert http.get(f"/api/v1/documents/{edit['id']}/file").status_code == 200
    (setup.docs / "edit.txt").write_text("Otters were replaced by something else.\n", encoding="utf-8")
    response = http.get(f"/api/v1/documents/{edit['id']}/file")
    assert response.status_code == 409
    assert response.json()["error"] == "edit.txt changed since it was indexed: ingest it again to open it"
    assert http.get(f"/api/v1/documents/{edit['id']}/text").json()["text"].startswith("Otters hold hands")


# --- smaller things ----------------------------------------------------------------------


def test_a_huge_question_is_refused_naming_the_limit(http: httpx.Client, setup: Setup) -> None:
    question = "Which volcano is active? " + "pad " * 3000
    response = http.post("/api/v1/ask", json={"question": question})
    assert response.status_code == 422
    assert "8192" in response.json()["error"] and "pad pad" not in response.text
    chat = {"model": "rag", "messages": [{"role": "user", "content": question}]}
    response = http.post("/v1/chat/completions", json=chat)
    assert response.status_code == 422 and "8192" in response.text and "pad pad" not in response.text


def test_clients_never_see_server_paths(http: httpx.Client, setup: Setup) -> None:
    docs = documents(http)
    assert docs["trains.txt"]["source"] == "sub/trains.txt" and docs["volcanoes.txt"]["source"] == "volcanoes.txt"
    answer = http.post("/api/v1/ask", json={"question": "Which volcano in Sicily is very active?"}).json()
    hits = http.post("/api/v1/search", json={"query": "steam railway", "k": 5}).json()["results"]
    chat = {"model": "rag", "messages": [{"role": "user", "content": "Which volcano in Sicily is very active?"}]}
    completion = http.post("/v1/chat/completions", json=chat).json()
    assert answer["citations"] and hits and completion["citations"]
    for shown in (answer, hits, completion):
        text = str(shown)
        assert str(setup.base) not in text and os.path.realpath(setup.base) not in text
    assert "Sources:\n[1] volcanoes.txt" in completion["choices"][0]["message"]["content"]
    openapi = http.get("/openapi.json")
    assert openapi.status_code == 200 and str(setup.base) not in openapi.text


def test_weak_keys_are_refused(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "home")
    for args, extra in (
        (["--api-key", "short"], {}),
        (["--api-key", "                    "], {}),
        ([], {"RAG_API_KEY": "guessable"}),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "rag", "serve", "--port", "0", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, (args, extra, result.stderr)
        assert "API key too short: use at least 16 characters" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_key_file_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    env = serve_env(tmp_path / "home")
    with rag_server(env, "--api-key-file", str(key_file)) as server:
        assert httpx.get(server.url + "/api/v1/status").status_code == 401
        assert KEY not in "".join(server.output)
        response = httpx.get(server.url + "/api/v1/status", headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with openai_server() as server:
        yield server


def test_ctrl_c_while_an_answer_streams_stops_at_once(tmp_path: Path, fake: FakeOpenAI) -> None:
    env = serve_env(
        tmp_path / "home",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=fake.api_key or "",
        RAG_EMBEDDER="local",
        RAG_OPENAI_MAX_RETRIES="0",
    )
    assert rag_cli(env, "ingest", str(write_docs(tmp_path / "docs"))).returncode == 0
    fake.reply("Mount Etna erupts often [1]. " * 40)
    gate = fake.gate_stream(after_deltas=2)
    try:
        with rag_server(env) as server, server.client() as http:
            request = {"question": "Which volcano in Sicily is very active?"}
            with http.stream("POST", "/api/v1/ask", json=request, headers={"Accept": "text/event-stream"}) as stream:
                events = sse_events(stream)
                assert next(n for n, _ in events if n == "token") == "token"
                assert gate.wait_for(1)
                started = time.monotonic()
                server.process.send_signal(signal.SIGINT)
                rest = [(n, d) for n, d in events if n != "ping"]
                ended = time.monotonic() - started
                assert server.process.wait(timeout=30) in (0, 130)  # 130: stopped by SIGINT, as a shell expects
            output = "".join(server.output)
            # The stream ends at once (well inside uvicorn's 5 s grace period, even on a
            # loaded machine); the process then closes the store.  Before, uvicorn waited
            # out the grace period and then cancelled the stream with a traceback.
            assert ended < 4.5, f"the stream ended {ended:.1f} s after Ctrl-C"
            assert rest[-1] == ("error", {"message": "the server is shutting down: ask again when it is back"})
            assert "Traceback" not in output and "CancelledError" not in output, output
    finally:
        fake.open_gates()
