"""Which Host names the server answers to, and which browser origins may change things.

A loopback server is reachable from every web page the user opens: a page cannot read our
answers (no CORS), but without these checks it could *send* requests, a multipart upload
with ``mode: "no-cors"`` needs no preflight, and by DNS rebinding (a name of the
attacker's that starts resolving to 127.0.0.1) it could even read them.  So:

- the ``Host`` header must name this server: a loopback name, the ``--host`` it listens
  on, or the host of ``--public-url``; any other is refused (DNS rebinding);
- a state-changing request (anything but GET, HEAD, OPTIONS) that a browser sends from
  another origin is refused: ``Sec-Fetch-Site`` other than ``same-origin``/``none``, or an
  ``Origin`` that is neither ours nor a ``--cors-origin``.  Clients that send neither
  header (curl, the openai SDK, scripts) are not browsers and pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def host_name(header: str) -> str:
    """The host part of a ``Host`` header or URL authority, lower case, without port or brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    if header.count(":") == 1:
        return header.rsplit(":", 1)[0]
    return header


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The Host names and origins one server answers to."""

    def __init__(self, bind_host: str, public_urls: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> None:
        self.bind_host = host_name(bind_host) if bind_host else ""
        self.names = set(LOOPBACK_NAMES)
        self.public_origins = {_origin(u) for u in public_urls if u}
        self.names |= {host_name(urlsplit(u).netloc) for u in public_urls if u}
        if self.bind_host not in WILDCARDS:
            self.names.add(self.bind_host)
        self.trusted_origins = {o.rstrip("/").lower() for o in cors_origins} | self.public_origins

    def host_allowed(self, host: str | None) -> bool:
        """True for a Host this server answers to (no Host at all: an HTTP/1.0 client, allowed)."""
        if not host:
            return True
        name = host_name(host)
        if name in self.names:
            return True
        # Listening on every address: any of this machine's addresses, typed as an IP, is us.
        # A name is not (that is what DNS rebinding would send): add it with --public-url.
        return self.bind_host in WILDCARDS and _is_ip(name)

    def cross_origin(self, method: str, headers: Mapping[str, str]) -> str | None:
        """Why a browser's state-changing request from another origin is refused, or None."""
        if method.upper() in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            origin = origin.rstrip("/").lower()
            if origin in self.trusted_origins or origin == _own_origin(headers):
                return None
            return f"cross-origin request from {origin if origin != 'null' else 'an opaque origin'} refused"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request ({site}) refused"
        return None

    def describe(self) -> str:
        return ", ".join(sorted(self.names))


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


def _own_origin(headers: Mapping[str, str]) -> str:
    """Our origin as the browser sees it: the Host it sent, over http (or https behind a proxy)."""
    host = headers.get("host", "").lower()
    scheme = headers.get("x-forwarded-proto", "http").lower()
    return f"{scheme}://{host}"
