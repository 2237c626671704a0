"""OpenAPI docs at ``/docs`` that work offline and under the server's strict CSP.

FastAPI's own page loads Swagger UI from a CDN.  Here the Swagger UI files come from the
``fastapi-offline`` package (MIT), served by this process, and the page's one inline
script is allowed by its hash, so ``script-src`` never needs ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _assets() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI from local files) and ``/openapi.json``; without the assets, the JSON only."""
    folder = _assets()
    if folder is None:
        return
    app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
        html = bytes(page.body).decode()
        hashes = " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in _SCRIPT.findall(html)
        )
        csp = (
            f"default-src 'self'; script-src 'self' {hashes}; img-src 'self' data:; base-uri 'none'; "
            "frame-ancestors 'none'"
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})
