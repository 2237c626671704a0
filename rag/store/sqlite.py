"""The SQLite files rag keeps (manifests, embedding cache, chat sessions): opened one way."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Database:
    """A connection shared by threads, in WAL mode so readers never wait for a writer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: we issue BEGIN ourselves, so each write is exactly one transaction.
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self.lock = threading.RLock()
        for pragma in ("busy_timeout=30000", "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            self.db.execute(f"PRAGMA {pragma}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction.  IMMEDIATE takes the write lock up front, so two writers wait for
        each other (busy timeout) instead of both reading and one failing to upgrade."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.db.close()


def execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement, inside the caller's transaction.

    ``executescript()`` would COMMIT the transaction first; triggers contain ';', so a
    trigger ends at its 'END;' line.
    """
    buffer = ""
    for line in script.strip().splitlines():
        buffer += line + "\n"
        stripped = line.strip()
        in_trigger = buffer.lstrip().upper().startswith("CREATE TRIGGER")
        if (in_trigger and stripped == "END;") or (not in_trigger and stripped.endswith(";")):
            db.execute(buffer)
            buffer = ""
