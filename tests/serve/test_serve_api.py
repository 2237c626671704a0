"""The REST API of a real ``rag serve`` process, over HTTP with httpx.

One offline server (extractive answers, the bundled model) serves a small folder indexed by
``rag ingest``; tests upload, ask and delete against it.  Every shape is checked against
what the CLI prints with ``--json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve_process import PDF, OfflineServer, RunningServer, rag_cli, sse_events

pytestmark = pytest.mark.slow


@pytest.fixture
def api_server(offline_server: OfflineServer) -> RunningServer:
    return offline_server.server


@pytest.fixture
def http(api_server: RunningServer) -> Iterator[httpx.Client]:
    with api_server.client() as client:
        yield client


def stream(http: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    headers = {**kwargs.pop("headers", {}), "Accept": "text/event-stream"}
    with http.stream(method, url, headers=headers, **kwargs) as response:
        return response, list(sse_events(response))


def wait_for_job(http: httpx.Client, job: str) -> list[tuple[str, Any]]:
    _, events = stream(http, "GET", f"/api/v1/jobs/{job}/events")
    return [(n, d) for n, d in events if n != "ping"]


# --- health, status, indexes -------------------------------------------------------------


def test_health_status_and_indexes(http: httpx.Client, offline_server: OfflineServer) -> None:
    assert http.get("/api/v1/health").json()["status"] == "ok"
    status = http.get("/api/v1/status").json()
    cli = json.loads(rag_cli(offline_server.env, "status", "--json").stdout)
    assert status["store"] == cli["store"]
    assert [(i["name"], i["files"], i["chunks"]) for i in status["indexes"]] == [
        (i["name"], i["files"], i["chunks"]) for i in cli["indexes"]
    ]
    listed = http.get("/api/v1/indexes").json()
    assert listed["default"] == "default"
    assert listed["indexes"][0]["name"] == "default" and listed["indexes"][0]["files"] == 4


# --- search and ask ----------------------------------------------------------------------


def test_search_returns_what_rag_search_json_prints(http: httpx.Client, offline_server: OfflineServer) -> None:
    got = http.post("/api/v1/search", json={"query": "active volcano in Sicily", "k": 3}).json()
    cli = json.loads(rag_cli(offline_server.env, "search", "active volcano in Sicily", "-k", "3", "--json").stdout)
    assert [r["chunk_id"] for r in got["results"]] == [r["chunk_id"] for r in cli["results"]]
    assert got["results"][0]["source"].endswith("volcanoes.txt")
    assert set(cli["results"][0]) <= set(got["results"][0])


def test_search_filters(http: httpx.Client) -> None:
    got = http.post("/api/v1/search", json={"query": "bees", "filters": {"type": "pdf"}}).json()
    assert got["results"] and all(r["source"].endswith(".pdf") for r in got["results"])
    got = http.post("/api/v1/search", json={"query": "railway", "filters": {"path": "sub/*"}}).json()
    assert [Path(r["source"]).name for r in got["results"]] == ["trains.txt"]


def test_ask_cites_a_passage_that_the_text_endpoint_can_highlight(http: httpx.Client) -> None:
    answer = http.post("/api/v1/ask", json={"question": "Which volcano in Sicily is very active?"}).json()
    assert answer["refused"] is False and "Etna" in answer["answer"]
    citation = answer["citations"][0]
    assert set(citation) >= {"n", "source", "page", "chunk_id", "score", "start", "end", "text", "document_id"}
    page = http.get(f"/api/v1/documents/{citation['document_id']}/text").json()
    assert page["text"][citation["start"] : citation["end"]] == citation["text"]


def test_pdf_citation_text_is_the_page_text(http: httpx.Client) -> None:
    got = http.post("/api/v1/search", json={"query": "Beautiful is better than ugly", "filters": {"type": "pdf"}})
    hit = got.json()["results"][0]
    page = http.get(f"/api/v1/documents/{hit['document_id']}/text", params={"page": hit["page"]}).json()
    assert page["page"] == hit["page"] == 1
    assert page["text"][hit["start"] : hit["end"]] == hit["text"]
    response = http.get(f"/api/v1/documents/{hit['document_id']}/file")
    assert response.status_code == 200 and response.content == PDF.read_bytes()
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("inline")


def test_ask_streams_tokens_then_citations_then_done(http: httpx.Client) -> None:
    question = {"question": "When did the first public steam railway open?"}
    response, events = stream(http, "POST", "/api/v1/ask", json=question)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    names = [n for n, _ in events if n != "ping"]
    tokens = [d["text"] for n, d in events if n == "token"]
    assert len(tokens) > 1, "the answer must arrive in pieces"
    assert names[-2:] == ["citations", "done"] and set(names[:-2]) == {"token"}
    done = events[-1][1]
    assert done["refused"] is False and "".join(tokens) == done["answer"]["answer"]
    assert "1825" in done["answer"]["answer"]
    assert events[-2][1]["citations"] == done["answer"]["citations"] != []


def test_an_off_corpus_question_is_refused_without_citations(http: httpx.Client) -> None:
    answer = http.post("/api/v1/ask", json={"question": "What is the capital city of Mongolia?"}).json()
    assert answer["refused"] is True and answer["citations"] == []
    _, events = stream(http, "POST", "/api/v1/ask", json={"question": "What is the capital city of Mongolia?"})
    assert events[-1][0] == "done" and events[-1][1]["refused"] is True


# --- sessions ----------------------------------------------------------------------------


def test_sessions_are_created_asked_listed_and_deleted(http: httpx.Client, offline_server: OfflineServer) -> None:
    created = http.post("/api/v1/sessions", json={"name": "trip-1"})
    assert created.status_code == 201 and created.json()["name"] == "trip-1"
    assert http.post("/api/v1/sessions", json={"name": "trip-1"}).status_code == 409
    reply = http.post("/api/v1/sessions/trip-1/messages", json={"question": "Where do honey bees live?"}).json()
    assert "colonies" in reply["answer"]
    _, events = stream(http, "POST", "/api/v1/sessions/trip-1/messages", json={"question": "What do bees pollinate?"})
    assert events[-1][0] == "done" and "flowering plants" in events[-1][1]["answer"]["answer"]
    session = http.get("/api/v1/sessions/trip-1").json()
    assert [t["question"] for t in session["turns"]] == ["Where do honey bees live?", "What do bees pollinate?"]
    assert session["turns"][0]["answer"]["citations"][0]["document_id"]
    assert "trip-1" in [s["name"] for s in http.get("/api/v1/sessions", params={"index": "default"}).json()["sessions"]]
    # The same sessions file as `rag chat --session`.
    history = json.loads(rag_cli(offline_server.env, "history", "--json").stdout)
    assert "trip-1" in json.dumps(history)
    assert http.delete("/api/v1/sessions/trip-1").status_code == 204
    assert http.get("/api/v1/sessions/trip-1").status_code == 404
    assert http.delete("/api/v1/sessions/trip-1").status_code == 404


# --- documents ---------------------------------------------------------------------------


def test_upload_reports_each_stage_and_each_failure(http: httpx.Client, offline_server: OfflineServer) -> None:
    files = [
        ("files", ("glaciers.txt", b"Glaciers carve U-shaped valleys as they slowly move downhill.\n", "text/plain")),
        ("files", ("zen.pdf", PDF.read_bytes(), "application/pdf")),
        ("files", ("broken.pdf", b"oops", "application/pdf")),
        ("files", ("notes.xyz", b"whatever", "application/octet-stream")),
    ]
    accepted = http.post("/api/v1/documents", params={"index": "uploads"}, files=files)
    assert accepted.status_code == 202
    job = accepted.json()["job"]
    events = wait_for_job(http, job)
    names = [n for n, _ in events]
    assert names[0] == "failed" and events[0][1] == {"file": "notes.xyz", "reason": "unsupported file type '.xyz'"}
    assert names[1] == "discovered" and events[1][1] == {"files": 3}
    assert {d["file"] for n, d in events if n == "loaded"} == {"glaciers.txt", "zen.pdf"}
    assert any(n == "embedded" and d["n"] == d["total"] > 0 for n, d in events)
    assert {d["file"] for n, d in events if n == "stored"} == {"glaciers.txt", "zen.pdf"}
    failed = {d["file"]: d["reason"] for n, d in events if n == "failed"}
    assert set(failed) == {"notes.xyz", "broken.pdf"} and "PDF" in failed["broken.pdf"]
    assert names[-1] == "done"
    status = http.get(f"/api/v1/jobs/{job}").json()
    assert status["state"] == "done" and status["report"]["files"]["added"] == 2
    assert {f["name"]: f["state"] for f in status["files"]} == {
        "glaciers.txt": "stored",
        "zen.pdf": "stored",
        "broken.pdf": "failed",
        "notes.xyz": "failed",
    }
    docs = http.get("/api/v1/documents", params={"index": "uploads"}).json()["documents"]
    assert sorted(d["name"] for d in docs) == ["glaciers.txt", "zen.pdf"] and all(d["uploaded"] for d in docs)
    found = http.post("/api/v1/search", json={"query": "U-shaped valleys", "index": "uploads"}).json()["results"]
    assert found[0]["source"].endswith("glaciers.txt")

    # The same upload again changes nothing: exactly once, as `rag ingest` would.
    again = wait_for_job(
        http, http.post("/api/v1/documents", params={"index": "uploads"}, files=files[:2]).json()["job"]
    )
    assert {d["file"] for n, d in again if n == "unchanged"} == {"glaciers.txt", "zen.pdf"}
    assert http.get("/api/v1/indexes").json()["indexes"][1]["chunks"] == sum(d["chunks"] for d in docs)

    # Deleting an uploaded document removes its chunks and its stored file.
    glacier = next(d for d in docs if d["name"] == "glaciers.txt")
    assert glacier["source"] == "glaciers.txt", "an upload is shown by its name, not the server's path"
    stored = Path(offline_server.env["RAG_HOME"]) / "uploads" / "uploads" / "glaciers.txt"
    assert stored.is_file()
    assert http.delete(f"/api/v1/documents/{glacier['id']}", params={"index": "uploads"}).status_code == 204
    assert not stored.exists()
    left = http.get("/api/v1/documents", params={"index": "uploads"}).json()["documents"]
    assert [d["name"] for d in left] == ["zen.pdf"]
    found = http.post("/api/v1/search", json={"query": "U-shaped valleys", "index": "uploads"}).json()["results"]
    assert all(not r["source"].endswith("glaciers.txt") for r in found)
    assert http.get(f"/api/v1/documents/{glacier['id']}/file", params={"index": "uploads"}).status_code == 404


def test_deleting_a_document_from_a_folder_keeps_the_file(http: httpx.Client, offline_server: OfflineServer) -> None:
    env, docs = offline_server.env, offline_server.docs
    before = http.get("/api/v1/documents").json()["documents"]
    trains = next(d for d in before if d["name"] == "trains.txt")
    assert trains["uploaded"] is False
    assert http.delete(f"/api/v1/documents/{trains['id']}").status_code == 204
    assert (docs / "sub" / "trains.txt").is_file()
    after = http.get("/api/v1/documents").json()["documents"]
    assert trains["id"] not in [d["id"] for d in after]
    # `rag ingest` of the folder brings it back (it is still on disk).
    assert rag_cli(env, "ingest", str(docs)).returncode == 0
    assert trains["id"] in [d["id"] for d in http.get("/api/v1/documents").json()["documents"]]


def test_a_script_in_a_document_is_served_as_text(http: httpx.Client, offline_server: OfflineServer) -> None:
    page = b"<html><body><p>Harmless text about otters.</p><script>alert(1)</script></body></html>"
    job = http.post("/api/v1/documents", params={"index": "html"}, files=[("files", ("otters.html", page))]).json()
    assert wait_for_job(http, job["job"])[-1][1]["state"] == "done"
    doc = http.get("/api/v1/documents", params={"index": "html"}).json()["documents"][0]
    response = http.get(f"/api/v1/documents/{doc['id']}/file", params={"index": "html"})
    assert response.headers["content-type"].startswith("text/plain")
    assert "sandbox" in response.headers["content-security-policy"]
    # `rag drop` removes the uploaded files with the index.
    stored = Path(offline_server.env["RAG_HOME"]) / "uploads" / "html" / doc["name"]
    assert stored.is_file()
    assert rag_cli(offline_server.env, "drop", "html", "--yes").returncode == 0
    assert not stored.parent.exists()
    assert http.get("/api/v1/documents", params={"index": "html"}).status_code == 404


def test_api_docs_work_offline_under_the_csp(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "https://" not in page.text and "http://" not in page.text, "nothing from a CDN"
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    for script in re.findall(r"<script>(.*?)</script>", page.text, re.S):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    for asset in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', page.text):
        assert http.get(asset).status_code == 200
    schema = http.get("/openapi.json").json()
    assert {"/api/v1/ask", "/api/v1/search", "/v1/chat/completions"} <= set(schema["paths"])
