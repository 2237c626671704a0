"""``rag serve --watch``: a ``Watcher`` in a thread, writing through the index's job queue.

Its catch-up and batches queue behind uploads and deletes of the same index (one writer
per index), and searches never wait for them.  ``/api/v1/status`` shows each folder.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

from rag.serve.jobs import Jobs
from rag.serve.state import ServerState
from rag.watch import Event, Watcher

log = logging.getLogger("rag.serve")


class Watching:
    """Keeps the server's default index in step with ``paths`` until ``stop``."""

    def __init__(self, state: ServerState, jobs: Jobs, paths: Sequence[Path], loop: asyncio.AbstractEventLoop) -> None:
        self._jobs, self._loop = jobs, loop
        engine = state.engine(create=True)
        self.watcher = Watcher(engine, paths, on_event=self._log, run=self._queued)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rag-watch", daemon=True)
        self._thread.start()

    def status(self) -> list[dict[str, Any]]:
        return self.watcher.status()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; a batch under way finishes first (at most ``timeout`` seconds)."""
        self._stop.set()
        self._thread.join(timeout)

    def _queued(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` in the index's job queue, after the uploads already waiting there."""
        job = self._jobs.run(self.watcher.engine.index_name, work)
        return asyncio.run_coroutine_threadsafe(job, self._loop).result()

    def _watch(self) -> None:
        try:
            self.watcher.watch(self._stop)
        except (Exception, CancelledError) as exc:
            if self._stop.is_set():
                return  # the server is shutting down and its job queue with it
            message = f"watching stopped: {exc}"
            self.watcher.fail(message)
            log.error("%s", message)

    @staticmethod
    def _log(event: Event) -> None:
        kind = event["event"]
        if kind == "failed":
            log.warning("watch: failed %s: %s", event["path"], event["reason"])
        elif kind == "error":
            log.warning("watch: %s", event["error"])
