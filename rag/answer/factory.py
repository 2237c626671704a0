"""Which answerer ``ask`` uses: the LLM when one is configured (or asked for), else extractive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.answer import relevance
from rag.answer.base import Answerer
from rag.errors import ConfigError, UsageError
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.engine import Engine

LLM_CHOICES = ("auto", "openai", "none")


def create_answerer(settings: Settings, *, llm: str, model: str, engine: Engine | None = None) -> Answerer:
    """An answerer for ``llm`` (auto, openai or none) and chat ``model``.

    ``engine`` supplies the index's embedder, looked up only when an answer needs it, so
    that building an answerer never loads a model or opens an index.
    """
    choice = llm.strip().lower()
    if choice not in LLM_CHOICES:
        raise UsageError(f"unknown --llm {llm!r}: use auto, openai or none")
    if choice == "openai" and not settings.openai.configured:
        raise ConfigError("--llm openai needs OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server")

    def min_relevance() -> float:
        return relevance.min_relevance(settings, engine.embedder().name if engine is not None else None)

    if choice == "openai" or (choice == "auto" and settings.openai.configured):
        from rag.answer.llm import LLMAnswerer

        return LLMAnswerer(settings, model=model, min_relevance=min_relevance)
    if engine is None:
        raise UsageError("the extractive answerer needs an engine (for its embedder)")
    from rag.answer.extractive import ExtractiveAnswerer

    return ExtractiveAnswerer(settings, engine=engine, min_relevance=min_relevance)
