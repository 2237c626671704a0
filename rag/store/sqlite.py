"""The SQLite files rag keeps (manifests, embedding cache, chat sessions): opened one way.

One writer connection, guarded by a lock, for transactions; and a pool of read
connections, one per concurrent reader.  In WAL mode a reader sees the last committed
state and never waits for a writer, so searches go on while an ingest writes.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _connect(path: Path, *, reader: bool = False) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN ourselves, so each write is exactly one transaction.
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        if reader:
            db.execute("PRAGMA query_only=ON")
            return db
        # Setting the journal mode takes a lock, so only the writer does it (WAL is kept in the file).
        _switch_to_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:  # e.g. not a database: leave no handle on the file
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    # Turning a new file to WAL needs a lock that SQLite does not wait for (the busy timeout
    # does not apply), so threads opening the same new file at once would fail with
    # "database is locked": retry until the first of them has switched it.
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class Database:
    """A writer connection shared by threads, and read connections lent one per concurrent read."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = _connect(path)
        self.lock = threading.RLock()
        # A pool rather than one per thread: a server's threads come and go.
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []
        # Not ``lock``: a writer holds that for a whole transaction, and readers must not wait.
        self._readers_lock = threading.Lock()
        self._closed = False

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

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One write statement on its own (autocommit)."""
        with self.lock:
            return self.db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read, on a connection of its own: never waits for a writer.

        It sees what was committed when it started, not a transaction still open on the
        writer connection, even in the same thread.
        """
        try:
            reader = self._idle.get_nowait()
        except queue.Empty:
            with self._readers_lock:
                if self._closed:
                    raise sqlite3.ProgrammingError(f"{self.path} is closed") from None
                reader = _connect(self.path, reader=True)
                self._readers.append(reader)
        try:
            return reader.execute(sql, params).fetchall()
        finally:
            self._idle.put(reader)

    def close(self) -> None:
        with self.lock, self._readers_lock:
            self._closed = True
            for reader in self._readers:
                reader.close()
            self._readers.clear()
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
