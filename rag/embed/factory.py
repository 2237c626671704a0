"""Embedder names (``provider:model``) to embedder objects, and which one an index uses."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rag.embed.base import Embedder
from rag.errors import EmbedderMismatchError, UsageError
from rag.registries import Registration, add
from rag.settings import Settings

__all__ = ["Constructor", "auto", "choose", "create", "explain", "normalize", "qualified", "register"]

log = logging.getLogger(__name__)

#: Builds an embedder from a model name ("" for the provider's default) and settings.
Constructor = Callable[[str, Settings], Embedder]


def _local(model: str, settings: Settings) -> Embedder:
    from rag.embed.local import NAMES, LocalEmbedder
    from rag.embed.quantize import default_precision

    # local:int8 / local:fp32 pick a precision; the full names are what an index records.
    by_model = {**{name.partition(":")[2]: p for p, name in NAMES.items()}, **{p: p for p in NAMES}}
    precision = by_model.get(model) if model else default_precision()[0]
    if precision is None:
        shipped = ", ".join(NAMES.values())
        raise UsageError(f"this rag ships the local embedders {shipped} (local:int8, local:fp32), not local:{model}")
    return LocalEmbedder(threads=settings.embedding.threads, precision=precision)


def _openai(model: str, settings: Settings) -> Embedder:
    from rag.embed.openai import OpenAIEmbedder

    return OpenAIEmbedder(settings, model=model or settings.embedding.openai_model)


_PROVIDERS: dict[str, Constructor] = {"local": _local, "openai": _openai}


def register(provider: str, constructor: Constructor) -> Registration[Constructor]:
    """Add an embedder provider (one file per provider; tests register fakes this way);
    ``.undo()``, or leaving a ``with`` block, puts back what the name held."""
    return add(_PROVIDERS, provider, constructor)


def qualified(spec: str, settings: Settings) -> str:
    """``spec`` with its provider: a bare model name ("text-embedding-3-small") is an OpenAI
    model when OpenAI (or a compatible server) is configured; else the error says how to name it."""
    spec = spec.strip()
    provider, sep, _ = spec.partition(":")
    if sep or provider.lower() in _PROVIDERS:
        return spec
    if settings.openai.configured:
        return f"openai:{spec}"
    raise UsageError(
        f"unknown embedder {spec!r}: use {', '.join(sorted(_PROVIDERS))} or PROVIDER:MODEL "
        f"(for an OpenAI model, openai:{spec} with OPENAI_API_KEY or OPENAI_BASE_URL set)"
    )


def create(spec: str, settings: Settings) -> Embedder:
    """An embedder for ``provider``, ``provider:model``, or a bare model name (``qualified``)."""
    provider, _, model = qualified(spec, settings).partition(":")
    constructor = _PROVIDERS.get(provider.lower())
    if constructor is None:
        raise UsageError(f"unknown embedder {spec!r}: use {', '.join(sorted(_PROVIDERS))} or PROVIDER:MODEL")
    return constructor(model, settings)


def normalize(spec: str, settings: Settings) -> str:
    """``local`` / ``openai`` / ``provider:model`` / a bare model name to a full ``provider:model`` name."""
    provider, _, model = qualified(spec, settings).partition(":")
    if provider.lower() == "openai":
        return f"openai:{model or settings.embedding.openai_model}"
    if model and provider.lower() != "local":  # local:int8 is recorded by its full name
        return f"{provider.lower()}:{model}"
    name = create(spec, settings).name  # the provider's default model; construction is cheap
    if not name.lower().startswith(f"{provider.lower()}:"):
        # The index records this name and is reopened through it: under another provider's
        # prefix, that provider's embedder would silently stand in for this one.
        raise UsageError(f"embedder provider {provider!r} names its model {name!r}: it must start with '{provider}:'")
    return name


def choose(settings: Settings, recorded: str | None, index: str, requested: str | None = None) -> str:
    """The embedder an index must use.

    An existing index keeps the embedder it was built with; naming another one (flag,
    ``RAG_EMBEDDER`` or ``RAG_EMBED_MODEL``) is refused rather than mixing vector spaces.
    A new index takes the request, else OpenAI when configured, else the local model.
    """
    explicit = requested
    if explicit is None and settings.sources.get("embedding.embedder"):
        explicit = settings.embedding.embedder
    if explicit is not None and explicit.strip().lower() == "auto":
        explicit = None
    if (
        explicit is None
        and settings.sources.get("embedding.openai_model")
        and (recorded or "openai:").startswith("openai:")
    ):
        explicit = "openai"
    if explicit and recorded and explicit.strip().lower() == "local" and recorded.startswith("local:"):
        return recorded  # `local` names no precision: the index's own is kept
    wanted = normalize(explicit, settings) if explicit else None
    if recorded:
        if wanted and wanted != recorded:
            raise EmbedderMismatchError(index, recorded, wanted)
        return recorded
    if wanted:
        return wanted
    name, why = auto(settings)
    if settings.openai.configured and not name.startswith("openai:"):
        log.warning("embedder: %s", why)  # the server is asked once a process; this is said per choice
    return name


def auto(settings: Settings) -> tuple[str, str]:
    """What ``auto`` gives a new index, and why: OpenAI when a key or a server that embeds
    is configured, else the local model, in int8 on a CPU with int8 dot products."""
    if settings.openai.configured:
        name = normalize("openai", settings)
        from rag.embed.openai import embeddings_unavailable

        problem = embeddings_unavailable(settings, name.partition(":")[2])
        if problem is None:
            return name, "OPENAI_API_KEY or OPENAI_BASE_URL is set"
        return normalize("local", settings), f"{problem}, so the local model, {_precision_why()}"
    return normalize("local", settings), f"no OpenAI key or base URL, so the local model, {_precision_why()}"


def _precision_why() -> str:
    from rag.embed.quantize import default_precision

    precision, why = default_precision()
    return f"{precision} as {why}"


def explain(settings: Settings) -> tuple[str, str]:
    """The embedder a new index gets with these settings, and why (for ``rag config``)."""
    requested = settings.embedding.embedder.strip()
    if requested.lower() == "auto" or not settings.sources.get("embedding.embedder"):
        return auto(settings)
    source = settings.sources["embedding.embedder"]
    name = normalize(requested, settings)
    if requested.lower() == "local":
        return name, f"embedding.embedder is local ({source}), {_precision_why()}"
    return name, f"embedding.embedder is {requested} ({source})"
