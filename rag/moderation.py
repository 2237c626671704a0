"""Optional moderation of questions and answers through OpenAI's moderation endpoint.

Off unless ``RAG_MODERATION=on``.  Public deployments (``rag serve``) and some providers'
terms expect it.  A flagged question is refused before retrieval, naming the categories;
a flagged answer is withheld the same way.  The engine applies it, so ``rag ask``,
``rag chat``, the API and ``/v1`` all behave alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.openai_client import LazyClient, translate_errors
from rag.results import Answer
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.answer.base import Answerer

QUESTION_FLAGGED = "This question was flagged by moderation ({categories}), so it will not be answered."
ANSWER_FLAGGED = "The answer was withheld: moderation flagged it ({categories})."


@dataclass(frozen=True)
class Verdict:
    """What the moderation endpoint said about one text."""

    flagged: bool
    categories: tuple[str, ...] = ()

    @property
    def listed(self) -> str:
        return ", ".join(self.categories) or "unspecified"


class Moderator:
    """Checks texts with the configured provider's moderation model; one client, shared by threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.llm.moderation_model
        self._client = LazyClient(settings.openai)

    def close(self) -> None:
        self._client.close()

    def check(self, text: str) -> Verdict:
        """The verdict on ``text``; provider failures raise ``ProviderError`` (never silently pass)."""
        with translate_errors(self.settings.openai, model=self.model):
            response = self._client.get().moderations.create(model=self.model, input=text)
        flagged: list[str] = []
        any_flagged = False
        for result in response.results:
            any_flagged = any_flagged or bool(result.flagged)
            categories = result.categories.model_dump(by_alias=True) if result.categories is not None else {}
            flagged += [name for name, on in categories.items() if on and name not in flagged]
        return Verdict(any_flagged, tuple(flagged))

    def screen_question(self, answerer: Answerer, question: str) -> Answer | None:
        """A refusal naming the categories when ``question`` is flagged; None when it may be answered."""
        verdict = self.check(question)
        if not verdict.flagged:
            return None
        return answerer.declined(question, QUESTION_FLAGGED.format(categories=verdict.listed), reason="flagged")

    def screen_answer(self, answerer: Answerer, answer: Answer) -> Answer:
        """``answer``, or a refusal in its place when its text is flagged."""
        if answer.refused:
            return answer
        verdict = self.check(answer.text)
        if not verdict.flagged:
            return answer
        text = ANSWER_FLAGGED.format(categories=verdict.listed)
        return answerer.declined(answer.question, text, answer.context, answer.usage, reason="flagged")
