"""What an index stores per chunk and per file, and the one mapping to and from Chroma metadata.

Chroma holds, beside each vector, enough to rebuild the manifest from a server alone
(``to_metadata``/``from_metadata``); search filters read ``source`` and ``page``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rag.results import OCR_SUFFIX, Document, Hit, document_id


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk as the index stores it: ``start``/``end`` are its character span in the file's text."""

    id: str
    path: str
    kind: str
    position: int
    page: int | None
    heading: str
    start: int
    end: int
    tokens: int
    text: str

    def hit(self, *, rank: int, score: float, relevance: float | None = None) -> Hit:
        """This chunk as a search hit, ranked ``rank`` with ``score``."""
        same = {name: getattr(self, name) for name in ("page", "heading", "text", "start", "end")}
        ocr = self.kind.endswith(OCR_SUFFIX)
        return Hit(rank=rank, score=score, chunk_id=self.id, source=self.path, relevance=relevance, ocr=ocr, **same)


@dataclass(frozen=True)
class FileRecord:
    """An indexed file: what it was (hash, size, mtime) and how it was chunked (signature)."""

    path: str
    content_hash: str
    signature: str
    kind: str
    size: int
    mtime_ns: int
    pages: int | None
    chunk_count: int
    ingested_at: float
    warnings: tuple[str, ...] = ()

    def document(self) -> Document:
        """This file as the ``Document`` the API and ``rag status`` show."""
        same = {name: getattr(self, name) for name in ("kind", "pages", "size", "ingested_at", "warnings")}
        return Document(id=document_id(self.path), source=self.path, chunks=self.chunk_count, **same)


#: Chroma metadata key holding everything about a chunk that no search filters on, as JSON.
#: One string costs Chroma one metadata row where ten keys cost ten, and the text kept
#: here rather than as the record's document skips Chroma's full-text index, which rag
#: never queries: together they halve Chroma's write time (``benchmarks/ingest.py``).
RECORD_KEY = "rag"


def to_metadata(chunk: ChunkRecord, record: FileRecord) -> dict[str, Any]:
    """Chroma metadata for ``chunk`` of ``record``: the filter keys, and the rest packed."""
    packed = {
        "kind": chunk.kind,
        "position": chunk.position,
        "heading": chunk.heading,
        "start": chunk.start,
        "end": chunk.end,
        "tokens": chunk.tokens,
        "text": chunk.text,
        "file_hash": record.content_hash,
        "signature": record.signature,
        "file_size": record.size,
        "file_mtime_ns": record.mtime_ns,
        # With the hash, what proves a file's chunk set complete (``rag repair``).
        "file_chunks": record.chunk_count,
    }
    meta: dict[str, Any] = {"source": chunk.path, RECORD_KEY: json.dumps(packed, ensure_ascii=False)}
    # Chroma metadata cannot hold None; absent keys simply don't match page filters.
    if chunk.page is not None:
        meta["page"] = chunk.page
    return meta


def from_metadata(chunk_id: str, text: str | None, meta: dict[str, Any] | None) -> tuple[ChunkRecord, FileRecord]:
    """The chunk and (with no pages) its file, read back from Chroma; the file's
    ``chunk_count`` is 0 when the chunk predates it being stored.

    Reads both layouts: the packed one, and 0.1's (a key per field, the text as document).
    """
    meta = dict(meta or {})
    if RECORD_KEY in meta:
        meta.update(json.loads(meta.pop(RECORD_KEY)))
        text = meta.get("text", text)
    chunk = ChunkRecord(
        id=chunk_id,
        path=str(meta.get("source", "")),
        kind=str(meta.get("kind", "text")),
        position=int(meta.get("position", 0)),
        page=int(meta["page"]) if "page" in meta else None,
        heading=str(meta.get("heading", "")),
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        tokens=int(meta.get("tokens", 0)),
        text=text or "",
    )
    record = FileRecord(
        path=chunk.path,
        content_hash=str(meta.get("file_hash", "")),
        signature=str(meta.get("signature", "")),
        kind=chunk.kind,
        size=int(meta.get("file_size", -1)),
        mtime_ns=int(meta.get("file_mtime_ns", -1)),
        pages=None,
        chunk_count=int(meta.get("file_chunks", 0)),
        ingested_at=0.0,
    )
    return chunk, record
