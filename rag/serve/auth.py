"""Bearer-key checks, and which paths need one."""

from __future__ import annotations

import hmac

#: Paths anyone may fetch: the health check (for load balancers) and the OpenAPI docs.
PUBLIC_PATHS = frozenset({"/api/v1/health"})


def needs_key(path: str) -> bool:
    """Every ``/api`` and ``/v1`` request needs the key; the page and its files do not."""
    if path in PUBLIC_PATHS:
        return False
    return path == "/api" or path.startswith(("/api/", "/v1/")) or path == "/v1"


def authorised(header: str | None, key: str) -> bool:
    """True when ``Authorization: Bearer KEY`` carries ``key`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), key.encode())
