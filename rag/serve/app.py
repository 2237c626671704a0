"""The ASGI app: REST API under ``/api/v1``, OpenAI-compatible ``/v1``, the page at ``/``.

Cross-cutting rules live here, once: the bearer key, the upload size limit, CORS, the
Content-Security-Policy on every response, and errors as one-line JSON (never a traceback,
never a 500 for the client's own mistake).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag import __version__
from rag.chat.sessions import SessionNotFoundError
from rag.errors import (
    ConfigError,
    ContextLengthError,
    IndexLockedError,
    IndexNotFoundError,
    ProviderError,
    RagError,
    UsageError,
)
from rag.serve.auth import authorised, needs_key
from rag.serve.docs import add_docs
from rag.serve.jobs import Jobs
from rag.serve.messages import public_message
from rag.serve.origins import HostPolicy
from rag.serve.state import Conflict, NotFound, ServerState
from rag.settings import Settings

log = logging.getLogger("rag.serve")

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'self'; frame-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@dataclass
class ServeConfig:
    """How ``rag serve`` was started."""

    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    #: The address it listens on, and URLs it is reached at through a proxy or DNS name:
    #: together with the loopback names, the only ``Host`` values it answers.
    host: str = "127.0.0.1"
    public_urls: list[str] = field(default_factory=list)
    max_upload_mb: float = 100.0
    #: Seconds between ``: ping`` comments on an idle stream.
    heartbeat: float = 15.0
    #: Folders kept in step with the default index (``--watch``).
    watch: list[Path] = field(default_factory=list)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def error_body(message: str) -> dict[str, Any]:
    return {"error": " ".join(message.split())}


def openai_error_body(message: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    codes = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large"}
    return {"error": {"message": " ".join(message.split()), "type": kind, "code": codes.get(status), "param": None}}


def _json_error(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error shape: ``{"error": "one line"}``; OpenAI's shape under ``/v1``."""
    body = openai_error_body(message, status) if path.startswith("/v1") else error_body(message)
    return JSONResponse(body, status_code=status, headers=headers)


def status_for(exc: RagError) -> int:
    """The HTTP status of an error rag raised on purpose."""
    if isinstance(exc, (NotFound, IndexNotFoundError, SessionNotFoundError)):
        return 404
    if isinstance(exc, (Conflict, IndexLockedError)):
        return 409
    if isinstance(exc, ContextLengthError):
        return 400
    if isinstance(exc, ProviderError):
        return 502  # the model provider failed, not this server and not the client
    if isinstance(exc, ConfigError):
        return 500
    if isinstance(exc, UsageError):
        return 422
    return 500


def validation_message(exc: RequestValidationError) -> str:
    """One line naming the first problem: where in the request, and what is wrong."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return f"malformed JSON body: {ctx.get('error', 'cannot parse it')}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


class _TooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware: security headers, the bearer key and the body size limit.

    Pure ASGI (not ``BaseHTTPMiddleware``) so that streamed responses pass through
    unbuffered and client disconnects reach the stream.
    """

    def __init__(self, app: ASGIApp, config: ServeConfig) -> None:
        self.app = app
        self.config = config
        self.hosts = HostPolicy(config.host, config.public_urls, config.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                for name, value in (
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ):
                    if name not in names:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        request_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, request_headers)
        if refusal is not None:
            await _drain(receive, self.config.max_upload_bytes)
            await _json_error(path, *refusal)(scope, receive, send_with_headers)
            return
        if (
            self.config.api_key
            and scope.get("method") != "OPTIONS"
            and needs_key(path)
            and not authorised(request_headers.get("authorization"), self.config.api_key)
        ):
            await _drain(receive, self.config.max_upload_bytes)
            response = _json_error(
                path, 401, "missing or wrong API key: send Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send_with_headers)
            return

        limit = self.config.max_upload_bytes
        length = request_headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _drain(receive, limit)
            await self._too_large(scope, receive, send_with_headers)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except _TooLarge:
            await _drain(receive, limit)
            await self._too_large(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """421 for a Host that is not ours (DNS rebinding), 403 for a cross-origin write."""
        host = headers.get("host")
        if not self.hosts.host_allowed(host):
            shown = (host or "")[:80]
            return 421, (
                f"unknown Host '{shown}': this server answers to {self.hosts.describe()}; "
                "add the name it is reached at with --public-url"
            )
        why = self.hosts.cross_origin(scope.get("method", "GET"), headers)
        if why is not None:
            return 403, f"{why}: only this server's own page (or --cors-origin) may change things"
        return None

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body over the limit of {self.config.max_upload_mb:g} MB (--max-upload-mb)"
        await _json_error(scope["path"], 413, message)(scope, receive, send)


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of a request body, so the client can read our answer.

    Closing on an unread body makes many clients see a reset instead of the 413; past
    ``16 × limit`` (at least 64 MB) we stop reading and let the connection close.
    """
    budget = max(16 * limit, 64 * 1024 * 1024)
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def create_app(settings: Settings | None = None, config: ServeConfig | None = None) -> FastAPI:
    """The whole server as an ASGI app (``uvicorn`` runs it; tests may too)."""
    from rag.serve import api, openai_compat

    settings = settings or Settings.load()
    config = config or ServeConfig()
    state = ServerState(settings)
    jobs = Jobs(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watching = None
        if config.watch:
            from rag.serve.watching import Watching

            watching = Watching(state, jobs, config.watch, asyncio.get_running_loop())
            state.watch_status = watching.status
        yield
        if watching is not None:
            watching.stop()
        jobs.close()
        state.close()

    app = FastAPI(
        title="rag",
        version=__version__,
        description="Ask your documents: search, cited answers, uploads, and an OpenAI-compatible /v1.",
        lifespan=lifespan,
        docs_url=None,  # rag.serve.docs serves them without a CDN
        redoc_url=None,
    )
    app.state.rag = state
    app.state.jobs = jobs
    app.state.config = config
    #: Set when the server begins to stop: open streams end at once (``sse.until``).
    app.state.stopping = asyncio.Event()

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        return _json_error(request.url.path, status_for(exc), public_message(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _json_error(request.url.path, exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json_error(request.url.path, 422, validation_message(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path)
        return _json_error(request.url.path, 500, public_message(exc))

    app.include_router(api.router)
    app.include_router(openai_compat.router)
    add_docs(app)

    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")

    # Added last = outermost: CORS answers preflights before the key is checked.
    app.add_middleware(Guard, config=config)
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
        )
    return app
