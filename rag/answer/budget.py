"""How much conversation history a prompt can hold: written once, for chat and the LLM answerer.

``history_budget`` is the model's window less the answer's reserve, the fixed prompt, and
room for the sources (never less than half of what remains, so a long conversation never
crowds them out); ``fit_history`` keeps the newest turns that fit it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag import tokens
from rag.answer.base import Turn

# Chat framing per message, as in rag.answer.context (OpenAI's estimate).
_PER_MESSAGE = 3
# Shortest answer worth keeping when the latest turn has to be cut to fit.
_MIN_ANSWER_TOKENS = 32
CUT = " […]"


def turn_tokens(turn: Turn, model: str) -> int:
    """Prompt tokens one earlier turn costs (a user and an assistant message)."""
    return tokens.count_tokens(turn.question, model) + tokens.count_tokens(turn.answer, model) + 2 * _PER_MESSAGE


def history_budget(
    *, window: int, answer_reserve: int, fixed_tokens: int, sources_tokens: int, cap: int | None = None
) -> int:
    """Tokens left for earlier turns once the answer, the fixed prompt and the sources have theirs.

    ``fixed_tokens`` is the system prompt and the question's message; ``sources_tokens``
    the expected size of the sources.  The sources get at least half of what remains, so a
    long conversation never crowds them out.
    """
    room = window - answer_reserve - fixed_tokens
    sources = max(sources_tokens, room // 2)
    budget = max(0, room - sources)
    return budget if cap is None else min(budget, cap)


def fit_history(history: Sequence[Turn], budget: int, model: str) -> list[Turn]:
    """The newest turns whose tokens fit ``budget``, oldest first.

    Older turns are dropped whole.  When not even the latest turn fits, its answer is cut
    (and marked) rather than losing what the follow-up most likely refers to.
    """
    kept: list[Turn] = []
    used = 0
    for turn in reversed(history):
        cost = turn_tokens(turn, model)
        if used + cost <= budget:
            kept.append(turn)
            used += cost
            continue
        if not kept:
            room = budget - tokens.count_tokens(turn.question, model) - 2 * _PER_MESSAGE
            room -= tokens.count_tokens(CUT, model)
            if room >= _MIN_ANSWER_TOKENS:
                kept.append(Turn(turn.question, tokens.truncate(turn.answer, model, room).rstrip() + CUT))
        break
    return kept[::-1]
