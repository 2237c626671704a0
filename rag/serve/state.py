"""The server's one door to the engine: indexes, documents, sessions and answers.

Everything the HTTP layer needs from rag goes through ``ServerState``, so that the routes
never reach into the store's internals.  It holds one thread-safe ``Store``: every index's
``Engine`` shares its models, so the embedding model is loaded once however many indexes
are served, and each answer carries its own ``Usage``.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.answer.base import DeltaCallback
from rag.chat.sessions import (
    ChatTurn,
    Session,
    SessionInfo,
    SessionNotFoundError,
    SessionStore,
    new_session_name,
    validate_session_name,
)
from rag.engine import Engine, document_id
from rag.errors import RagError, UsageError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders import load
from rag.results import Answer, Hit, Hits, IngestReport
from rag.retrieve.search import Filters, Mode
from rag.settings import Settings
from rag.store.index import validate_index_name
from rag.store.store import Store

#: Loaded documents kept for ``documents/{id}/text`` (a PDF is parsed once, not per click).
_LOADED_KEPT = 8


class NotFound(RagError):
    """Something the client named does not exist (HTTP 404)."""


@dataclass(frozen=True)
class DocumentInfo:
    """An indexed file as the API lists it."""

    id: str
    source: str
    kind: str
    pages: int | None
    chunks: int
    uploaded: bool
    ingested_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "name": Path(self.source).name,
            "kind": self.kind,
            "pages": self.pages,
            "chunks": self.chunks,
            "uploaded": self.uploaded,
            "ingested_at": self.ingested_at,
        }


class ServerState:
    """The store a server answers from; safe to use from many threads at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings=settings)
        self.layout = self.store.layout
        self._lock = threading.RLock()
        self._documents: OrderedDict[tuple[str, int, int], LoadedDocument] = OrderedDict()
        #: The folders ``rag serve --watch`` follows, as ``/api/v1/status`` lists them.
        self.watch_status: Callable[[], list[dict[str, Any]]] = list

    def close(self) -> None:
        self.store.close()

    # --- indexes --------------------------------------------------------------------------

    @property
    def default_index(self) -> str:
        return self.settings.store.index

    def index_names(self) -> list[str]:
        return self.store.index_names()

    def engine(self, name: str | None = None, *, create: bool = False) -> Engine:
        """The engine for index ``name``; ``NotFound`` unless it exists (or ``create``)."""
        name = self._valid_index(name or self.default_index)
        if not create and name not in self.index_names():
            raise NotFound(f"no index '{name}': upload documents to it or run `rag ingest --index {name} PATH`")
        return self.store.index(name)

    @staticmethod
    def _valid_index(name: str) -> str:
        try:
            return validate_index_name(name)
        except UsageError as exc:
            raise NotFound(str(exc)) from None

    def status(self) -> dict[str, Any]:
        """What ``rag status --json`` prints, and the folders watched."""
        indexes = [i.to_dict() for i in self.store.indexes()]
        return {"store": self.layout.description, "indexes": indexes, "watch": self.watch_status()}

    def models_loaded(self) -> int:
        """How many embedding models this server has loaded (one per embedder in use)."""
        return len(self.store.embedders_loaded())

    # --- search and answers ---------------------------------------------------------------

    def search(self, index: str | None, query: str, *, k: int | None, mode: Mode | None, filters: Filters) -> Hits:
        return self.engine(index).search(query, k, filters, mode=mode)

    def ask(
        self,
        index: str | None,
        question: str,
        *,
        k: int | None = None,
        llm: str | None = None,
        filters: Filters | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        return self.engine(index).ask(question, k=k, llm=llm, filters=filters, on_delta=on_delta)

    def converse(
        self,
        index: str | None,
        question: str,
        history: Sequence[tuple[str, str]],
        *,
        llm: str | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        """Answer ``question`` after ``history`` (question, answer pairs), as ``rag chat`` would, unsaved."""
        turns = [ChatTurn(question=q, answer=a) for q, a in history]
        conversation = self.engine(index).chat(save=False, llm=llm, history=turns)
        return conversation.ask(question, on_delta=on_delta)

    # --- sessions -------------------------------------------------------------------------

    def sessions(self, index: str | None = None) -> list[SessionInfo]:
        return self.store.sessions().list(index)

    def session(self, name: str) -> Session:
        return self.store.sessions().get(self._valid_session(name))

    def create_session(self, index: str | None, name: str | None) -> SessionInfo:
        """A new, empty session over ``index``; an existing name is a ``Conflict``."""
        engine = self.engine(index)
        name = validate_session_name(name) if name else new_session_name()
        with SessionStore(self.layout.sessions_path) as store:
            if not store.create(name, engine.index_name):
                raise Conflict(f"a chat session called '{name}' already exists")
            info = store.info(name)
        assert info is not None
        return info

    def delete_session(self, name: str) -> None:
        self.store.sessions().delete(self._valid_session(name))

    def session_message(self, name: str, question: str, *, on_delta: DeltaCallback | None = None) -> Answer:
        info = self.session(name).info
        with self.engine(info.index).chat(session=info.name) as conversation:
            return conversation.ask(question, on_delta=on_delta)

    @staticmethod
    def _valid_session(name: str) -> str:
        try:
            return validate_session_name(name)
        except UsageError:
            raise SessionNotFoundError(name) from None

    # --- documents ------------------------------------------------------------------------

    def uploads_dir(self, index: str) -> Path:
        """Where uploaded files of ``index`` are kept: one folder per index, in the store."""
        return self.layout.uploads_dir(index)

    def is_uploaded(self, index: str, path: str) -> bool:
        folder = str(self.uploads_dir(index).resolve())
        return os.path.dirname(os.path.abspath(path)) == folder

    def documents(self, index: str | None) -> list[DocumentInfo]:
        engine = self.engine(index)
        return [
            DocumentInfo(
                id=d.id,
                source=d.source,
                kind=d.kind,
                pages=d.pages,
                chunks=d.chunks,
                uploaded=self.is_uploaded(engine.index_name, d.source),
                ingested_at=d.ingested_at,
            )
            for d in engine.documents()
        ]

    def document(self, index: str | None, doc_id: str) -> DocumentInfo:
        for doc in self.documents(index):
            if doc.id == doc_id:
                return doc
        raise NotFound(f"no document '{doc_id}' in index '{index or self.default_index}'")

    def remove_document(self, index: str, doc_id: str) -> DocumentInfo:
        """Remove a document's chunks; an uploaded one loses its stored file too.

        Run in the index's job queue, after earlier uploads, so nothing re-adds the file meanwhile.
        """
        doc = self.document(index, doc_id)
        self.engine(index).remove([doc.source])
        if doc.uploaded:
            Path(doc.source).unlink(missing_ok=True)
        return doc

    def document_file(self, index: str | None, doc_id: str) -> Path:
        """The original file of a document, if it is still where it was indexed from.

        Only a path the index itself records is ever served, and only a regular file:
        the id is a hash, so no client text ever becomes part of a path.
        """
        doc = self.document(index, doc_id)
        path = Path(doc.source)
        if not path.is_file():
            raise NotFound(f"the file of document '{doc_id}' is gone from {doc.source}")
        return path

    def document_text(self, index: str | None, doc_id: str, page: int | None) -> dict[str, Any]:
        """The loader's text of one page (or of the whole file when it has no pages).

        Chunk ``start``/``end`` offsets index into exactly this string.
        """
        doc = self.document(index, doc_id)
        path = self.document_file(index, doc_id)
        document = self._loaded(path)
        paged = any(s.page is not None for s in document.sections)
        if paged and page is None:
            page = 1
        sections = [s for s in document.sections if s.page == page] if paged else document.sections
        if paged and not sections:
            raise NotFound(f"document '{doc_id}' has no text on page {page}")
        return {"id": doc.id, "source": doc.source, "page": page if paged else None, "text": _assemble(sections)}

    def _loaded(self, path: Path) -> LoadedDocument:
        """The file as its loader reads it; the last few are kept, since a reader clicks through citations."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            found = self._documents.get(key)
            if found is not None:
                self._documents.move_to_end(key)
                return found
        document = load(path)
        with self._lock:
            self._documents[key] = document
            while len(self._documents) > _LOADED_KEPT:
                self._documents.popitem(last=False)
        return document

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self, index: str, paths: Sequence[Path], progress: Any) -> IngestReport:
        """Ingest ``paths`` exactly as ``rag ingest PATH...`` would (no pruning: files were named)."""
        return self.engine(index, create=True).ingest(list(paths), prune=False, progress=progress)


class Conflict(RagError):
    """The request clashes with what exists (HTTP 409)."""


def _assemble(sections: Sequence[Any]) -> str:
    """Sections placed at their offsets; gaps (Markdown headings between sections) become spaces."""
    size = max((s.offset + len(s.text) for s in sections), default=0)
    chars = [" "] * size
    for s in sections:
        chars[s.offset : s.offset + len(s.text)] = s.text
    return "".join(chars)


_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+,-]+")


def safe_filename(name: str) -> str:
    """An uploaded file's name made safe to keep: no folders, no hidden files, no odd characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = stem[:150] or "upload"
    return f"{stem}.{ext[:16]}" if ext else stem


def citations_json(answer: Answer) -> list[dict[str, Any]]:
    """Citations with what a client needs to highlight the passage: span, text, document id."""
    hits: dict[str, Hit] = {h.chunk_id: h for h in answer.context}
    out = []
    for c in answer.citations:
        hit = hits.get(c.chunk_id)
        out.append(
            {
                **c.to_dict(),
                "start": hit.start if hit else None,
                "end": hit.end if hit else None,
                "text": hit.text if hit else c.text,
                "document_id": document_id(c.source),
            }
        )
    return out


def answer_json(answer: Answer) -> dict[str, Any]:
    """``rag ask --json``'s shape, with citations a client can highlight."""
    data = answer.to_dict()
    data["citations"] = citations_json(answer)
    return data


def hit_json(hit: Hit) -> dict[str, Any]:
    return {**hit.to_dict(), "document_id": document_id(hit.source)}


def session_json(session: Session) -> dict[str, Any]:
    return {**session.info.to_dict(), "turns": [turn_json(t) for t in session.turns]}


def turn_json(turn: ChatTurn) -> dict[str, Any]:
    return {"question": turn.question, "answer": answer_json(turn.to_answer())}


Runner = Callable[[DeltaCallback], Answer]
