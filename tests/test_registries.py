"""Extension tables (``rag.registries``): each ``register`` adds a name and its undo takes it away
again, putting back what the name held before."""

from __future__ import annotations

import pytest

from rag.answer import registry
from rag.answer.base import Answerer
from rag.answer.extractive import ExtractiveAnswerer
from rag.errors import UsageError
from rag.settings import Settings


def test_an_answerer_backend_is_registered_and_undone(settings: Settings) -> None:
    def build(parts: registry.Parts) -> Answerer:
        return ExtractiveAnswerer(parts.settings, embedder=parts.embedder, min_relevance=parts.min_relevance)

    registration = registry.register("quoting", build, lambda settings: None)
    assert registry.resolve(settings, "quoting") == "quoting" and "quoting" in registry.names()
    registration.undo()
    registration.undo()  # twice is harmless
    with pytest.raises(UsageError, match="unknown --llm 'quoting'"):
        registry.resolve(settings, "quoting")


def test_registering_over_a_name_and_undoing_puts_the_old_entry_back(settings: Settings) -> None:
    off = registry.register("extractive", lambda parts: registry.create("openai", parts), lambda settings: "off here")
    with off, pytest.raises(UsageError, match="off here"):
        registry.resolve(settings, "none")
    assert registry.resolve(settings, "none") == "extractive"
