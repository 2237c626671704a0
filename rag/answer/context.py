"""The sources block of a prompt: retrieved chunks numbered, delimited, and within a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from rag import prompts, tokens
from rag.results import Hit, display_path

#: Appended to a chunk that had to be cut to fit, so neither model nor reader takes it as whole.
TRUNCATED = " […truncated]"

# Tokens a chat message costs beyond its content, and the reply's priming (OpenAI's estimate).
_PER_MESSAGE = 3
_PER_REQUEST = 3


@dataclass(frozen=True)
class Context:
    """The sources a model is given: ``sources[i]`` is numbered ``i + 1``."""

    sources: list[Hit]
    blocks: list[str]
    tokens: int
    #: Retrieved chunks left out because they did not fit.
    dropped: int = 0
    #: True when the one chunk that was given had to be cut.
    truncated: bool = False


def message_tokens(messages: Sequence[dict[str, str]], model: str) -> int:
    """Prompt tokens of chat ``messages`` as OpenAI counts them (exact for text, ±a few framing)."""
    counts = tokens.count_tokens_batch([m["content"] for m in messages], model)
    return _PER_REQUEST + sum(counts) + _PER_MESSAGE * len(messages)


def build_context(hits: Sequence[Hit], *, model: str, budget: int) -> Context:
    """Number ``hits`` in rank order while they fit in ``budget`` tokens; drop the rest.

    Lower-ranked chunks are dropped whole, never cut.  Only when not even the top chunk
    fits is it cut, and then marked with ``TRUNCATED``.
    """
    blocks = [_block(n, hit) for n, hit in enumerate(hits, start=1)]
    # +1 per block: the newline that joins it to the next.
    costs = [n + 1 for n in tokens.count_tokens_batch(blocks, model)]
    used, kept = 0, 0
    for cost in costs:
        if used + cost > budget:
            break
        used, kept = used + cost, kept + 1
    if kept or not hits:
        return Context(list(hits[:kept]), blocks[:kept], used, dropped=len(hits) - kept)

    top = hits[0]
    frame = costs[0] - tokens.count_tokens(top.text.strip(), model)
    room = budget - frame - tokens.count_tokens(TRUNCATED, model)
    while room > 0:
        cut = replace(top, text=tokens.truncate(top.text.strip(), model, room).rstrip() + TRUNCATED)
        block = _block(1, cut)
        cost = tokens.count_tokens(block, model) + 1
        if cost <= budget:
            return Context([cut], [block], cost, dropped=len(hits) - 1, truncated=True)
        room -= cost - budget  # neutralized markup or a re-tokenised seam cost a little more
    return Context([], [], 0, dropped=len(hits))


def _block(n: int, hit: Hit) -> str:
    return prompts.format_source(n, display_path(hit.source), hit.page, hit.text)
