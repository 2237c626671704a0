"""A hostile page on another origin, in a real Chromium, against a real ``rag serve``.

The attacker's page is served from a second loopback port (another origin, the same
site): it tries the probe's no-preflight ``fetch(..., {mode: "no-cors"})`` upload and
frames the server.  Chromium is Debian's (``/usr/bin/chromium``) driven by Playwright,
as in ``test_web.py``; without them the tests skip and say why.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

# The browser is test_web.py's (Debian's Chromium through Playwright): importing it skips
# this module, saying why, where either is missing.
from tests.serve.test_web import browser  # noqa: F401  (a fixture, found by name)
from tests.serve_process import rag_cli, rag_server, serve_env, write_docs

pytestmark = pytest.mark.slow

from playwright.sync_api import Browser, Response  # noqa: E402

ATTACK = """<!doctype html>
<html><head><title>cat pictures</title></head><body>
<iframe id="framed" src="{rag}/"></iframe>
<script>
  const form = new FormData();
  form.append("files", new Blob(["The planted walrus memo says the vault code is 7741."]), "planted.md");
  fetch("{rag}/api/v1/documents", {{ method: "POST", mode: "no-cors", body: form }})
    .finally(() => {{ document.title = "sent"; }});
</script>
</body></html>
"""


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static web server on another loopback port: the second origin."""
    site = tmp_path / "site"
    site.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", site
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_can_neither_upload_nor_frame(
    tmp_path: Path,
    attacker: tuple[str, Path],
    browser: Browser,  # noqa: F811
) -> None:
    env = serve_env(tmp_path / "home", RAG_LLM="none")
    assert rag_cli(env, "ingest", str(write_docs(tmp_path / "docs"))).returncode == 0
    origin, site = attacker
    with rag_server(env) as server:
        (site / "index.html").write_text(ATTACK.format(rag=server.url), encoding="utf-8")
        uploads: list[Response] = []
        page = browser.new_page()
        try:
            page.on("response", lambda r: uploads.append(r) if r.url.endswith("/api/v1/documents") else None)
            page.goto(origin + "/index.html")
            page.wait_for_function("document.title === 'sent'", timeout=60_000)
            page.wait_for_load_state("load")
            framed = page.frame_locator("#framed")
            assert framed.locator("#question").count() == 0, "the server's page loaded inside another site"
            page.screenshot(path=str(tmp_path / "attack.png"))
        finally:
            page.close()
        assert [r.status for r in uploads] == [403], "the cross-origin upload reached the server"
        # Nothing was stored, and nothing queued: the walrus memo is nowhere.
        with server.client() as http:
            indexes = http.get("/api/v1/indexes").json()["indexes"]
            names = [d["name"] for d in http.get("/api/v1/documents").json()["documents"]]
            hits = http.post("/api/v1/search", json={"query": "walrus memo vault code", "k": 20}).json()["results"]
        assert [i["name"] for i in indexes] == ["default"] and "planted.md" not in names
        assert all("7741" not in h["text"] for h in hits)
        assert not (Path(env["RAG_HOME"]) / "uploads").exists()
        # The same upload from the server's own page origin is accepted (the page keeps working).
        own = httpx.post(
            server.url + "/api/v1/documents",
            files=[("files", ("mine.md", b"A memo of my own."))],
            headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert own.status_code == 202
