"""What a client is told when something fails: one line it can act on, no server internals.

The full error goes to the server log (``rag.serve``); the client gets its gist.  Errors
rag raised on purpose about the request (not found, locked, bad option, the model
provider's refusal) keep their message, with any absolute path cut to its last part.
Failures inside the server (the store, a bug) become a fixed line that says what to do.
"""

from __future__ import annotations

import logging
import re

from rag.errors import ConfigError, IndexDamagedError, ProviderError, RagError, StoreError

log = logging.getLogger("rag.serve")

# An absolute path (two or more parts) not inside a URL: "/home/u/.rag/chroma" -> "chroma".
_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"`:,;()]+/)+([^\s/'\"`:,;()]*)")

STORE_FAILED = "the index store failed on this request (the server log has the details): try again shortly"
UNEXPECTED = "unexpected server error (the server log has the details): try again, or report it"


def without_paths(message: str) -> str:
    """``message`` on one line, each absolute path replaced by its last part."""
    return _PATH.sub(lambda m: m.group(1) or "…", " ".join(message.split()))


def public_message(exc: BaseException) -> str:
    """The one line a client sees for ``exc``; anything it does not see is logged here."""
    if isinstance(exc, StoreError) and not isinstance(exc, IndexDamagedError):
        log.error("%s: %s", type(exc).__name__, exc)
        return STORE_FAILED
    if isinstance(exc, (ProviderError, ConfigError, IndexDamagedError)):
        log.error("%s: %s", type(exc).__name__, exc)
        return without_paths(str(exc))
    if isinstance(exc, RagError):
        return without_paths(str(exc))
    log.error("unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
    return UNEXPECTED
