"""A client-side cap on requests and tokens per minute, shared by threads.

Staying under the provider's limits up front is cheaper than being answered 429 and
backing off: the retry policy (``rag.openai_client``) still catches what slips through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Bucket:
    """Token bucket of ``per_minute`` capacity, refilled continuously; may go into debt."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = now

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` now; return the seconds the caller must wait before using it."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        # More than a full bucket could never be granted; treat it as exactly one full bucket.
        amount = min(amount, self.capacity)
        wait = max(0.0, (amount - self.level) / self.rate)
        self.level -= amount
        return wait


class RateLimiter:
    """Blocks callers so that at most ``requests_per_minute`` and ``tokens_per_minute`` pass.

    0 means no cap.  Each call reserves its share at once (the balance may go negative),
    so waiting callers are served in arrival order and the long-run rate never exceeds
    the cap; a full minute's worth may pass at once when the limiter has been idle.
    """

    def __init__(
        self,
        requests_per_minute: int = 0,
        tokens_per_minute: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute < 0 or tokens_per_minute < 0:
            raise ValueError("rate limits must be >= 0")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = _Bucket(requests_per_minute, now) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, now) if tokens_per_minute else None

    @property
    def enabled(self) -> bool:
        return self._requests is not None or self._tokens is not None

    def acquire(self, tokens: int = 0) -> float:
        """Wait until one request of ``tokens`` tokens is allowed; return the seconds waited."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            wait = 0.0
            if self._requests is not None:
                wait = self._requests.reserve(1, now)
            if self._tokens is not None and tokens > 0:
                wait = max(wait, self._tokens.reserve(tokens, now))
        if wait > 0:
            self._sleep(wait)  # outside the lock, so other threads can reserve their turn
        return wait
