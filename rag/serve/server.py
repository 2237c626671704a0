"""Run the app with uvicorn on a socket we bind ourselves, so ``--port 0`` can print its URL."""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

from rag.errors import UsageError
from rag.serve.app import ServeConfig, create_app
from rag.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Shortest API key accepted: a shorter one can be guessed, and a typo'd empty one locks everyone out.
MIN_KEY_CHARS = 16


def check_key(api_key: str | None) -> None:
    """Refuse a key that is blank or short enough to guess."""
    if api_key is not None and len(api_key.strip()) < MIN_KEY_CHARS:
        raise UsageError(
            f"API key too short: use at least {MIN_KEY_CHARS} characters, for example "
            "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
        )


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without a key."""
    if not is_loopback(host) and not api_key:
        raise UsageError(
            f"refusing to listen on {host} without an API key: set RAG_API_KEY or pass --api-key-file "
            "(or keep the default --host 127.0.0.1)"
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(settings: Settings, config: ServeConfig, host: str, port: int, *, log_level: str = "warning") -> None:
    """Serve until interrupted; prints the URL once the server accepts requests."""
    import uvicorn

    check_key(config.api_key)
    check_exposure(host, config.api_key)
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1])
    app = create_app(settings, config)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                # The first line of output is the URL: scripts and tests wait for it.
                print(f"rag serve: {url}  (docs at {url}/docs; Ctrl-C stops)", flush=True)

        async def shutdown(self, sockets: Any = None) -> None:
            # Open streams (answers, job events) end now with a last event, instead of
            # holding shutdown up until uvicorn cancels them with a traceback.
            app.state.stopping.set()
            await super().shutdown(sockets)

    server = _Server(
        uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5, lifespan="on")
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
