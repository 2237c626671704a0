"""Server-sent events: answers streamed from a worker thread, with heartbeats and cancellation.

An answer is written by a blocking call (``Engine.ask`` with an ``on_delta`` callback) in
its own thread.  Its deltas cross into the event loop through an ``asyncio.Queue``; when
nothing arrives for ``heartbeat`` seconds a ``: ping`` comment keeps proxies from timing
the stream out.  When the client goes away Starlette cancels the generator, which sets
``cancelled``; the next delta then raises ``ClientGone`` inside the worker, which unwinds
the model call (closing its HTTP stream), so generation stops instead of running on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

from rag.answer.base import DeltaCallback

#: Headers every stream carries: no caching, and no buffering by nginx.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
PING = b": ping\n\n"
#: The last event of a stream cut short because the server is stopping.
STOPPING = "the server is shutting down: ask again when it is back"

T = TypeVar("T")


class ClientGone(Exception):
    """Raised inside a worker when the client stopped listening."""


def event(name: str | None, data: Any) -> bytes:
    """One SSE message; ``data`` is sent as one line of JSON (or as is, when a string)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode()


def pieces(text: str, size: int = 3) -> list[str]:
    """``text`` cut into runs of about ``size`` words, so that a whole answer still streams."""
    words = text.split(" ")
    return [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]


class Worker:
    """Runs ``work(on_delta)`` in a thread and hands its deltas and result to the event loop."""

    _END = object()

    def __init__(self, work: Callable[[DeltaCallback], Any]) -> None:
        self._work = work
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rag-serve-answer", daemon=True)
        self._thread.start()

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop closed: the server is shutting down
            self.cancelled.set()

    def _on_delta(self, text: str) -> None:
        if self.cancelled.is_set():
            raise ClientGone
        self._put("delta", text)

    def _run(self) -> None:
        try:
            result = self._work(self._on_delta)
        except ClientGone:
            return
        except BaseException as exc:
            self._put("error", exc)
            return
        self._put("result", result)

    async def events(self, heartbeat: float) -> AsyncIterator[tuple[str, Any]]:
        """("delta", text) ..., then ("result", value) or ("error", exception); ("ping", None) when idle."""
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(self._queue.get(), heartbeat)
                except TimeoutError:
                    yield "ping", None
                    continue
                yield kind, value
                if kind in ("result", "error"):
                    return
        finally:
            self.cancelled.set()


async def until(stopping: asyncio.Event, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items`` until they end or ``stopping`` is set, whichever comes first.

    Uvicorn waits for open responses before it stops, then cancels them with a traceback;
    a stream that ends when the server starts stopping lets Ctrl-C finish at once.
    """
    stop = asyncio.ensure_future(stopping.wait())
    step: asyncio.Future[T] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise Stopping
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        # Also when the client left (this generator cancelled): the pending step must end
        # first, so that ``items`` can be closed and run its own clean-up (``Worker.events``
        # tells the worker thread to stop generating).
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        if isinstance(items, AsyncGenerator):
            await items.aclose()


class Stopping(Exception):
    """Raised by ``until`` when the server began to stop before the stream ended."""
