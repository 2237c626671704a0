"""One way to run a server process for tests and benchmarks: start it, wait until it is
ready, stop it, and say what it printed when it fails to start.

    with launch([...], ready=lambda line: line.startswith("READY "), what="llama.cpp server") as running:
        url = running.ready_line.split()[1]

Ready is either a line of its output (``ready``: the server prints it once it accepts
requests, so nothing sleeps) or a check that starts to pass (``probe``: a health URL).
Its output is read as it comes, so the pipe never fills and stalls the server.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: Lines of output a start failure shows.
TAIL = 40


@dataclass
class Launched:
    process: subprocess.Popen[str]
    #: Every line it printed so far (stdout and stderr), newline included.
    output: list[str] = field(default_factory=list)
    #: The line that said it was ready ("" when a probe said so).
    ready_line: str = ""

    def tail(self, lines: int = TAIL) -> str:
        return "".join(self.output[-lines:])


def answers(url: str) -> Callable[[], bool]:
    """A probe: ``url`` answers a GET."""

    def probe() -> bool:
        try:
            urllib.request.urlopen(url, timeout=1).read()
        except OSError:
            return False
        return True

    return probe


@contextmanager
def launch(
    command: Sequence[str],
    *,
    what: str,
    ready: Callable[[str], bool] | None = None,
    probe: Callable[[], bool] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
    stop_timeout: float = 15.0,
) -> Iterator[Launched]:
    """Run ``command`` until the block ends (SIGTERM, then SIGKILL after ``stop_timeout``);
    ``RuntimeError`` with its last lines when it ends or ``timeout`` passes before it is ready."""
    process = subprocess.Popen(
        list(command),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    launched = Launched(process)
    seen = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            launched.output.append(line)
            if ready is not None and not launched.ready_line and ready(line):
                launched.ready_line = line
                seen.set()
        seen.set()  # it ended

    reader = threading.Thread(target=pump, name=f"{what} output", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not (launched.ready_line or (probe is not None and probe())):
            if process.poll() is not None or time.monotonic() > deadline:
                status = "still running" if process.poll() is None else f"exit status {process.poll()}"
                raise RuntimeError(f"{what} did not start ({status}):\n{launched.tail()}")
            seen.wait(0.2)
        yield launched
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
