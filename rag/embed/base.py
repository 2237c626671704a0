"""The embedder interface, and the one shared caller that batches for every backend.

A backend implements ``embed_batch`` (and ``count_tokens`` when it has a real tokenizer)
and declares its limits as attributes; ``embed_many`` plans batches within those limits,
runs up to ``concurrency`` of them at once, and hands each result to a callback as soon as
it arrives so that the caller can store it before the next one finishes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

import numpy as np

from rag.tokens import estimate_tokens
from rag.usage import Usage

Vectors = np.ndarray
"""A float32 array of shape (n, dimension) whose rows have unit length."""


class Embedder(ABC):
    """Turns texts into unit-length vectors."""

    #: Stable identifier recorded in each index, e.g. ``local:all-MiniLM-L6-v2``.
    name: str
    #: Length of every vector.
    dimension: int
    #: Hard input limit in this embedder's tokens; text beyond it would be silently lost.
    max_input_tokens: int
    #: Chunk size the chunker aims for when the user sets none.
    default_chunk_tokens: int = 200
    #: Most texts per ``embed_batch`` call.
    batch_size: int = 32
    #: Most tokens per ``embed_batch`` call (0: no limit).
    max_batch_tokens: int = 0
    #: ``embed_batch`` calls that may run at once.
    concurrency: int = 1
    #: For a model run here, which pads each batch to its longest text: what one more call
    #: costs, in padded tokens.  Batches are then planned to waste the least (0: fill each).
    call_cost_tokens: int = 0
    #: False for embedders that call a (possibly paid) API; the extractive answerer then
    #: scores sentences with the local model instead.
    runs_locally: bool = True

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed one batch that is already within the limits above."""

    def embed_batch_usage(self, texts: Sequence[str]) -> tuple[Vectors, Usage]:
        """``embed_batch`` and what it spent (nothing, for a local model)."""
        return self.embed_batch(texts), Usage()

    def embed_query(self, text: str) -> np.ndarray:
        """Embed a search query (some models embed queries differently from passages)."""
        return self.embed_batch([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, as the model counts them.  The default over-estimates."""
        return [estimate_tokens(t) for t in texts]

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release threads, sessions or connections."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dimension}>"


def plan_batches(token_counts: Sequence[int], batch_size: int, max_batch_tokens: int = 0) -> list[list[int]]:
    """Group text indices into batches of similar length, within both limits.

    Sorting by length means each batch pads only to its own longest text (dynamic
    padding), which is most of the speed of a local transformer on short passages.
    """
    order = sorted(range(len(token_counts)), key=lambda i: token_counts[i])
    batches: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for i in order:
        n = token_counts[i]
        full = len(current) >= batch_size or (
            max_batch_tokens > 0 and current and current_tokens + n > max_batch_tokens
        )
        if full:
            batches.append(current)
            current, current_tokens = [], 0
        current.append(i)
        current_tokens += n
    if current:
        batches.append(current)
    return batches


def plan_padded_batches(token_counts: Sequence[int], batch_size: int, call_cost: int) -> list[list[int]]:
    """Group text indices into batches of at most ``batch_size`` that cost the least padding.

    Sorted by length, a batch is a run of neighbours and costs its longest text times its
    size, plus ``call_cost`` per call; dynamic programming finds the cheapest runs.  Filling
    every batch in order wastes most where lengths jump (a small window, a long tail).
    """
    order = sorted(range(len(token_counts)), key=lambda i: token_counts[i])
    lengths = [token_counts[i] for i in order]
    best = [0] + [0] * len(order)
    start = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[end - 1]
        best[end], start[end] = min(
            (best[end - size] + longest * size + call_cost, end - size) for size in range(1, min(batch_size, end) + 1)
        )
    batches: list[list[int]] = []
    end = len(order)
    while end:
        batches.append(order[start[end] : end])
        end = start[end]
    return batches[::-1]


T = TypeVar("T")
BatchCallback = Callable[[list[int], Vectors], None]


def embed_many(
    embedder: Embedder,
    texts: Sequence[str],
    on_batch: BatchCallback | None = None,
    *,
    token_counts: Sequence[int] | None = None,
) -> Vectors:
    """Embed all ``texts``; returns vectors in input order (``embed_all`` without the usage)."""
    return embed_all(embedder, texts, on_batch, token_counts=token_counts)[0]


def plan(embedder: Embedder, token_counts: Sequence[int]) -> list[list[int]]:
    """Batches of text indices within ``embedder``'s limits, planned as it prefers."""
    if embedder.call_cost_tokens and not embedder.max_batch_tokens:
        return plan_padded_batches(token_counts, embedder.batch_size, embedder.call_cost_tokens)
    return plan_batches(token_counts, embedder.batch_size, embedder.max_batch_tokens)


def embed_all(
    embedder: Embedder,
    texts: Sequence[str],
    on_batch: BatchCallback | None = None,
    *,
    token_counts: Sequence[int] | None = None,
    on_usage: Callable[[Usage], None] | None = None,
) -> tuple[Vectors, Usage]:
    """Embed all ``texts``; returns vectors in input order and what the calls spent.

    ``on_batch(indices, vectors)`` runs in the calling thread for every finished batch,
    in completion order, and ``on_usage(usage)`` for every call that came back, so a caller
    interrupted by an error still knows what was spent.  If a batch fails, no new batches
    start, the ones in flight are allowed to finish (and are handed to ``on_batch``), and
    the first error is raised.
    """
    result = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    if not texts:
        return result, Usage()
    counts = list(token_counts) if token_counts is not None else embedder.count_tokens(texts)

    def deliver(indices: list[int], vectors: Vectors) -> None:
        result[indices] = vectors
        if on_batch is not None:
            on_batch(indices, vectors)

    batches = ((indices, [texts[i] for i in indices]) for indices in plan(embedder, counts))
    return result, embed_stream(embedder, batches, deliver, on_usage=on_usage)


def embed_stream(
    embedder: Embedder,
    batches: Iterable[tuple[T, Sequence[str]]],
    deliver: Callable[[T, Vectors], None],
    *,
    on_usage: Callable[[Usage], None] | None = None,
) -> Usage:
    """Embed each ``(tag, texts)`` batch, up to ``concurrency`` at once; returns what was spent.

    ``deliver(tag, vectors)`` runs in the calling thread as each batch arrives, and
    ``batches`` is advanced there too, so it may wait for more work (an ingest's next
    window) while earlier batches are embedded.  Errors as in ``embed_all``.
    """
    spent = Usage()

    def count(usage: Usage) -> None:
        nonlocal spent
        spent += usage
        if on_usage is not None and usage:
            on_usage(usage)

    if embedder.concurrency <= 1:
        for tag, texts in batches:
            vectors, usage = embedder.embed_batch_usage(texts)
            count(usage)
            deliver(tag, _checked(embedder, vectors, len(texts)))
        return spent

    pending = iter(batches)
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=embedder.concurrency, thread_name_prefix="embed") as pool:
        in_flight: dict[Future[tuple[Vectors, Usage]], tuple[T, int]] = {}

        def submit_next() -> bool:
            batch = next(pending, None)
            if batch is None:
                return False
            tag, texts = batch
            in_flight[pool.submit(embedder.embed_batch_usage, texts)] = (tag, len(texts))
            return True

        for _ in range(embedder.concurrency):
            if not submit_next():
                break
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                tag, size = in_flight.pop(future)
                try:
                    vectors, usage = future.result()
                    count(usage)
                    vectors = _checked(embedder, vectors, size)
                except BaseException as exc:
                    error = error or exc
                    continue
                # The next call starts before this result is handed over, so that the
                # caller's storing it does not leave a core idle.
                if error is None:
                    submit_next()
                deliver(tag, vectors)
    if error is not None:
        raise error
    return spent


def _checked(embedder: Embedder, vectors: Vectors, size: int) -> Vectors:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (size, embedder.dimension):
        raise ValueError(
            f"{embedder.name} returned vectors of shape {vectors.shape}, expected ({size}, {embedder.dimension})"
        )
    return vectors
