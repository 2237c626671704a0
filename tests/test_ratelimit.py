"""The client-side requests/tokens-per-minute limiter."""

from __future__ import annotations

import threading

import pytest

from rag.ratelimit import RateLimiter


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rpm: int = 0, tpm: int = 0) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rpm, tpm, clock=clock, sleep=clock.sleep), clock


def test_zero_means_no_cap() -> None:
    lim, clock = limiter(0, 0)
    assert not lim.enabled
    for _ in range(10_000):
        assert lim.acquire(1_000_000) == 0.0
    assert clock.slept == []


def test_requests_per_minute() -> None:
    lim, clock = limiter(rpm=60)
    for _ in range(60):  # a full minute's worth passes at once after idling
        assert lim.acquire() == 0.0
    assert lim.acquire() == pytest.approx(1.0)  # then one per second
    assert lim.acquire() == pytest.approx(1.0)
    clock.now += 10  # idle time refills the bucket
    for _ in range(10):
        assert lim.acquire() == 0.0
    assert lim.acquire() == pytest.approx(1.0)


def test_tokens_per_minute() -> None:
    lim, clock = limiter(tpm=6000)  # 100 tokens per second
    assert lim.acquire(5000) == 0.0
    assert lim.acquire(1000) == 0.0
    assert lim.acquire(500) == pytest.approx(5.0)
    assert lim.acquire(0) == 0.0  # no tokens, no token wait
    # A request larger than the whole bucket is let through once the bucket is full,
    # instead of waiting forever.
    clock.now += 1000
    assert lim.acquire(50_000) == 0.0
    assert lim.acquire(100) == pytest.approx(1.0)


def test_both_caps_wait_for_the_slower() -> None:
    lim, _ = limiter(rpm=600, tpm=600)  # 10 requests/s, 10 tokens/s
    assert lim.acquire(600) == 0.0
    assert lim.acquire(20) == pytest.approx(2.0)  # tokens bind, not requests


def test_long_run_rate_never_exceeds_the_cap() -> None:
    lim, clock = limiter(rpm=120, tpm=12_000)
    start = clock.now
    for _ in range(1000):
        lim.acquire(100)
    elapsed = clock.now - start
    # 100,000 tokens at 200/s after a 12,000 burst; 1000 requests at 2/s after a burst of 120.
    assert elapsed == pytest.approx(max((100_000 - 12_000) / 200, (1000 - 120) / 2), rel=1e-6)


def test_threads_are_held_back() -> None:
    # 100 tokens/s.  The clock stands still and sleeps return at once: what is checked is the
    # turn each thread reserved, whatever the machine's load does to the threads' timing.
    clock = FakeClock()
    lim = RateLimiter(tokens_per_minute=6000, clock=clock, sleep=lambda seconds: None)
    lim.acquire(6000)  # drain the burst
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        waited = lim.acquire(5)
        with lock:
            waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 tokens at 100/s: each thread waits its own 50 ms turn after the one before.
    assert sorted(waits) == pytest.approx([0.05 * (i + 1) for i in range(8)])


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(-1, 0)
