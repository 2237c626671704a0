"""The answerer interface: a question and retrieved chunks in, an ``Answer`` out.

An answerer holds no reference to an engine: whoever builds it (``rag.answer.registry``,
called by the engine) hands it the relevance threshold and, when it needs one, the
embedder.  Every call that spends tokens returns its ``Usage``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rag import prompts
from rag.answer import relevance
from rag.answer.focus import Rarity
from rag.results import Answer, Hit, Refusal
from rag.settings import Settings
from rag.usage import Usage

#: Receives answer text as it is generated.
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation."""

    question: str
    answer: str


class Answerer(ABC):
    """Writes an answer from retrieved context only, citing it as [n].

    ``answer`` declines on its own when there are no hits, or when none reaches the
    relevance threshold (``min_relevance()``) or holds every focus term of the question
    (``relevance.keyword_match``), so a backend's ``_answer`` only ever sees relevant context.
    """

    #: Name in the answerer registry, and ``Answer.answerer``: "llm", "extractive"...
    kind: ClassVar[str]
    #: True when answers arrive in pieces as they are generated (worth streaming to a terminal).
    streams: ClassVar[bool] = False
    #: True when ``rewrite`` turns follow-ups into standalone questions itself (else chat
    #: expands them offline).
    rewrites_followups: ClassVar[bool] = False
    #: The model name shown to users ("extractive" for the offline answerer).
    model: str

    def __init__(self, settings: Settings, *, min_relevance: float) -> None:
        self.settings = settings
        #: The chunk relevance below which the answerer declines without answering.
        self.min_relevance = min_relevance

    def close(self) -> None:
        """Release connections (a model's HTTP client); the offline answerer holds none."""
        return None

    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
        rarity: Rarity | None = None,
    ) -> Answer:
        """Answer ``question`` from ``hits`` (numbered [1]..[n] in order), or decline.

        ``rarity`` tells how rare words are in the index the hits came from (answerers are
        shared between indexes, so it comes with each call); without it all words weigh alike.
        """
        hits = list(hits)
        if not hits:
            return self.declined(question, prompts.NO_SOURCES, reason="no_sources")
        # Keyword evidence (every focus term of the question in one chunk) stands in for a low
        # cosine at the calibrated threshold; a threshold the user set is applied as set.
        keywords = question if self.settings.retrieval.min_score is None else None
        if not relevance.any_relevant(hits, self.min_relevance, keywords):
            return self.declined(question, prompts.REFUSAL, hits, reason="not_relevant")
        return self._answer(question, hits, history=history, on_delta=on_delta, rarity=rarity)

    @abstractmethod
    def _answer(
        self,
        question: str,
        hits: list[Hit],
        *,
        history: Sequence[Turn],
        on_delta: DeltaCallback | None,
        rarity: Rarity | None = None,
    ) -> Answer:
        """Answer from ``hits``, which are non-empty and relevant enough, or decline."""

    def declined(
        self,
        question: str,
        text: str,
        context: list[Hit] | None = None,
        usage: Usage | None = None,
        *,
        reason: Refusal = "not_found",
    ) -> Answer:
        """A refusal: ``text`` in place of an answer, citing nothing, for ``reason``."""
        return Answer(
            question=question,
            text=text,
            refused=True,
            citations=[],
            model=self.model,
            answerer=self.kind,
            usage=usage or Usage(),
            context=context or [],
            refusal=reason,
        )

    def rewrite(self, question: str, history: Sequence[Turn]) -> tuple[str, Usage]:
        """A follow-up rewritten as a standalone question, and what that cost (default: unchanged, free)."""
        return question, Usage()
