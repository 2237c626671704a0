"""One error hierarchy for everything rag raises on purpose.

Each error's message is a single line meant for the user; the CLI prints it without a
traceback and exits with ``exit_code``.  Catch ``RagError`` to catch them all.
"""

from __future__ import annotations

from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2


class RagError(Exception):
    """Base class of every error rag raises deliberately."""

    exit_code: int = EXIT_FAILURE


# --- usage and configuration -------------------------------------------------------------


class UsageError(RagError):
    """The user asked for something that cannot work as given (bad option, bad name)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A setting is missing or invalid."""


class MissingDependencyError(RagError):
    """An optional package is needed for this feature; the message says how to install it."""


# --- the index ---------------------------------------------------------------------------


class IndexNotFoundError(RagError):
    def __init__(self, index: str, store: str) -> None:
        super().__init__(f"no index '{index}' in {store}: run `rag ingest PATH` first")
        self.index = index


class EmbedderMismatchError(RagError):
    """The index was built with another embedder; mixing vectors would give garbage."""

    def __init__(self, index: str, recorded: str, requested: str) -> None:
        super().__init__(
            f"index '{index}' was built with embedder '{recorded}', not '{requested}': "
            f"use --embedder {recorded}, or ingest into a new --index"
        )
        self.recorded = recorded
        self.requested = requested


class IndexLockedError(RagError):
    def __init__(self, index: str, seconds: float, holder: str | None = None) -> None:
        who = holder or "another rag process"
        super().__init__(
            f"index '{index}' is being written by {who} (waited {seconds:.0f} s); try again when it has finished"
        )
        self.holder = holder


class StoreError(RagError):
    """The vector store failed or could not be reached."""


class IndexDamagedError(StoreError):
    """An index's manifest (``index.db``) cannot be read; ``rag repair`` rebuilds it."""

    def __init__(self, index: str, path: str | Path, reason: str, *, recoverable: bool) -> None:
        self.index = index
        how = (
            f"run `rag repair --index {index}` to rebuild it from the index's vectors (or `rag ingest` again)"
            if recoverable
            else f"its vectors are gone too: `rag drop {index}` and ingest again"
        )
        super().__init__(f"index '{index}' is damaged: {path} is not a readable database ({reason}); {how}")


# --- documents ---------------------------------------------------------------------------


class DocumentError(RagError):
    """One input file could not be read.  Ingest reports it and carries on with the rest."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# --- model providers (OpenAI and compatible servers) -------------------------------------


class ProviderError(RagError):
    """A model provider call failed after the retry policy gave up."""


class AuthenticationError(ProviderError):
    pass


class ModelNotFoundError(ProviderError):
    pass


class ContextLengthError(ProviderError):
    pass


class RateLimitError(ProviderError):
    pass


class ProviderConnectionError(ProviderError):
    pass
