"""The one place that builds OpenAI SDK clients, and turns SDK errors into rag errors.

Retry policy: there is exactly one, the SDK's own.  With ``max_retries=N`` (from
``OpenAISettings.max_retries``) a request is retried up to N times on 408, 409, 429 and
5xx responses and on connection errors and timeouts (a dropped connection included).
It waits ``retry-after-ms`` or ``retry-after`` when the server sends a positive value of
at most 120 s (and does not retry at all when the server asks for longer); without one
(or with 0) it backs off 0.5 s, 1 s, 2 s, 4 s, then 8 s each time, less up to 25 % jitter,
so with the default 5 retries a server that stays down is reported after 12 to 16 s.
tests/test_openai_client.py checks this against a fake server.  rag adds no retry loop of
its own on top, so retries never multiply.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rag.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthError,
    MissingDependencyError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
)
from rag.settings import OpenAISettings

if TYPE_CHECKING:
    import openai

__all__ = [
    "OPENAI_BASE_URL",
    "PLACEHOLDER_KEY",
    "LazyClient",
    "base_url",
    "client_options",
    "display_host",
    "display_url",
    "make_async_client",
    "make_client",
    "require_openai",
    "to_rag_error",
    "translate_errors",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"

# Compatible servers (Ollama, llama.cpp, vLLM, LM Studio) accept any key, but the SDK
# refuses to start without one.
PLACEHOLDER_KEY = "not-needed"

_CONNECT_TIMEOUT = 10.0


def require_openai() -> Any:
    """Import the openai package, or explain how to install it."""
    try:
        import openai
    except ImportError:
        raise MissingDependencyError("this feature needs the openai package: pip install 'openai>=3.50,<4'") from None
    return openai


def base_url(settings: OpenAISettings) -> str:
    """The API base URL requests go to."""
    return (settings.base_url or OPENAI_BASE_URL).rstrip("/")


def display_url(settings: OpenAISettings) -> str:
    """The base URL without user:password or query, safe to show."""
    parts = urlsplit(base_url(settings))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def display_host(settings: OpenAISettings) -> str:
    parts = urlsplit(base_url(settings))
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def client_options(
    settings: OpenAISettings, *, timeout: float | None = None, max_retries: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``openai.OpenAI``/``AsyncOpenAI``; per-call values win."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if not key and not settings.base_url:
        raise ConfigError("no OpenAI API key: set OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server")
    if settings.base_url and urlsplit(settings.base_url).scheme not in ("http", "https"):
        raise ConfigError(
            f"OPENAI_BASE_URL must start with http:// or https:// (e.g. http://localhost:11434/v1), "
            f"not {settings.base_url!r}"
        )
    sdk = require_openai()
    seconds = settings.timeout if timeout is None else timeout
    return {
        "api_key": key or PLACEHOLDER_KEY,
        # Passed explicitly so the SDK never picks another OPENAI_BASE_URL than rag shows.
        "base_url": base_url(settings),
        # A down server should fail fast; a slow answer may take the full timeout.
        "timeout": sdk.Timeout(seconds, connect=min(seconds, _CONNECT_TIMEOUT)),
        "max_retries": settings.max_retries if max_retries is None else max_retries,
    }


def make_client(
    settings: OpenAISettings, *, timeout: float | None = None, max_retries: int | None = None
) -> openai.OpenAI:
    """A synchronous client configured from ``settings``."""
    sdk = require_openai()
    client: openai.OpenAI = sdk.OpenAI(**client_options(settings, timeout=timeout, max_retries=max_retries))
    return client


class LazyClient:
    """A client made on first use (so that nothing needs the SDK or a key until then),
    shared by threads, and closed with ``close`` (it is made again if used after)."""

    def __init__(self, settings: OpenAISettings) -> None:
        self._settings = settings
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def get(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = make_client(self._settings)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def make_async_client(
    settings: OpenAISettings, *, timeout: float | None = None, max_retries: int | None = None
) -> openai.AsyncOpenAI:
    """An asyncio client configured from ``settings``."""
    sdk = require_openai()
    client: openai.AsyncOpenAI = sdk.AsyncOpenAI(**client_options(settings, timeout=timeout, max_retries=max_retries))
    return client


@contextmanager
def translate_errors(settings: OpenAISettings, *, model: str | None = None) -> Iterator[None]:
    """Turn openai exceptions raised inside the block into one-line ``rag.errors``.

    Also usable as a decorator.  The original exception is not chained: its text may
    quote the request or a masked key, and rag's message says what the user can do.
    """
    try:
        yield
    except Exception as exc:
        error = to_rag_error(exc, settings, model=model)
        if error is None:
            raise
        raise error from None


def to_rag_error(exc: BaseException, settings: OpenAISettings, *, model: str | None = None) -> ProviderError | None:
    """The rag error for an SDK (or transport) exception; None for anything else."""
    try:
        import httpx2
        import openai
    except ImportError:  # pragma: no cover - without the SDK nothing can raise its errors
        return None
    url, host = display_url(settings), display_host(settings)
    key = settings.api_key.get_secret_value() if settings.api_key else None
    retries = _retries_taken(exc)
    after = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
    model_name = f"'{model}'" if model else "the model"

    if isinstance(exc, openai.APITimeoutError):
        return ProviderConnectionError(f"request to {url} timed out{after} (see RAG_OPENAI_TIMEOUT)")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        refused = isinstance(cause, httpx2.ConnectError)
        what = f"cannot connect to {url}" if refused else f"connection to {url} failed"
        return ProviderConnectionError(f"{what}{_cause(cause, key)}{after}")
    if isinstance(exc, httpx2.TransportError):  # raised mid-stream, outside the retry loop
        reason = _scrub(str(exc), key) or type(exc).__name__
        return ProviderConnectionError(f"connection to {url} lost: {reason}")
    if not isinstance(exc, openai.APIStatusError):
        if isinstance(exc, openai.APIError):
            return ProviderError(f"unexpected response from {host}: {_short(exc.message, key)}")
        if isinstance(exc, openai.OpenAIError):
            return ProviderError(f"OpenAI client error: {_short(str(exc), key)}")
        return None

    status, code, message = exc.status_code, exc.code or "", _short(_api_message(exc), key)
    lowered = message.lower()
    if status == 401 or isinstance(exc, openai.AuthenticationError):
        where = "" if host == "api.openai.com" else f" at {host}"
        return AuthenticationError(f"authentication failed{where}: check OPENAI_API_KEY")
    if code == "model_not_found" or (status == 404 and "model" in lowered):
        return ModelNotFoundError(f"model {model_name} not found on {host}")
    if status == 404:
        return ProviderError(f"{url} answered 404 not found: check OPENAI_BASE_URL (it usually ends in /v1)")
    if code == "context_length_exceeded" or "context length" in lowered or "context_length" in lowered:
        return ContextLengthError(f"input too long for {model_name}: {message}")
    if status == 429:
        if code == "insufficient_quota":
            return ProviderError(f"the API quota is used up: check the key's plan and billing ({message})")
        wait = _retry_after(exc)
        asked = f" (it asks to wait {wait:.0f} s)" if wait else ""
        return RateLimitError(
            f"rate limited by the API{after or ' after 0 retries'}{asked}: "
            "lower RAG_EMBED_CONCURRENCY or RAG_EMBED_RPM/RAG_EMBED_TPM, or try again later"
        )
    return ProviderError(f"{host} answered HTTP {status}{after}: {message}")


def _api_message(exc: Any) -> str:
    # The server's own words, without the SDK's "Error code: 400 - " prefix.
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    if isinstance(body, str) and body:
        return body
    return str(exc.message)


def _retries_taken(exc: BaseException) -> int:
    # The SDK stamps every attempt with x-stainless-retry-count; the error carries the last.
    request = getattr(exc, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", 0)) if request is not None else 0
    except (ValueError, RuntimeError):
        return 0


def _retry_after(exc: Any) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers[name]) / scale
        except (KeyError, ValueError):
            continue
    return None


def _cause(cause: BaseException | None, key: str | None) -> str:
    text = _scrub(str(cause), key) if cause is not None else ""
    errno = re.search(r"\[Errno -?\d+\] (.+)", text)
    text = (errno.group(1) if errno else text).strip().rstrip(".").lower()
    return f" ({_short(text, None, 120)})" if text else ""


def _short(message: str, key: str | None, limit: int = 240) -> str:
    text = " ".join(_scrub(message, key).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub(text: str, key: str | None) -> str:
    if key and len(key) >= 8:
        text = text.replace(key, "<redacted>")
    # OpenAI quotes keys it rejects, masked ("sk-abc****wxyz"); drop even the masked form.
    return re.sub(r"\bsk-[A-Za-z0-9_*-]{8,}", "sk-***", text)
