"""The answerer interface: a question and retrieved chunks in, an ``Answer`` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.results import Answer, Hit

#: Receives answer text as it is generated.
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation."""

    question: str
    answer: str


class Answerer(ABC):
    """Writes an answer from retrieved context only, citing it as [n]."""

    #: "llm" or "extractive".
    mode: str
    #: The model name shown to users ("extractive" for the offline answerer).
    model: str

    @abstractmethod
    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        """Answer ``question`` from ``hits`` (numbered [1]..[n] in order), or decline."""

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        """A follow-up rewritten as a standalone question (default: unchanged)."""
        return question
