"""Bad input against a real ``rag serve``: each mistake gets a one-line JSON error with the
right status, and the server keeps serving afterwards.

The server here answers with an LLM (the fake OpenAI server), requires a key, accepts
small uploads only, and moderates questions (``RAG_MODERATION=on``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.openai_server import FakeOpenAI, openai_server
from tests.serve_process import RunningServer, rag_cli, rag_server, serve_env, sse_events, write_docs

pytestmark = pytest.mark.slow

KEY = "team-key-0123456789"
LONG_REPLY = "Mount Etna erupts often and mostly effusively [1]. " * 60


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with openai_server() as server:
        server.flag("grenade", "violence")
        yield server


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("serve-keyed")
    env = serve_env(
        base / "home",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=fake.api_key or "",
        RAG_EMBEDDER="local",
        RAG_OPENAI_MAX_RETRIES="0",
        RAG_MODERATION="on",
    )
    assert rag_cli(env, "ingest", str(write_docs(base / "docs"))).returncode == 0
    with rag_server(env, "--api-key", KEY, "--max-upload-mb", "0.05", "--heartbeat", "0.2") as server:
        yield server


@pytest.fixture
def http(keyed: RunningServer) -> Iterator[httpx.Client]:
    with keyed.client() as client:
        yield client
        # Whatever the test did, the server still answers.
        assert client.get("/api/v1/status").status_code == 200


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message and "Traceback" not in message
    return message


def test_a_missing_or_wrong_key_is_401(keyed: RunningServer, http: httpx.Client) -> None:
    with httpx.Client(base_url=keyed.url) as anonymous:
        assert "API key" in one_line_error(anonymous.get("/api/v1/status"), 401)
        wrong = anonymous.post("/api/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer nope"})
        one_line_error(wrong, 401)
        assert anonymous.get("/v1/models").status_code == 401
        # Health is public (load balancers), and so is the page.
        assert anonymous.get("/api/v1/health").status_code == 200
        assert anonymous.get("/").status_code != 401
    assert KEY not in "".join(keyed.output)


def test_an_unknown_index_is_404(http: httpx.Client) -> None:
    assert "no index 'nope'" in one_line_error(http.post("/api/v1/search", json={"query": "x", "index": "nope"}), 404)
    one_line_error(http.post("/api/v1/ask", json={"question": "x", "index": "nope"}), 404)
    one_line_error(http.get("/api/v1/documents", params={"index": "nope"}), 404)
    one_line_error(http.get("/api/v1/documents", params={"index": "../etc"}), 404)


@pytest.mark.parametrize(
    "doc_id",
    ["..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e", "0000000000000000", "..", "%2Fetc%2Fpasswd"],
)
def test_a_path_escape_on_a_document_file_is_404(http: httpx.Client, doc_id: str) -> None:
    response = http.get(f"/api/v1/documents/{doc_id}/file")
    assert response.status_code == 404
    assert b"root:" not in response.content


def test_malformed_json_is_422_with_a_message(http: httpx.Client) -> None:
    broken = http.post("/api/v1/search", content=b'{"query": "bees', headers={"Content-Type": "application/json"})
    assert "JSON" in one_line_error(broken, 422)
    assert "query" in one_line_error(http.post("/api/v1/search", json={"k": 3}), 422)
    assert "k" in one_line_error(http.post("/api/v1/search", json={"query": "bees", "k": 0}), 422)
    one_line_error(http.post("/api/v1/search", json={"query": "bees", "filters": {"pages": "x-y"}}), 422)


def test_an_oversized_upload_is_413(http: httpx.Client) -> None:
    big = b"Lorem ipsum dolor sit amet. " * 4000  # about 110 KB against a 50 KB limit
    response = http.post("/api/v1/documents", files=[("files", ("big.txt", big, "text/plain"))])
    assert "limit" in one_line_error(response, 413)


def test_a_client_that_leaves_mid_stream_stops_the_generation(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.reply(LONG_REPLY)
    fake.delta_delay, fake.latency = 0.05, 1.0
    try:
        request = {"question": "Which volcano in Sicily is very active?"}
        headers = {"Accept": "text/event-stream"}
        pings = 0
        with http.stream("POST", "/api/v1/ask", json=request, headers=headers) as response:
            for name, data in sse_events(response):
                if name == "ping":
                    pings += 1
                if name == "token":
                    assert "Etna" in data["text"] or data["text"]
                    break
        # Closing the response hung up on the server; it must stop reading from the model.
        chat = next(r for r in reversed(fake.requests) if r.path.endswith("/chat/completions"))
        deadline = time.monotonic() + 60
        while not chat.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chat.ended, "the model call never ended"
        total = len(range(0, len(LONG_REPLY), fake.delta_chars))
        assert chat.deltas_sent < total / 2
        assert pings >= 2, "heartbeats while the model had not answered yet"
    finally:
        fake.delta_delay, fake.latency = 0.0, 0.0


def test_a_provider_failure_is_an_error_event_not_a_dead_stream(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.error_next(500, path="/v1/chat/completions")
    request = {"question": "Which volcano in Sicily is very active?"}
    with http.stream("POST", "/api/v1/ask", json=request, headers={"Accept": "text/event-stream"}) as response:
        events = [e for e in sse_events(response) if e[0] != "ping"]
    assert events[-1][0] == "error" and "500" in events[-1][1]["message"]
    fake.error_next(500, path="/v1/chat/completions")
    assert "500" in one_line_error(http.post("/api/v1/ask", json=request), 502)


def test_off_loopback_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "without an API key" in result.stderr and "RAG_API_KEY" in result.stderr


def test_cors_is_off_unless_an_origin_is_named(keyed: RunningServer, tmp_path: Path) -> None:
    origin = {"Origin": "http://app.test", **keyed.headers}
    with httpx.Client(base_url=keyed.url) as client:
        response = client.get("/api/v1/health", headers=origin)
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
    env = serve_env(tmp_path / "home", RAG_API_KEY=KEY)
    with rag_server(env, "--host", "0.0.0.0", "--cors-origin", "http://app.test") as server, server.client() as client:
        response = client.get("/api/v1/status", headers={"Origin": "http://app.test"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://app.test"
        preflight = client.options(
            "/api/v1/search",
            headers={
                "Origin": "http://app.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        other = client.get("/api/v1/health", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in other.headers


def test_a_flagged_question_is_refused_with_its_categories(keyed: RunningServer, http: httpx.Client) -> None:
    answer = http.post("/api/v1/ask", json={"question": "Where do I buy a grenade?"}).json()
    assert answer["refused"] is True and "flagged by moderation (violence)" in answer["answer"]
    import openai

    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": "A grenade?"}])
    assert "flagged by moderation (violence)" in (reply.choices[0].message.content or "")
