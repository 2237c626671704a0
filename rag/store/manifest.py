"""The index's record of files and chunks, in one SQLite file.

Every chunk id is written here *before* it is written to Chroma and removed here only
*after* it is deleted from Chroma, so Chroma never holds an id this file does not know.
A chunk's ``state`` says how far it got:

- ``pending``: being added by an ingest that has not finished with its file;
- ``live``: part of the index;
- ``stale``: replaced or pruned, and waiting to be deleted from Chroma.

An ingest that dies leaves pending or stale rows; the next one deletes those ids from
Chroma and then here (``unsettled``/``purge``), and re-indexes the files whose record it
never updated.  Only live chunks are ever returned by searches.

The keyword index (``rag.store.keyword``) follows the same rule as Chroma: ids enter it
after they are pending here and leave it before they are purged here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rag.store.records import ChunkRecord, FileRecord
from rag.store.sqlite import Database, execute_script
from rag.usage import Usage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    pages INTEGER,
    chunk_count INTEGER NOT NULL,
    ingested_at REAL NOT NULL,
    warnings TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'live', 'stale')),
    kind TEXT NOT NULL,
    position INTEGER NOT NULL,
    page INTEGER,
    heading TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path, state);
CREATE INDEX IF NOT EXISTS chunks_state ON chunks(state) WHERE state != 'live';
-- rag 0.1 kept an FTS5 keyword index here; Tantivy (rag.store.keyword) replaced it.
DROP TRIGGER IF EXISTS chunks_fts_insert;
DROP TRIGGER IF EXISTS chunks_fts_delete;
DROP TABLE IF EXISTS chunks_fts;
CREATE TABLE IF NOT EXISTS usage (
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, model)
);
"""

_CHUNK_COLUMNS = "id, path, kind, position, page, heading, start, end, tokens, text"
_FILE_COLUMNS = "path, content_hash, signature, kind, size, mtime_ns, pages, chunk_count, ingested_at, warnings"


class Manifest:
    """One index's SQLite file.  Safe to share between threads; one writer at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = Database(path)
        #: The file opened: another process that rebuilds the manifest replaces it.
        self.inode = path.stat().st_ino
        self._writes = 0
        try:
            with self.transaction() as db:
                execute_script(db, _SCHEMA)
                if db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is None:
                    self.set_meta("schema_version", SCHEMA_VERSION)
                    self.set_meta("created_at", time.time())
        except BaseException:  # a damaged file: don't keep it open while it is set aside
            self._database.close()
            raise

    def close(self) -> None:
        self._database.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._database.write() as db:
            yield db
        self._writes += 1

    def version(self) -> tuple[int, int]:
        """A value that changes whenever this file is written, by this process or another."""
        with self._database.lock:
            # data_version moves when another connection commits; our own commits we count.
            other = int(self._database.db.execute("PRAGMA data_version").fetchone()[0])
        return other, self._writes

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._database.query(sql, params)

    # --- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        self._database.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    # --- files ----------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        return {row[0]: _file(row) for row in self._query(f"SELECT {_FILE_COLUMNS} FROM files")}

    def file(self, path: str) -> FileRecord | None:
        rows = self._query(f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?", (path,))
        return _file(rows[0]) if rows else None

    def file_count(self) -> int:
        return int(self._query("SELECT count(*) FROM files")[0][0])

    def file_kinds(self) -> dict[str, int]:
        """Files per kind (``pdf``, ``docx``...), for ``rag status``."""
        return {kind: int(n) for kind, n in self._query("SELECT kind, count(*) FROM files GROUP BY kind ORDER BY kind")}

    # --- chunk lifecycle ------------------------------------------------------------------

    def add_pending(self, chunks: Iterable[ChunkRecord]) -> None:
        """Record chunks about to be written to Chroma."""
        rows = [
            (c.id, c.path, "pending", c.kind, c.position, c.page, c.heading, c.start, c.end, c.tokens, c.text)
            for c in chunks
        ]
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO chunks(id, path, state, kind, position, page, heading, start, end, tokens, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def commit_file(self, record: FileRecord, chunk_ids: Sequence[str]) -> list[str]:
        """Make ``chunk_ids`` the file's live chunks; returns the ids they replace (now stale)."""
        return self.commit_files([(record, chunk_ids)])[0]

    def commit_files(self, files: Sequence[tuple[FileRecord, Sequence[str]]]) -> list[list[str]]:
        """``commit_file`` for many files in one transaction (one commit per file costs more
        than the file on a folder of short notes); returns each file's replaced ids."""
        replaced: list[list[str]] = []
        with self.transaction() as db:
            for record, chunk_ids in files:
                old = [
                    r[0] for r in db.execute("SELECT id FROM chunks WHERE path = ? AND state = 'live'", (record.path,))
                ]
                keep = set(chunk_ids)
                replaced.append([i for i in old if i not in keep])
            # Every file's old ids are read before any state changes; ids hash their path, so
            # one file's ids are never another's.
            _update_state(db, [i for ids in replaced for i in ids], "stale")
            _update_state(db, [i for _, chunk_ids in files for i in chunk_ids], "live")
            for record, _ in files:
                _write_file(db, record)
        return replaced

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        """Remember a new mtime for a file whose content did not change, to skip hashing next time."""
        self._database.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def forget_file(self, path: str) -> list[str]:
        """Drop a file from the index; returns its chunk ids, now stale."""
        with self.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE path = ? AND state = 'live'", (path,))]
            _update_state(db, ids, "stale")
            db.execute("DELETE FROM files WHERE path = ?", (path,))
        return ids

    def unsettled(self) -> list[str]:
        """Ids an interrupted ingest left behind (pending or stale)."""
        return [r[0] for r in self._query("SELECT id FROM chunks WHERE state != 'live'")]

    def purge(self, ids: Sequence[str]) -> None:
        """Delete chunk rows once Chroma no longer holds them."""
        with self.transaction() as db:
            for part in _parts(ids):
                db.execute(f"DELETE FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)

    def unsettled_count(self) -> int:
        return int(self._query("SELECT count(*) FROM chunks WHERE state != 'live'")[0][0])

    def live_paths(self, ids: Sequence[str]) -> dict[str, str]:
        """The file of each of ``ids`` that is live."""
        found: dict[str, str] = {}
        for part in _parts(ids):
            marks = ",".join("?" * len(part))
            rows = self._query(f"SELECT id, path FROM chunks WHERE state = 'live' AND id IN ({marks})", part)
            found.update((r[0], r[1]) for r in rows)
        return found

    def live_ids_of(self, paths: Iterable[str]) -> list[str]:
        """The live chunk ids of ``paths``."""
        found: list[str] = []
        for part in _parts(list(paths)):
            rows = self._query(
                f"SELECT id FROM chunks WHERE state = 'live' AND path IN ({','.join('?' * len(part))})", part
            )
            found += [r[0] for r in rows]
        return found

    def apply_remote(self, removed: Sequence[str], chunks: Sequence[ChunkRecord], files: Sequence[FileRecord]) -> None:
        """Apply another machine's changes: drop ``removed`` and make ``chunks`` live, whatever
        state this file had them in; ``files`` are the records of the files ``chunks`` belong to.
        Files left without chunks are forgotten."""
        gone = list(removed) + [c.id for c in chunks]
        rows = [
            (c.id, c.path, "live", c.kind, c.position, c.page, c.heading, c.start, c.end, c.tokens, c.text)
            for c in chunks
        ]
        with self.transaction() as db:
            touched: set[str] = set()
            for part in _parts(gone):
                marks = ",".join("?" * len(part))
                paths = db.execute(f"SELECT DISTINCT path FROM chunks WHERE id IN ({marks})", part)
                touched.update(r[0] for r in paths)
                db.execute(f"DELETE FROM chunks WHERE id IN ({marks})", part)
            db.executemany(
                "INSERT INTO chunks(id, path, state, kind, position, page, heading, start, end, tokens, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for record in files:
                count = db.execute(
                    "SELECT count(*) FROM chunks WHERE path = ? AND state = 'live'", (record.path,)
                ).fetchone()[0]
                _write_file(db, replace(record, chunk_count=int(count)))
            for path in touched - {r.path for r in files}:
                if db.execute("SELECT 1 FROM chunks WHERE path = ? AND state = 'live'", (path,)).fetchone() is None:
                    db.execute("DELETE FROM files WHERE path = ?", (path,))

    # --- reading --------------------------------------------------------------------------

    def chunk_count(self) -> int:
        return int(self._query("SELECT count(*) FROM chunks WHERE state = 'live'")[0][0])

    def live_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT id FROM chunks WHERE state = 'live'")}

    def chunks(self, ids: Sequence[str]) -> dict[str, ChunkRecord]:
        """Live chunks by id (ids that are not live are left out)."""
        found: dict[str, ChunkRecord] = {}
        for part in _parts(ids):
            rows = self._query(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE state = 'live' AND id IN ({','.join('?' * len(part))})",
                part,
            )
            found.update((row[0], ChunkRecord(*row)) for row in rows)
        return found

    def chunks_of(self, path: str) -> list[ChunkRecord]:
        rows = self._query(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = ? AND state = 'live' ORDER BY position", (path,)
        )
        return [ChunkRecord(*row) for row in rows]

    def iter_chunks(self, batch: int = 2000) -> Iterator[list[ChunkRecord]]:
        last = ""
        while True:
            rows = self._query(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE state = 'live' AND id > ? ORDER BY id LIMIT ?",
                (last, batch),
            )
            if not rows:
                return
            yield [ChunkRecord(*row) for row in rows]
            last = rows[-1][0]

    # --- usage ----------------------------------------------------------------------------

    def add_usage(self, kind: str, usage: Usage) -> None:
        """Add ``usage`` to the index's totals for ``kind`` (chat, embedding) and its model."""
        if not usage:
            return
        self._database.execute(
            "INSERT INTO usage(kind, model, requests, prompt_tokens, completion_tokens, cost_usd) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(kind, model) DO UPDATE SET "
            "requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = completion_tokens + excluded.completion_tokens, "
            "cost_usd = cost_usd + excluded.cost_usd",
            (kind, usage.model, usage.requests, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd or 0.0),
        )

    def usage(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT kind, model, requests, prompt_tokens, completion_tokens, cost_usd FROM usage ORDER BY kind, model"
        )
        keys = ("kind", "model", "requests", "prompt_tokens", "completion_tokens", "cost_usd")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _file(row: tuple[Any, ...]) -> FileRecord:
    path, content_hash, signature, kind, size, mtime_ns, pages, chunk_count, ingested_at, warnings = row
    return FileRecord(
        path,
        content_hash,
        signature,
        kind,
        size,
        mtime_ns,
        pages,
        chunk_count,
        ingested_at,
        tuple(json.loads(warnings)),
    )


def _write_file(db: sqlite3.Connection, record: FileRecord) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO files({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.path,
            record.content_hash,
            record.signature,
            record.kind,
            record.size,
            record.mtime_ns,
            record.pages,
            record.chunk_count,
            record.ingested_at,
            json.dumps(list(record.warnings)),
        ),
    )


def _update_state(db: sqlite3.Connection, ids: Sequence[str], state: str) -> None:
    for part in _parts(ids):
        db.execute(f"UPDATE chunks SET state = ? WHERE id IN ({','.join('?' * len(part))})", (state, *part))


def _parts(ids: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    ids = list(ids)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
