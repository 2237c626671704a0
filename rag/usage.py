"""Token usage of API calls, and what it cost: a value, returned by each call and summed with ``+``.

Every call that spends tokens returns the ``Usage`` it spent, so two conversations (or two
ingests) sharing one answerer or embedder never see each other's tokens: nothing is
measured by reading a shared counter before and after.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.jsonable import Jsonable

if TYPE_CHECKING:
    from rag.settings import Price


@dataclass(frozen=True)
class Usage(Jsonable):
    """Requests and tokens spent on ``model``; ``cost_usd`` is None when the model has no price."""

    json_order = ("model", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "estimated")

    model: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    #: True when some tokens were counted locally because the server reported none.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __bool__(self) -> bool:
        return self.requests > 0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        if not other.requests and not other.total_tokens:
            return self
        if not self.requests and not self.total_tokens:
            return other
        model = self.model if self.model == other.model else "+".join(m for m in (self.model, other.model) if m)
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Usage(
            model=model,
            requests=self.requests + other.requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=cost,
            estimated=self.estimated or other.estimated,
        )

    def __radd__(self, other: object) -> Usage:
        # sum() starts from 0.
        if other == 0:
            return self
        return NotImplemented

    @classmethod
    def call(
        cls,
        model: str,
        prices: Mapping[str, Price],
        *,
        prompt_tokens: int,
        completion_tokens: int = 0,
        estimated: bool = False,
    ) -> Usage:
        """One API call's usage, priced."""
        return cls(
            model=model,
            requests=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd(model, prompt_tokens, completion_tokens, prices),
            estimated=estimated,
        )


_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``; dated snapshots (``gpt-4o-mini-2024-07-18``) use their family's."""
    return prices.get(model) or prices.get(_DATE_SUFFIX.sub("", model))


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, Price]) -> float | None:
    """What the tokens cost in USD, or None when the model has no price (e.g. a local server)."""
    price = price_for(model, prices)
    if price is None:
        return None
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
