"""Token usage of API calls, and what it cost."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from rag.settings import Price


@dataclass
class Usage:
    """Tokens and requests spent on one model; ``add`` may be called from many threads."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int = 0, completion_tokens: int = 0, requests: int = 1) -> None:
        """Count one API call (or ``requests`` of them)."""
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.requests += requests

    def merge(self, other: Usage) -> None:
        """Add another tally of the same model into this one."""
        snap = other.snapshot()
        self.add(snap.prompt_tokens, snap.completion_tokens, snap.requests)

    def snapshot(self) -> Usage:
        """A consistent copy, safe to read while other threads keep adding."""
        with self._lock:
            return Usage(self.model, self.prompt_tokens, self.completion_tokens, self.requests)


_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``; dated snapshots (``gpt-4o-mini-2024-07-18``) use their family's."""
    return prices.get(model) or prices.get(_DATE_SUFFIX.sub("", model))


def cost_usd(usage: Usage, prices: Mapping[str, Price]) -> float | None:
    """What ``usage`` cost in USD, or None when the model has no price (e.g. a local server)."""
    price = price_for(usage.model, prices)
    if price is None:
        return None
    snap = usage.snapshot()
    return (snap.prompt_tokens * price.input + snap.completion_tokens * price.output) / 1_000_000
