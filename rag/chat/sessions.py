"""Chat sessions saved by name in one SQLite file of the store (``RAG_HOME/sessions.db``).

Several ``rag chat`` processes may write at once, to different sessions or to the same
one: the file is in WAL mode, every write is one ``BEGIN IMMEDIATE`` transaction, and a
turn's number is taken inside that transaction, so writers queue instead of clobbering.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.answer.base import Turn
from rag.errors import RagError, UsageError
from rag.jsonable import Jsonable, json_hook, jsonable
from rag.results import Answer, Citation, Hit, Refusal, SetAside, Span, Support
from rag.store.sqlite import Database, execute_script

# 2: turns keep the answer's checks (its spans and the support of each sentence).
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    index_name TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    question TEXT NOT NULL,
    search_query TEXT,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    mode TEXT NOT NULL,
    model TEXT NOT NULL,
    citations TEXT NOT NULL,
    context TEXT NOT NULL,
    created REAL NOT NULL,
    checks TEXT,
    PRIMARY KEY (session_id, seq)
);
"""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class SessionNotFoundError(RagError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no chat session '{name}': `rag history` lists them")
        self.name = name


def validate_session_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid session name {name!r}: use letters, digits, '.', '_' and '-' (at most 63), "
            "starting with a letter or digit"
        )
    return name


def new_session_name() -> str:
    """A fresh name such as ``chat-20250101-093000-a1b2``: sortable, and unique enough."""
    return f"chat-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class ChatTurn(Jsonable):
    """One saved exchange: the question, what retrieval searched for, and the answer."""

    json_order = (
        "question",
        "answer",
        "refused",
        "refusal",
        "set_aside",
        "citations",
        "answerer",
        "model",
        "created",
        "spans",
        "support",
        "search_query",
    )

    question: str
    answer: str
    refused: bool = False
    search_query: str | None = field(default=None, metadata=json_hook(key="rewritten_question", omit_none=True))
    citations: list[Citation] = field(default_factory=list)
    context: list[Hit] = field(default_factory=list)
    answerer: str = "llm"
    model: str = ""
    created: float = 0.0
    spans: list[Span] = field(default_factory=list)
    support: list[Support] = field(default_factory=list)
    #: ``Answer.refusal`` and ``Answer.set_aside``: why it is a refusal, why quotes stood in.
    refusal: Refusal | None = field(default=None, metadata=json_hook(omit_none=True))
    set_aside: SetAside | None = field(default=None, metadata=json_hook(omit_none=True))

    @classmethod
    def from_answer(cls, question: str, answer: Answer, search_query: str | None = None) -> ChatTurn:
        return cls(
            question=question,
            answer=answer.text,
            refused=answer.refused,
            search_query=search_query if search_query and search_query != question else None,
            citations=list(answer.citations),
            context=list(answer.context),
            answerer=answer.answerer,
            model=answer.model,
            created=time.time(),
            spans=list(answer.spans),
            support=list(answer.support),
            refusal=answer.refusal,
            set_aside=answer.set_aside,
        )

    def as_turn(self) -> Turn:
        """The plain (question, answer) pair answerers take as history."""
        return Turn(self.question, self.answer)

    def to_answer(self) -> Answer:
        return Answer(
            question=self.question,
            text=self.answer,
            refused=self.refused,
            citations=list(self.citations),
            model=self.model,
            answerer=self.answerer,
            context=list(self.context),
            rewritten_question=self.search_query,
            spans=list(self.spans),
            support=list(self.support),
            refusal=self.refusal,
            set_aside=self.set_aside,
        )


@dataclass(frozen=True)
class SessionInfo(Jsonable):
    """A session as ``rag history`` lists it."""

    name: str
    index: str
    turns: int
    created: float
    updated: float
    #: The first question, which says what the session is about ("" while it has none).
    title: str = ""


class SessionStore:
    """The sessions file.  Thread-safe; close it when done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = Database(path)
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RagError(f"{path} was written by a newer rag (schema {version}); upgrade rag to read it")
            execute_script(db, _SCHEMA)
            if "checks" not in {row[1] for row in db.execute("PRAGMA table_info(turns)")}:
                db.execute("ALTER TABLE turns ADD COLUMN checks TEXT")  # a version 1 file
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._database.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._database.write()

    # --- reading --------------------------------------------------------------------------

    def sessions(self, index: str | None = None) -> list[SessionInfo]:
        """Every session, most recently used first (only ``index``'s when given)."""
        where, args = ("WHERE s.index_name = ?", (index,)) if index else ("", ())
        return self._infos(where, args)

    def info(self, name: str) -> SessionInfo | None:
        """The session called ``name``, or None."""
        found = self._infos("WHERE s.name = ?", (name,))
        return found[0] if found else None

    def _infos(self, where: str, args: tuple[Any, ...]) -> list[SessionInfo]:
        sql = (
            "SELECT s.name, s.index_name, COUNT(t.seq), s.created, s.updated, "
            "COALESCE((SELECT question FROM turns WHERE session_id = s.id ORDER BY seq LIMIT 1), '') FROM sessions s "
            f"LEFT JOIN turns t ON t.session_id = s.id {where} GROUP BY s.id ORDER BY s.updated DESC, s.name"
        )
        rows = self._database.query(sql, args)
        return [SessionInfo(*row) for row in rows]

    def turns(self, name: str) -> list[ChatTurn]:
        """The session's turns in order; an unknown name has none."""
        rows = self._database.query(
            "SELECT t.question, t.answer, t.refused, t.search_query, t.citations, t.context, t.mode, t.model, "
            "t.created, t.checks FROM turns t JOIN sessions s ON s.id = t.session_id WHERE s.name = ? ORDER BY t.seq",
            (name,),
        )
        return [_turn(row) for row in rows]

    # --- writing --------------------------------------------------------------------------

    def append(self, name: str, index: str, turn: ChatTurn) -> None:
        """Add ``turn`` to the end of session ``name``, creating the session if needed."""
        with self._write() as db:
            session_id = _ensure(db, name, index, turn.created)
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO turns (session_id, seq, question, search_query, answer, refused, mode, model, "
                "citations, context, created, checks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    seq,
                    turn.question,
                    turn.search_query,
                    turn.answer,
                    int(turn.refused),
                    turn.answerer,
                    turn.model,
                    json.dumps([_citation_dict(c) for c in turn.citations]),
                    json.dumps([h.to_dict() for h in turn.context]),
                    turn.created,
                    json.dumps(
                        {
                            "spans": [s.to_dict() for s in turn.spans],
                            "support": [s.to_dict() for s in turn.support],
                            "refusal": turn.refusal,
                            "set_aside": turn.set_aside,
                        }
                    ),
                ),
            )
            db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (turn.created, session_id))

    def create(self, name: str, index: str) -> bool:
        """Start an empty session called ``name`` over ``index``; False when the name is taken."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone():
                return False
            _ensure(db, name, index, time.time())
            return True

    def clear(self, name: str) -> None:
        """Forget the session's turns; the session itself stays."""
        with self._write() as db:
            db.execute("DELETE FROM turns WHERE session_id = (SELECT id FROM sessions WHERE name = ?)", (name,))
            db.execute("UPDATE sessions SET updated = ? WHERE name = ?", (time.time(), name))

    def delete(self, name: str) -> bool:
        """Delete the session and its turns; False when there was none."""
        with self._write() as db:
            return db.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount > 0


def _ensure(db: sqlite3.Connection, name: str, index: str, now: float) -> int:
    row = db.execute("SELECT id FROM sessions WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0])
    cursor = db.execute(
        "INSERT INTO sessions (name, index_name, created, updated) VALUES (?, ?, ?, ?)", (name, index, now, now)
    )
    return int(cursor.lastrowid or 0)


def _citation_dict(c: Citation) -> dict[str, Any]:
    return {**c.to_dict(), "score": c.score, "text": c.text}


def _turn(row: tuple[Any, ...]) -> ChatTurn:
    question, answer, refused, search_query, citations, context, mode, model, created, checks = row
    checked = json.loads(checks) if checks else {}
    return ChatTurn(
        question=question,
        answer=answer,
        refused=bool(refused),
        search_query=search_query,
        citations=[Citation(**{k: v for k, v in c.items() if k != "location"}) for c in json.loads(citations)],
        context=[_hit(h) for h in json.loads(context)],
        answerer=mode,
        model=model,
        created=created,
        spans=[Span(**s) for s in checked.get("spans", [])],
        support=[Support(**{**s, "citations": tuple(s["citations"])}) for s in checked.get("support", [])],
        refusal=checked.get("refusal"),
        set_aside=checked.get("set_aside"),
    )


def _hit(data: dict[str, Any]) -> Hit:
    fields = ("rank", "score", "chunk_id", "source", "page", "heading", "text", "start", "end", "relevance")
    values: dict[str, Any] = {k: data[k] for k in fields if k in data}
    return Hit(**values)


@dataclass(frozen=True)
class Session:
    """A saved session with its turns, as ``Sessions.get`` returns it."""

    info: SessionInfo
    turns: list[ChatTurn]

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "turns": jsonable(self.turns)}


class Sessions:
    """The saved chat sessions of a store: list, read and delete them (``Store.sessions()``).

    Reading never creates the sessions file; each call opens it briefly, so this object
    may be kept and shared by threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def list(self, index: str | None = None) -> builtins.list[SessionInfo]:
        """Every session, most recently used first (only ``index``'s when given)."""
        if not self.path.exists():
            return []
        with SessionStore(self.path) as store:
            return store.sessions(index)

    def info(self, name: str) -> SessionInfo | None:
        """The session called ``name``, or None."""
        validate_session_name(name)
        if not self.path.exists():
            return None
        with SessionStore(self.path) as store:
            return store.info(name)

    def get(self, name: str) -> Session:
        """The session called ``name`` with its turns; ``SessionNotFoundError`` if there is none."""
        validate_session_name(name)
        if not self.path.exists():
            raise SessionNotFoundError(name)
        with SessionStore(self.path) as store:
            info = store.info(name)
            if info is None:
                raise SessionNotFoundError(name)
            return Session(info, store.turns(name))

    def delete(self, name: str) -> None:
        """Delete the session and its turns; ``SessionNotFoundError`` if there is none."""
        validate_session_name(name)
        if not self.path.exists():
            raise SessionNotFoundError(name)
        with SessionStore(self.path) as store:
            if not store.delete(name):
                raise SessionNotFoundError(name)
