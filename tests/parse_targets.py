"""Parse functions that misbehave on purpose, for the worker-pool tests (workers import them by name)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument, Section
from rag.ingest.parse import still_working


def by_name(path: Path, options: Any) -> LoadedDocument:
    """Behaves as the file's name says: ok, hang, segfault, hog, bug, refuse, child, steps, big."""
    name = path.stem
    if name.startswith("hang"):
        path.with_suffix(".started").write_text(str(os.getpid()))
        while True:
            pass
    if name.startswith("segfault"):
        ctypes.string_at(0)
    if name.startswith("hog"):
        blocks = []
        while True:
            blocks.append(bytearray(64 << 20))
    if name.startswith("bug"):
        raise ZeroDivisionError("division by zero")
    if name.startswith("refuse"):
        raise DocumentError(path, "not my kind of file")
    if name.startswith("child"):
        # A stuck helper program (like Tesseract): it must die with the worker.
        child = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
        path.with_suffix(".child").write_text(str(child.pid))
        child.wait()
    if name.startswith("steps"):  # long work in short steps, each reported (as OCR does per page)
        for _ in range(6):
            time.sleep(0.6)
            still_working()
    if name.startswith("big"):  # larger than a pipe's buffer: sending it blocks until read
        document = LoadedDocument(path, "text", [Section("word " * 100_000)])
        path.with_suffix(".done").write_text("")
        return document
    return LoadedDocument(path, "text", [Section(f"{path.name} parsed in {os.getpid()}")])
