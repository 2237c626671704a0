"""The answerer interface: a question and retrieved chunks in, an ``Answer`` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rag import prompts
from rag.answer import relevance
from rag.results import Answer, Hit
from rag.settings import Settings

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

    #: "llm" or "extractive".
    mode: str
    #: The model name shown to users ("extractive" for the offline answerer).
    model: str
    #: ``Answer.usage`` when nothing was spent.
    nothing_spent: ClassVar[dict[str, Any]] = {"requests": 0}

    def __init__(self, settings: Settings, *, min_relevance: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self._min_relevance = min_relevance or (lambda: relevance.min_relevance(settings, None))

    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        """Answer ``question`` from ``hits`` (numbered [1]..[n] in order), or decline."""
        hits = list(hits)
        if not hits:
            return self.declined(question, prompts.NO_SOURCES)
        # Keyword evidence (every focus term of the question in one chunk) stands in for a low
        # cosine at the calibrated threshold; a threshold the user set is applied as set.
        keywords = question if self.settings.retrieval.min_score is None else None
        if not relevance.any_relevant(hits, self._min_relevance(), keywords):
            return self.declined(question, prompts.REFUSAL, hits)
        return self._answer(question, hits, history=history, on_delta=on_delta)

    @abstractmethod
    def _answer(
        self, question: str, hits: list[Hit], *, history: Sequence[Turn], on_delta: DeltaCallback | None
    ) -> Answer:
        """Answer from ``hits``, which are non-empty and relevant enough, or decline."""

    def declined(
        self, question: str, text: str, context: list[Hit] | None = None, usage: dict[str, Any] | None = None
    ) -> Answer:
        """A refusal: ``text`` in place of an answer, citing nothing."""
        return Answer(
            question=question,
            text=text,
            refused=True,
            citations=[],
            model=self.model,
            mode=self.mode,
            usage=usage or dict(self.nothing_spent),
            context=context or [],
        )

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        """A follow-up rewritten as a standalone question (default: unchanged)."""
        return question
