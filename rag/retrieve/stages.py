"""Retrieval stages: what reorders (and may cut) the fused candidates before the top k are
kept and read.  Every search goes through them: ``rag search``, ``ask``/``chat``, the server
and ``rag eval``.

A stage is a callable from ``Candidates`` to a ranked list; the table maps a name (what
``RAG_RERANK`` lists) to the ``module:function`` that builds it from the settings, imported
only when chosen.  A reranker is one module plus one line in ``_STAGES``; ``RAG_RERANK`` may
also name a ``module:function`` of one's own.  A builder that loads weights should keep
them (``functools.cache``): stages are built for each search.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.errors import ConfigError
from rag.registries import Registration, add
from rag.retrieve.fusion import Ranked
from rag.settings import Settings
from rag.store.index import Index

__all__ = ["Builder", "Candidates", "Stage", "build", "chosen", "register"]


@dataclass
class Candidates:
    """What a stage sees: the fused candidates best first, more of them than the ``k`` kept."""

    query: str
    k: int
    ranked: Ranked
    #: The query's vector (None in keyword mode without an embedder).
    query_vector: np.ndarray | None
    index: Index
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def vectors(self, ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Stored vectors of ``ids`` (default: every candidate), read once and kept for later stages."""
        ids = [i for i, _ in self.ranked] if ids is None else ids
        missing = [i for i in ids if i not in self._vectors]
        if missing:
            self._vectors.update(self.index.vectors_of(missing))
        return {i: self._vectors[i] for i in ids if i in self._vectors}

    def texts(self) -> dict[str, str]:
        """Every candidate's text, for a stage that reads it (a cross-encoder)."""
        return {i: c.text for i, c in self.index.hydrate([i for i, _ in self.ranked]).items()}


Stage = Callable[[Candidates], Ranked]
#: Builds a stage from the settings.
Builder = Callable[[Settings], Stage]

#: Stage name to its builder (``module:function``, imported when chosen).
_STAGES: dict[str, str | Builder] = {
    "mmr": "rag.retrieve.mmr:from_settings",
}


def register(name: str, builder: Builder) -> Registration[str | Builder]:
    """Add a stage that ``RAG_RERANK`` can name; ``.undo()`` removes it again."""
    return add(_STAGES, name, builder)


def chosen(settings: Settings, mmr: bool | None = None) -> list[str]:
    """The stage names ``RAG_RERANK`` lists, in order; ``RAG_MMR`` (or ``mmr``) adds or drops ``mmr``."""
    listed = [n.strip() for n in (settings.retrieval.rerank or "").split(",") if n.strip()]
    use_mmr = settings.retrieval.mmr if mmr is None else mmr
    if use_mmr and "mmr" not in listed:
        listed.append("mmr")
    return [n for n in listed if n != "mmr" or use_mmr or mmr is None]


def build(settings: Settings, mmr: bool | None = None) -> list[Stage]:
    """The stages a search runs under ``settings``; an unknown name is a ``ConfigError``."""
    return [_builder(name)(settings) for name in chosen(settings, mmr)]


def _builder(name: str) -> Builder:
    target = _STAGES.get(name, name if ":" in name else None)
    if target is None:
        raise ConfigError(f"unknown RAG_RERANK stage {name!r}: use {', '.join(_STAGES)} or MODULE:FUNCTION")
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        found: Builder = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"RAG_RERANK stage {name!r} cannot be loaded: {exc}") from None
    return found
