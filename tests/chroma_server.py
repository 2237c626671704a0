"""Start a real `chroma run` on 127.0.0.1 for tests of server mode."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.launch import answers, launch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chroma_run(data: Path) -> Iterator[str]:
    """A `chroma run` serving ``data``; yields its URL and stops it afterwards."""
    executable = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if executable is None:
        pytest.fail("the `chroma` command (installed with chromadb) is missing")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [executable, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with launch(command, what="chroma run", probe=answers(f"{url}/api/v2/heartbeat"), timeout=60, stop_timeout=30):
        yield url
