"""Answerers by name, as ``rag.embed.factory`` has embedders: one entry per backend.

``--llm auto`` takes the first entry of ``AUTO_ORDER`` whose backend is available.  The
engine alone builds answerers (``create``), handing each the relevance threshold it
computed and, lazily, the embedder that scores sentences, so an answerer never reaches
back into the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.answer.base import Answerer
from rag.embed.base import Embedder
from rag.errors import ConfigError, UsageError
from rag.registries import Registration, add
from rag.settings import Settings

__all__ = ["ALIASES", "AUTO_ORDER", "Entry", "Parts", "create", "describe", "names", "register", "resolve"]


@dataclass(frozen=True)
class Parts:
    """What an answerer may be built from."""

    settings: Settings
    #: The chat model asked for (answerers without one ignore it).
    model: str
    #: The index's relevance threshold: ``Engine.relevance_threshold()``.
    min_relevance: float
    #: The embedder that scores text locally, loaded on first call.
    embedder: Callable[[], Embedder]


@dataclass(frozen=True)
class Entry:
    build: Callable[[Parts], Answerer]
    #: None when the backend can run with these settings, else why it cannot (one line).
    unavailable: Callable[[Settings], str | None]


def _llm(parts: Parts) -> Answerer:
    from rag.answer.llm import LLMAnswerer

    return LLMAnswerer(
        parts.settings,
        model=parts.model,
        min_relevance=parts.min_relevance,
        embedder=parts.embedder,
        quotes=_quotes(parts),
    )


def _local(parts: Parts) -> Answerer:
    from rag.answer.local_llm import LocalAnswerer

    return LocalAnswerer(
        parts.settings, min_relevance=parts.min_relevance, embedder=parts.embedder, quotes=_quotes(parts)
    )


def _quotes(parts: Parts) -> Answerer | None:
    """What a model's answerer quotes when no sentence of the model's answer is backed
    (RAG_QUOTE_FALLBACK), at a higher bar than the offline answerer's own."""
    if not parts.settings.llm.quote_fallback:
        return None
    from rag.answer import relevance
    from rag.answer.extractive import ExtractiveAnswerer

    return ExtractiveAnswerer(
        parts.settings,
        embedder=parts.embedder,
        min_relevance=parts.min_relevance,
        min_sentence_score=relevance.min_fallback_score,
    )


def _local_unavailable(settings: Settings) -> str | None:
    from rag.answer.local_llm import unavailable

    return unavailable(settings)


def _extractive(parts: Parts) -> Answerer:
    from rag.answer.extractive import ExtractiveAnswerer

    return ExtractiveAnswerer(parts.settings, embedder=parts.embedder, min_relevance=parts.min_relevance)


def _needs_openai(settings: Settings) -> str | None:
    if settings.openai.configured:
        return None
    return "--llm openai needs OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server"


_ENTRIES: dict[str, Entry] = {
    "openai": Entry(_llm, _needs_openai),
    "local": Entry(_local, _local_unavailable),
    "extractive": Entry(_extractive, lambda settings: None),
}
#: Other names for an entry (``--llm none``: no LLM).
ALIASES: dict[str, str] = {"none": "extractive"}
#: What ``auto`` tries, in order.
AUTO_ORDER: list[str] = ["openai", "extractive"]


def register(
    name: str, build: Callable[[Parts], Answerer], unavailable: Callable[[Settings], str | None]
) -> Registration[Entry]:
    """Add an answerer backend under ``name`` (``--llm NAME``); ``.undo()`` puts back what it held."""
    return add(_ENTRIES, name, Entry(build, unavailable))


def names() -> list[str]:
    """What ``--llm`` offers (an entry with an alias is offered by its alias: ``none``)."""
    aliased = set(ALIASES.values())
    return ["auto", *(n for n in _ENTRIES if n not in aliased), *ALIASES]


def resolve(settings: Settings, llm: str) -> str:
    """The registry name ``llm`` stands for (``auto`` decided by the settings); raises if unusable."""
    choice = ALIASES.get(llm.strip().lower(), llm.strip().lower())
    if choice == "auto":
        return next(name for name in AUTO_ORDER if _ENTRIES[name].unavailable(settings) is None)
    entry = _ENTRIES.get(choice)
    if entry is None:
        *most, last = names()
        raise UsageError(f"unknown --llm {llm!r}: use {', '.join(most)} or {last}")
    reason = entry.unavailable(settings)
    if reason is not None:
        raise ConfigError(reason)
    return choice


def describe(settings: Settings) -> dict[str, str]:
    """What ``rag ask`` answers with under these settings, for ``rag status`` and ``rag config``:
    ``llm`` (the answerer, or why the one asked for cannot run), ``model``, and ``local_model``
    (what ``--llm local`` would serve)."""
    from rag.answer.local_llm import describe as local_model
    from rag.errors import RagError
    from rag.openai_client import display_url

    found = {"local_model": local_model(settings)}
    try:
        name = resolve(settings, settings.llm.llm)
    except RagError as exc:
        return {"llm": settings.llm.llm, "model": str(exc), **found}
    if name == "openai":
        model = f"{settings.llm.chat_model} at {display_url(settings.openai)}"
    else:
        model = found["local_model"] if name == "local" else "none: quotes the documents"
    return {"llm": name, "model": model, **found}


def create(name: str, parts: Parts) -> Answerer:
    """Build the answerer ``name`` (as returned by ``resolve``)."""
    return _ENTRIES[name].build(parts)
