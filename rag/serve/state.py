"""The server's one door to the engine: indexes, documents, sessions and answers.

Everything the HTTP layer needs from rag goes through ``ServerState``, so that the routes
never reach into the store's internals.  It holds one thread-safe ``Store``: every index's
``Engine`` shares its models, so the embedding model is loaded once however many indexes
are served, and each answer carries its own ``Usage``.
"""

from __future__ import annotations

import itertools
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from rag.home import Store
from rag.ingest.pipeline import file_hash
from rag.jsonable import json_hook
from rag.results import HEADING_SEPARATOR, Answer, Document, Hit, Hits, IngestReport, location
from rag.retrieve.search import Filters, Mode
from rag.serve.sources import Sources
from rag.settings import Settings
from rag.store.index import validate_index_name
from rag.store.records import ChunkRecord

#: File hashes kept for ``documents/{id}/file`` (a reader clicks through one file's citations).
_DIGESTS_KEPT = 64


class NotFound(RagError):
    """Something the client named does not exist (HTTP 404)."""


@dataclass(frozen=True)
class DocumentInfo(Document):
    """An indexed file as the API lists it: whether it was uploaded, and its name for clients."""

    json_order = ("id", "shown", "name", "kind", "pages", "chunks", "uploaded", "ingested_at")

    uploaded: bool = False
    #: ``source`` as clients see it (``rag.serve.sources``): never the server's absolute path.
    shown: str = field(default="", metadata=json_hook(key="source"))

    @property
    def name(self) -> str:
        return Path(self.source).name


class ServerState:
    """The store a server answers from; safe to use from many threads at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings=settings)
        self.layout = self.store.layout
        self._lock = threading.RLock()
        self._digests: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
        #: Upload names handed out per index whose file may not be in place yet (its job is queued).
        self._claimed: dict[str, set[str]] = {}
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

    def index_name(self, name: str | None = None) -> str:
        """``name``, or the default index, checked: ``UsageError`` when no index may be called that."""
        return validate_index_name(name or self.default_index)

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

    def claim_upload_name(self, index: str, name: str, digest: str, *, replace: bool = False) -> str:
        """The name an upload is stored under: ``name``, or ``name (2)``... when another file has it.

        Two different files never share a name: an upload replaces the stored file of the
        same name only when the client asks (``replace``), or when it is that same file
        again (same content).  Names of uploads still waiting in a job count as taken.
        """
        folder = self.uploads_dir(index)
        with self._lock:
            claimed = self._claimed.setdefault(index, set())
            for n in itertools.count(1):
                candidate = numbered(name, n)
                path = folder / candidate
                on_disk = path.is_file()
                if replace or (not on_disk and candidate not in claimed):
                    claimed.add(candidate)
                    return candidate
                if on_disk and file_hash(path) == digest:
                    return candidate
        raise AssertionError("unreachable")

    def release_upload_name(self, index: str, name: str) -> None:
        with self._lock:
            self._claimed.get(index, set()).discard(name)

    def sources(self, index: str | None) -> Sources:
        """How index ``index`` names its files to clients, and where it may serve them from."""
        engine = self.engine(index)
        return Sources.of((d.source for d in engine.documents()), self.uploads_dir(engine.index_name))

    def documents(self, index: str | None) -> list[DocumentInfo]:
        engine = self.engine(index)
        docs = engine.documents()
        sources = Sources.of((d.source for d in docs), self.uploads_dir(engine.index_name))
        return [
            DocumentInfo(**vars(d), uploaded=sources.uploaded(d.source), shown=sources.show(d.source)) for d in docs
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
            self.release_upload_name(index, Path(doc.source).name)
        return doc

    def document_file(self, index: str | None, doc_id: str) -> Path:
        """The original file of a document, only while it is what was indexed.

        The path is the one the index recorded (the id is a hash: no client text becomes
        part of a path), and it is checked now, when serving: its real path must be inside
        the index's folder or its uploads (a link swapped since the ingest is not followed
        out), and its content must still hash to what was indexed (else ``Conflict``).
        """
        engine = self.engine(index)
        doc = self.document(engine.index_name, doc_id)
        path = Path(doc.source)
        if not path.is_file() or not self.sources(engine.index_name).servable(doc.source):
            raise NotFound(f"the file of document '{doc_id}' ({doc.shown}) is not where it was indexed")
        record = self.store.open_index(engine.index_name).file(doc.source)
        if record is None or self._digest(path) != record.content_hash:
            raise Conflict(f"{doc.shown} changed since it was indexed: ingest it again to open it")
        return path

    def _digest(self, path: Path) -> str:
        """The file's SHA-256, remembered while its size, time and inode stay the same."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            found = self._digests.get(key)
        if found is None:
            found = file_hash(path)
            with self._lock:
                self._digests[key] = found
                while len(self._digests) > _DIGESTS_KEPT:
                    self._digests.popitem(last=False)
        return found

    def document_text(self, index: str | None, doc_id: str, page: int | None) -> dict[str, Any]:
        """The indexed text of one page (or of the whole file when it has no pages).

        Built from the chunks the index holds, never by reading the file again: what is
        shown is what was indexed, whatever the file (or a link) says now.  Chunk
        ``start``/``end`` offsets index into exactly this string.
        """
        engine = self.engine(index)
        doc = self.document(engine.index_name, doc_id)
        chunks = engine.chunks(doc.source)
        paged = any(c.page is not None for c in chunks)
        if paged and page is None:
            page = 1
        if paged:
            chunks = [c for c in chunks if c.page == page]
            if not chunks:
                raise NotFound(f"document '{doc_id}' has no text on page {page}")
        return {"id": doc.id, "source": doc.shown, "page": page if paged else None, "text": _assemble(chunks)}

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self, index: str, paths: Sequence[Path], progress: Any) -> IngestReport:
        """Ingest ``paths`` exactly as ``rag ingest PATH...`` would (no pruning: files were named)."""
        return self.engine(index, create=True).ingest(list(paths), prune=False, progress=progress)


class Conflict(RagError):
    """The request clashes with what exists (HTTP 409)."""


def _assemble(chunks: Sequence[ChunkRecord]) -> str:
    """Chunks placed at their offsets.  Gaps become line breaks, so that Markdown keeps its
    blocks apart; a Markdown section's heading (not in any chunk) is written back into the
    gap before the section's first chunk, from the chunk's heading path."""
    size = max((c.end for c in chunks), default=0)
    chars = ["\n"] * size
    end, heading = 0, ""
    for c in sorted(chunks, key=lambda c: c.start):
        if c.kind == "markdown" and c.heading and c.heading != heading and c.start > end:
            parts = c.heading.split(HEADING_SEPARATOR)
            line = f"{'#' * min(len(parts), 6)} {parts[-1]}"
            at = end + 2 if end else 0  # after the blank line that ends the text before it
            if at + len(line) + 1 <= c.start:
                chars[at : at + len(line)] = line
        chars[c.start : c.end] = c.text
        end, heading = max(end, c.end), c.heading
    return "".join(chars)


# Path separators, characters Windows forbids in names, and control and bidi-override
# characters (a name must read as what it is): each becomes "_".  Letters of every script stay.
_UNSAFE = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]+')
#: Longest stored name in UTF-8 bytes (file systems allow 255; room is left for " (N)").
_NAME_BYTES = 200


def safe_filename(name: str) -> str:
    """An uploaded file's name made safe to keep, in any script: NFC, no folders, no hidden
    files, no separators or control characters (``отчёт.md`` stays ``отчёт.md``)."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" ._")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext[:16].strip()
    stem = _clip(stem, _NAME_BYTES - len(ext.encode())).strip(" .") or "upload"
    return f"{stem}.{ext}" if ext else stem


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def numbered(name: str, n: int) -> str:
    """``report.md``, then ``report (2).md``, ``report (3).md``..."""
    if n == 1:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"


def citations_json(answer: Answer, sources: Sources) -> list[dict[str, Any]]:
    """Citations with what a client needs to highlight the passage: span, text, document id.

    ``source`` and ``location`` name the file as ``sources`` shows it (no server path);
    two citations of one file that would read the same get their section or passage added.
    """
    hits: dict[str, Hit] = {h.chunk_id: h for h in answer.context}
    out = []
    for c in answer.citations:
        hit = hits.get(c.chunk_id)
        shown = sources.show(c.source)
        out.append(
            {
                **c.to_dict(),
                "source": shown,
                "location": location(shown, c.page, c.heading),
                "start": hit.start if hit else None,
                "end": hit.end if hit else None,
                "text": hit.text if hit else c.text,
                "document_id": document_id(c.source),
            }
        )
    _tell_apart(out)
    return out


def _tell_apart(citations: list[dict[str, Any]]) -> None:
    """Locations made distinct: the heading first (``notes.md § Costs``), then the passage number."""
    for add in (_heading, _passage):
        seen: dict[str, int] = {}
        for c in citations:
            seen[c["location"]] = seen.get(c["location"], 0) + 1
        for c in citations:
            if seen[c["location"]] > 1 and (extra := add(c)):
                c["location"] += extra


def _heading(citation: dict[str, Any]) -> str:
    heading = citation.get("heading") or ""
    return f" § {heading}" if heading and heading not in citation["location"] else ""


def _passage(citation: dict[str, Any]) -> str:
    position = str(citation.get("chunk_id", "")).rpartition("-")[2]
    return f" (passage {int(position) + 1})" if position.isdigit() else ""


def answer_json(answer: Answer, sources: Sources) -> dict[str, Any]:
    """``rag ask --json``'s shape, with citations a client can highlight."""
    data = answer.to_dict()
    data["citations"] = citations_json(answer, sources)
    return data


def hit_json(hit: Hit, sources: Sources) -> dict[str, Any]:
    return {**hit.to_dict(), "source": sources.show(hit.source), "document_id": document_id(hit.source)}


def session_json(session: Session, sources: Sources) -> dict[str, Any]:
    return {**session.info.to_dict(), "turns": [turn_json(t, sources) for t in session.turns]}


def turn_json(turn: ChatTurn, sources: Sources) -> dict[str, Any]:
    return {"question": turn.question, "answer": answer_json(turn.to_answer(), sources)}


Runner = Callable[[DeltaCallback], Answer]
