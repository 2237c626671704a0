"""``Conversation``: questions that remember the earlier ones, saved as a named session.

Each ``ask`` (1) trims the history to the model's token budget, (2) rewrites a follow-up
into something retrieval can use on its own (the answerer's standalone question when it
``rewrites_followups``, else offline ``followups.expand_query``), (3) asks the engine to
search with the rewrite and to answer the question as typed with the trimmed history, and
(4) saves the turn.  The answer's usage is what this conversation's calls returned: the
rewrite's plus the answer's, never a shared counter read before and after.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rag import prompts, tokens
from rag.answer import followups
from rag.answer.base import DeltaCallback, Turn
from rag.answer.budget import fit_history, history_budget
from rag.chat.sessions import ChatTurn, SessionStore, new_session_name, validate_session_name
from rag.errors import UsageError
from rag.results import Answer
from rag.text import md_cell
from rag.usage import Usage

if TYPE_CHECKING:
    from rag.answer.base import Answerer
    from rag.embed.base import Embedder
    from rag.retrieve.search import Filters, Mode
    from rag.settings import Settings
    from rag.store.index import StoreLayout

__all__ = ["ASK_OPTIONS", "MAX_HISTORY_TOKENS", "REWRITE_TURNS", "Conversation"]

#: Most tokens of history sent with a question, even when the model's window holds more:
#: long histories cost on every question and seldom help retrieval-grounded answers.
MAX_HISTORY_TOKENS = 8000
# Markup a source costs in the prompt beyond its text (the <source ...> element).
_SOURCE_MARKUP_TOKENS = 30
# Chat framing: three messages' overhead plus the reply's priming (OpenAI's estimate).
_FRAMING_TOKENS = 3 + 3 * 3

#: Most earlier turns the model sees when it rewrites a follow-up.
REWRITE_TURNS = 6
#: Options ``ask`` passes on to ``Engine.ask``.
ASK_OPTIONS = frozenset({"k", "filters", "mode"})


class Asker(Protocol):
    """What a conversation uses of its ``Engine``: chat sits below the engine, which makes conversations."""

    settings: Settings
    index_name: str

    @property
    def layout(self) -> StoreLayout: ...
    def answerer(self, llm: str | None = None, model: str | None = None) -> Answerer: ...
    def require_index(self) -> None: ...
    def embedder(self, name: str | None = None) -> Embedder: ...
    def record_usage(self, usage: Usage, kind: str = "chat") -> None: ...
    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: Mode | None = None,
        llm: str | None = None,
        model: str | None = None,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
        search_query: str | None = None,
    ) -> Answer: ...


class Conversation:
    """A chat over one index; follow-ups are rewritten before retrieval.

    >>> chat = engine.chat(session="trip")                 # doctest: +SKIP
    >>> chat.ask("Which bridge spans the Golden Gate?")    # doctest: +SKIP
    >>> chat.ask("and when did it open?")                  # doctest: +SKIP

    ``session`` names a saved session to resume or create; without one a name is generated
    (``.name``).  ``save=False`` keeps the conversation in memory only.  ``llm``, ``model``,
    ``k``, ``filters`` and ``mode`` are as for ``Engine.ask``; ``rewrite_followups=False``
    retrieves with the question as typed; ``history_tokens`` caps the history sent with a
    question; ``history`` continues from earlier turns the caller kept.  One conversation is
    one user's: its questions are answered one at a time.
    """

    def __init__(
        self,
        engine: Asker,
        session: str | None = None,
        *,
        llm: str | None = None,
        model: str | None = None,
        save: bool = True,
        rewrite_followups: bool = True,
        history_tokens: int | None = MAX_HISTORY_TOKENS,
        history: Sequence[ChatTurn] = (),
        **ask_options: Any,
    ) -> None:
        unknown = set(ask_options) - ASK_OPTIONS
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}")
        self.engine = engine
        self.name = validate_session_name(session) if session else new_session_name()
        self.llm, self.model = llm, model
        self.rewrite_followups = rewrite_followups
        self.history_tokens = history_tokens
        self.options = {k: v for k, v in ask_options.items() if v is not None}
        # Fail now, not at the first question: a bad --llm, a missing key, no index.
        self.answerer: Answerer = engine.answerer(llm, model)
        engine.require_index()
        self._lock = threading.RLock()
        self._store = SessionStore(engine.layout.sessions_path) if save else None
        self._turns: list[ChatTurn] = []
        self._last: Answer | None = None
        if self._store is not None:
            info = self._store.info(self.name)
            if info is not None and info.index != engine.index_name:
                self._store.close()
                raise UsageError(
                    f"session '{self.name}' is a chat over index '{info.index}', not '{engine.index_name}': "
                    f"use --index {info.index}"
                )
            self._turns = self._store.turns(self.name)
        #: True when the session already held turns (it was resumed).
        self.resumed = bool(self._turns)
        # Turns a client kept itself (the /v1 API sends the whole conversation each time).
        self._turns.extend(history)

    def __repr__(self) -> str:
        return f"Conversation(name={self.name!r}, index={self.engine.index_name!r}, turns={len(self._turns)})"

    # --- state ----------------------------------------------------------------------------

    @property
    def turns(self) -> list[ChatTurn]:
        """The conversation so far, oldest first."""
        with self._lock:
            return list(self._turns)

    @property
    def last_answer(self) -> Answer | None:
        """The latest answer (rebuilt from the session after a resume), with its context."""
        with self._lock:
            if self._last is not None:
                return self._last
            return self._turns[-1].to_answer() if self._turns else None

    def reset(self) -> None:
        """Forget the conversation (the saved session keeps its name, with no turns)."""
        with self._lock:
            self._turns.clear()
            self._last = None
            if self._store is not None:
                self._store.clear(self.name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- asking ---------------------------------------------------------------------------

    def ask(
        self,
        question: str,
        *,
        on_delta: DeltaCallback | None = None,
        on_rewrite: Callable[[str], None] | None = None,
        **options: Any,
    ) -> Answer:
        """Answer ``question`` in the light of the conversation, and remember it.

        ``on_delta`` receives the answer as it streams; ``on_rewrite`` the rewritten search
        text before retrieval, when the follow-up was rewritten.  ``options`` (``k``,
        ``filters``, ``mode``) apply to this question only.
        """
        question = question.strip()
        if not question:
            raise UsageError("the question is empty")
        unknown = set(options) - ASK_OPTIONS
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}")
        with self._lock:
            merged = {**self.options, **{k: v for k, v in options.items() if v is not None}}
            history = self.history_for(question, k=merged.get("k"))
            search_query, rewrite_cost = self.search_query(question)
            # Engine.ask records only the answer's call; the rewrite is a call of its own.
            self.engine.record_usage(rewrite_cost)
            if search_query != question and on_rewrite is not None:
                on_rewrite(search_query)
            # The answerer gets the question as asked, with the history: the rewrite steers
            # retrieval.  (Giving the extractive answerer the expanded query alone was measured
            # worse: the carried subject words outweigh the user's few, so it quoted the
            # subject's description; it weighs both itself, see ExtractiveAnswerer.follow_up.)
            answer = self.engine.ask(
                question,
                llm=self.llm,
                model=self.model,
                history=history,
                on_delta=on_delta,
                search_query=search_query,
                **merged,
            )
            if search_query != question:
                answer.rewritten_question = search_query
            answer.usage = rewrite_cost + answer.usage
            turn = ChatTurn.from_answer(question, answer, search_query)
            if self._store is not None:
                self._store.append(self.name, self.engine.index_name, turn)
            self._turns.append(turn)
            self._last = answer
            return answer

    async def aask(self, question: str, **kwargs: Any) -> Answer:
        return await asyncio.to_thread(self.ask, question, **kwargs)

    def search_query(self, question: str) -> tuple[str, Usage]:
        """What retrieval searches for (``question``, rewritten when it is a follow-up), and what the rewrite cost."""
        with self._lock:
            turns = list(self._turns)
        if not self.rewrite_followups or not turns:
            return question, Usage()
        if self.answerer.rewrites_followups:
            # The rewrite prompt holds no sources, so it may see more than the answer's history.
            model = self.answerer.model
            window = self.engine.settings.llm.context_window or tokens.context_window(model)
            budget = min(window // 2, self.history_tokens or window)
            recent = [t.as_turn() for t in turns[-REWRITE_TURNS:]]
            rewritten, usage = self.answerer.rewrite(question, fit_history(recent, budget, model))
            return rewritten or question, usage
        # A refusal names nothing the follow-up could refer to.
        plain = [Turn(t.question, "" if t.refused else t.answer) for t in turns]
        return followups.expand_query(question, plain), Usage()

    def history_for(self, question: str, *, k: int | None = None) -> list[Turn]:
        """The earlier turns sent with ``question``: the newest that fit the token budget."""
        model = self.answerer.model
        budget = self.history_budget(question, k=k)
        return fit_history([t.as_turn() for t in self._turns], budget, model)

    def history_budget(self, question: str, *, k: int | None = None) -> int:
        """Tokens of history that fit beside the system prompt, ``question``, sources and answer."""
        settings = self.engine.settings
        model = self.answerer.model
        window = settings.llm.context_window or tokens.context_window(model)
        fixed = (
            tokens.count_tokens(prompts.SYSTEM, model)
            + tokens.count_tokens(prompts.user_message([], question), model)
            + _FRAMING_TOKENS
        )
        return history_budget(
            window=window,
            answer_reserve=settings.llm.max_answer_tokens,
            fixed_tokens=fixed,
            sources_tokens=self._sources_estimate(k),
            cap=self.history_tokens,
        )

    def _sources_estimate(self, k: int | None) -> int:
        # The sources are retrieved after the history is chosen, so estimate them: k chunks
        # of the index's chunk size (the embedder counts tokens a little differently from
        # the chat model; the answerer's own fitting absorbs the difference).
        settings = self.engine.settings
        k = k or self.options.get("k") or settings.retrieval.k
        chunk = settings.ingest.chunk_tokens or self.engine.embedder().default_chunk_tokens
        return int(k) * (chunk + _SOURCE_MARKUP_TOKENS)

    # --- display --------------------------------------------------------------------------

    def _repr_markdown_(self) -> str:
        turns = self.turns
        head = f"**Chat** `{self.name}` · index `{self.engine.index_name}` · {len(turns)} turn(s)"
        parts = [head]
        for turn in turns:
            parts.append(f"**You:** {turn.question}")
            if turn.search_query:
                parts.append(f"<small>searched: *{md_cell(turn.search_query)}*</small>")
            answer = f"*{turn.answer}*" if turn.refused else turn.answer
            parts.append(f"**rag:** {answer}")
            if turn.citations:
                cited = ", ".join(f"[{c.n}] `{md_cell(c.location)}`" for c in turn.citations)
                parts.append(f"<small>Sources: {cited}</small>")
        if not turns:
            parts.append("*No questions yet.*")
        return "\n\n".join(parts)
