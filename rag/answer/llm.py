"""Answers written by an OpenAI chat model (or any compatible server) from the retrieved sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from rag import prompts, tokens
from rag.answer import support
from rag.answer.attribution import cosine_scorer
from rag.answer.base import Answerer, DeltaCallback, Turn
from rag.answer.budget import fit_history, history_budget
from rag.answer.chat_backend import ChatBackend, OpenAIChat, Refused
from rag.answer.citations import CITATION, CitationFilter, citation, citations_for
from rag.answer.context import Context, build_context, message_tokens
from rag.answer.focus import Rarity
from rag.answer.structured import MODES, Mode, ModeMemory, StructuredReply, response_format
from rag.embed.base import Embedder
from rag.errors import ContextLengthError
from rag.results import Answer, Hit, SetAside
from rag.settings import Settings
from rag.usage import Usage

__all__ = ["MODES_FILE", "LLMAnswerer"]

#: What response format each server takes (``rag.answer.structured.ModeMemory``), in RAG_HOME.
MODES_FILE = "llm-modes.json"
# A rewritten question is one short line; more means the model started answering.
_REWRITE_MAX_TOKENS = 200


class LLMAnswerer(Answerer):
    """Builds an "answer from these sources only" prompt, streams the reply, checks citations.

    The prompt and the checks are here; the call itself is the ``backend``'s.

    ``min_relevance`` is the cosine relevance below which no hit counts as relevant; when
    no hit reaches it the answerer declines without calling the model.  One instance serves
    any number of threads: it keeps no state between calls but its HTTP client.
    """

    kind = "llm"
    streams = True
    rewrites_followups = True

    def __init__(
        self,
        settings: Settings,
        *,
        model: str | None = None,
        min_relevance: float,
        embedder: Callable[[], Embedder] | None = None,
        backend: ChatBackend | None = None,
        quotes: Answerer | None = None,
    ) -> None:
        super().__init__(settings, min_relevance=min_relevance)
        self.model = model or settings.llm.chat_model
        #: Where the messages go (``rag.answer.chat_backend``): an OpenAI-compatible server by default.
        self.backend: ChatBackend = backend or OpenAIChat(settings, self.model)
        #: The local embedder that helps attribute uncited sentences (loaded when one needs it).
        self._embedder = embedder
        #: Which response format the server takes, per (base URL, model), kept in RAG_HOME.
        self.modes = ModeMemory(settings.store.home / MODES_FILE)
        #: Quotes the same sources when no sentence of the model's answer is backed (None:
        #: refuse): the documents may well hold the answer the model could not write.
        self.quotes = quotes

    def base_url(self) -> str:
        """Where requests go (part of the key of what response format works)."""
        return self.backend.base_url()

    def close(self) -> None:
        self.backend.close()
        if self.quotes is not None:
            self.quotes.close()

    # --- answering ------------------------------------------------------------------------

    def _answer(
        self,
        question: str,
        hits: list[Hit],
        *,
        history: Sequence[Turn],
        on_delta: DeltaCallback | None,
        rarity: Rarity | None = None,  # the model judges relevance itself; the quotes use it
    ) -> Answer:
        url = self.base_url()
        remembered = self.modes.get(url, self.model)
        mode = remembered or MODES[0]
        while True:
            context, messages = self.prompt(question, hits, history, structured=mode != "markers")
            try:
                answer = self._reply(question, context, messages, mode, on_delta, probe=remembered is None)
            except Refused:
                # The server refused this response_format: nothing was shown; try the next.
                mode = MODES[MODES.index(mode) + 1]
                self.modes.set(url, self.model, mode)
                remembered = None if mode != "markers" else mode
                continue
            if self.quotes is None:
                return answer
            # Only for an answer no source backs: one whose backing chunks lack what the question
            # names (not_answering) says as much of the documents as of the model.  Quoting for
            # both added 5 right answers and 8 near misses on the replays; for
            # "unsupported" alone, 9 and 2 (benchmarks/answers.py, README).
            if answer.refusal == "unsupported":
                return _quoted(self.quotes, answer, "unsupported", history, rarity) or answer
            if not answer.refused and copied_sentences(answer):
                # A sentence copied from a source is the model's choice of chunk, nothing
                # more, and small models copy the top chunk when they find no answer.  Where
                # the quotes (at their high bar) choose only other chunks, theirs is the better
                # choice: on the 0.5B Qwen's replays of SQuAD part A, 8 answers citing a chunk
                # without the answer now cite one with it, and none the other way
                # (benchmarks/answers.py, README).
                quoted = _quoted(self.quotes, answer, "copied", history, rarity)
                if quoted is not None and not _cited_chunks(quoted) & _cited_chunks(answer):
                    return quoted
            return answer

    def _reply(
        self,
        question: str,
        context: Context,
        messages: list[dict[str, str]],
        mode: Mode,
        on_delta: DeltaCallback | None,
        *,
        probe: bool,
    ) -> Answer:
        """One model call in ``mode``, its reply checked: citations, sentinel, support."""
        reply = StructuredReply() if mode != "markers" else None
        check = CitationFilter(len(context.sources), prompts.SENTINEL)
        gate = support.StreamGate(question, context.sources, on_delta)

        def emit(delta: str) -> None:
            gate.feed(check.feed(reply.feed(delta) if reply is not None else delta), check.text)

        raw, reported = self.backend.complete(
            messages, emit, stream=on_delta is not None, response_format=response_format(mode), probe=probe
        )
        if probe and mode != "markers":
            self.modes.set(self.base_url(), self.model, mode)
        tail = check.feed(reply.finish()) if reply is not None else ""
        tail += check.finish()
        gate.feed(tail, check.text)
        usage = self._usage(messages, raw, reported)
        citations = citations_for(check.text, context.sources)
        # Small models often say why before the sentinel ("I can't find it. NOT_IN_DOCUMENTS"),
        # or fill in sentences and set not_found: with nothing cited, that is a refusal too.
        # With citations it is an answer with a gap.
        not_found = reply is not None and bool(reply.not_found)
        if check.refused or ((check.sentinel_inside or not_found) and not citations) or not check.text.strip():
            return self.declined(question, prompts.REFUSAL, context.sources, usage)
        scorer = cosine_scorer(self._embedder, [h.text for h in context.sources]) if self._embedder else None
        sentences = support.check(check.text, context.sources, scorer, question)
        if not any(s.supported for s in sentences):
            return self.declined(question, prompts.REFUSAL, context.sources, usage, reason="unsupported")
        if not support.addresses(question, check.text, sentences, context.sources):
            return self.declined(question, prompts.REFUSAL, context.sources, usage, reason="not_answering")
        gate.release()
        attributed = {n for s in sentences if s.attributed for n in s.citations} - {c.n for c in citations}
        citations += [replace(citation(n, context.sources[n - 1]), attributed=True) for n in attributed]
        return Answer(
            question=question,
            text=check.text,
            refused=False,
            citations=sorted(citations, key=lambda c: c.n),
            model=self.model,
            answerer=self.kind,
            usage=usage,
            context=context.sources,
            removed_citations=check.removed,
            support=sentences,
        )

    def prompt(
        self, question: str, hits: Sequence[Hit], history: Sequence[Turn] = (), *, structured: bool = False
    ) -> tuple[Context, list[dict[str, str]]]:
        """The sources that fit and the chat messages for ``question`` (asking for JSON when ``structured``)."""
        system = prompts.SYSTEM_STRUCTURED if structured else prompts.SYSTEM
        window = self.settings.llm.context_window or tokens.context_window(self.model)
        reserve = self.settings.llm.max_answer_tokens
        fixed = message_tokens(self._messages(system, question, [], []), self.model)
        # Old turns give way to sources, which keep at least half the room.
        turns = fit_history(
            history,
            history_budget(window=window, answer_reserve=reserve, fixed_tokens=fixed, sources_tokens=0),
            self.model,
        )
        budget = window - reserve - message_tokens(self._messages(system, question, [], turns), self.model)
        context = build_context(hits, model=self.model, budget=budget)
        if not context.sources:
            raise ContextLengthError(
                f"the question leaves no room for sources in {self.model}'s context window of {window} tokens"
                " (set RAG_CONTEXT_WINDOW if the model has a larger one)"
            )
        return context, self._messages(system, question, context.blocks, turns)

    @staticmethod
    def _messages(system: str, question: str, blocks: list[str], history: Sequence[Turn]) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": system}]
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
        raw, reported = self.backend.complete(messages, None, stream=False, max_tokens=_REWRITE_MAX_TOKENS)
        rewritten = raw.strip().strip('"').strip()
        return rewritten or question, self._usage(messages, raw, reported)

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


def _quoted(
    quotes: Answerer, answer: Answer, reason: SetAside, history: Sequence[Turn], rarity: Rarity | None
) -> Answer | None:
    """``quotes``' answer from the sources the model was given, in place of the model's
    ``answer`` (set aside for ``reason``); None when the quotes decline.

    The quotes are not streamed: the model's words may have been, and a client shows the
    final answer in their place (as it shows a refusal).
    """
    quoted = quotes.answer(answer.question, answer.context, history=history, rarity=rarity)
    if quoted.refused:
        return None
    # The model's name stays: its call is what the answer cost.
    return replace(quoted, model=answer.model, usage=answer.usage, set_aside=reason)


def copied_sentences(answer: Answer) -> int:
    """How many sentences of ``answer`` are word for word in one of its sources (citations
    and spacing aside)."""
    sources = [" ".join(hit.text.split()) for hit in answer.context]
    copied = 0
    for sentence in answer.support:
        words = " ".join(CITATION.sub("", answer.text[sentence.start : sentence.end]).split())
        copied += bool(words) and any(words in source for source in sources)
    return copied


def _cited_chunks(answer: Answer) -> set[str]:
    return {c.chunk_id for c in answer.citations}
