"""Answers written by an OpenAI chat model (or any compatible server) from the retrieved sources."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rag import prompts, tokens
from rag.answer.base import Answerer, DeltaCallback, Turn
from rag.answer.budget import fit_history, history_budget
from rag.answer.citations import CitationFilter, citations_for
from rag.answer.context import Context, build_context, message_tokens
from rag.answer.focus import Rarity
from rag.errors import ContextLengthError
from rag.openai_client import LazyClient, translate_errors
from rag.results import Answer, Hit
from rag.settings import Settings
from rag.usage import Usage

if TYPE_CHECKING:
    import openai

# A rewritten question is one short line; more means the model started answering.
_REWRITE_MAX_TOKENS = 200
# o-series and gpt-5 models accept no temperature but their default.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


class LLMAnswerer(Answerer):
    """Builds an "answer from these sources only" prompt, streams the reply, checks citations.

    ``min_relevance`` is the cosine relevance below which no hit counts as relevant; when
    no hit reaches it the answerer declines without calling the model.  One instance serves
    any number of threads: it keeps no state between calls but its HTTP client.
    """

    kind = "llm"
    streams = True
    rewrites_followups = True

    def __init__(self, settings: Settings, *, model: str | None = None, min_relevance: float) -> None:
        super().__init__(settings, min_relevance=min_relevance)
        self.model = model or settings.llm.chat_model
        self._client = LazyClient(settings.openai)

    @property
    def client(self) -> openai.OpenAI:
        return self._client.get()

    def close(self) -> None:
        self._client.close()

    # --- answering ------------------------------------------------------------------------

    def _answer(
        self,
        question: str,
        hits: list[Hit],
        *,
        history: Sequence[Turn],
        on_delta: DeltaCallback | None,
        rarity: Rarity | None = None,  # the model judges relevance itself
    ) -> Answer:
        context, messages = self.prompt(question, hits, history)
        check = CitationFilter(len(context.sources), prompts.SENTINEL)

        def emit(delta: str) -> None:
            shown = check.feed(delta)
            if shown and on_delta is not None:
                on_delta(shown)

        raw, reported = self._complete(messages, emit, stream=on_delta is not None)
        tail = check.finish()
        if tail and on_delta is not None:
            on_delta(tail)
        usage = self._usage(messages, raw, reported)
        citations = citations_for(check.text, context.sources)
        # Small models often say why before the sentinel ("I can't find it. NOT_IN_DOCUMENTS"):
        # with nothing cited, that is a refusal too.  With citations it is an answer with a gap.
        if check.refused or (check.sentinel_inside and not citations):
            return self.declined(question, prompts.REFUSAL, context.sources, usage)
        return Answer(
            question=question,
            text=check.text,
            refused=False,
            citations=citations,
            model=self.model,
            answerer=self.kind,
            usage=usage,
            context=context.sources,
            removed_citations=check.removed,
        )

    def prompt(
        self, question: str, hits: Sequence[Hit], history: Sequence[Turn] = ()
    ) -> tuple[Context, list[dict[str, str]]]:
        """The sources that fit and the chat messages for ``question``."""
        window = self.settings.llm.context_window or tokens.context_window(self.model)
        reserve = self.settings.llm.max_answer_tokens
        fixed = message_tokens(self._messages(question, [], []), self.model)
        # Old turns give way to sources, which keep at least half the room.
        turns = fit_history(
            history,
            history_budget(window=window, answer_reserve=reserve, fixed_tokens=fixed, sources_tokens=0),
            self.model,
        )
        budget = window - reserve - message_tokens(self._messages(question, [], turns), self.model)
        context = build_context(hits, model=self.model, budget=budget)
        if not context.sources:
            raise ContextLengthError(
                f"the question leaves no room for sources in {self.model}'s context window of {window} tokens"
                " (set RAG_CONTEXT_WINDOW if the model has a larger one)"
            )
        return context, self._messages(question, context.blocks, turns)

    @staticmethod
    def _messages(question: str, blocks: list[str], history: Sequence[Turn]) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": prompts.SYSTEM}]
        for turn in history:
            messages.append({"role": "user", "content": turn.question})
            messages.append({"role": "assistant", "content": turn.answer})
        messages.append({"role": "user", "content": prompts.user_message(blocks, question)})
        return messages

    def rewrite(self, question: str, history: Sequence[Turn]) -> tuple[str, Usage]:
        """``question`` as a standalone question given ``history`` (one extra model call), and its usage."""
        if not history:
            return question, Usage()
        messages = prompts.rewrite_messages([(t.question, t.answer) for t in history], question)
        raw, reported = self._complete(messages, None, stream=False, max_tokens=_REWRITE_MAX_TOKENS)
        rewritten = raw.strip().strip('"').strip()
        return rewritten or question, self._usage(messages, raw, reported)

    # --- the API call ---------------------------------------------------------------------

    def _complete(
        self,
        messages: list[dict[str, str]],
        on_delta: DeltaCallback | None,
        *,
        stream: bool,
        max_tokens: int | None = None,
    ) -> tuple[str, Any]:
        """The reply text and the usage object the server reported (None if it sent none)."""
        # OpenAI's newer models accept only max_completion_tokens; many compatible servers
        # know only max_tokens.
        limit_name = "max_tokens" if self.settings.openai.base_url else "max_completion_tokens"
        options: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            limit_name: max_tokens or self.settings.llm.max_answer_tokens,
        }
        if not _REASONING_MODEL.match(self.model.rsplit("/", 1)[-1]):
            # o-series and gpt-5 models reject any temperature but their default.
            options["temperature"] = self.settings.llm.temperature
        with translate_errors(self.settings.openai, model=self.model):
            if not stream:
                response = self.client.chat.completions.create(**options)
                text = (response.choices[0].message.content or "") if response.choices else ""
                if on_delta is not None:
                    on_delta(text)
                return text, response.usage
            parts: list[str] = []
            reported = None
            with self.client.chat.completions.create(
                **options, stream=True, stream_options={"include_usage": True}
            ) as events:
                for event in events:
                    if event.usage is not None:
                        reported = event.usage
                    delta = event.choices[0].delta.content if event.choices else None
                    if delta:
                        parts.append(delta)
                        if on_delta is not None:
                            on_delta(delta)
            return "".join(parts), reported

    def _usage(self, messages: list[dict[str, str]], reply: str, reported: Any) -> Usage:
        """Usage of one call; counted locally when the server sent none."""
        if reported is not None:
            prompt, completion = reported.prompt_tokens or 0, reported.completion_tokens or 0
        else:
            prompt, completion = message_tokens(messages, self.model), tokens.count_tokens(reply, self.model)
        return Usage.call(
            self.model,
            self.settings.prices,
            prompt_tokens=prompt,
            completion_tokens=completion,
            estimated=reported is None,
        )
