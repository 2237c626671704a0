"""What an index stores per chunk and per file, and the one mapping to and from Chroma metadata.

Chroma holds, beside each vector, enough to rebuild the manifest from a server alone
(``to_metadata``/``from_metadata``); search filters read ``source`` and ``page``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEADING_SEPARATOR = " > "


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


def to_metadata(chunk: ChunkRecord, record: FileRecord) -> dict[str, Any]:
    """Chroma metadata for ``chunk`` of ``record``."""
    meta: dict[str, Any] = {
        "source": chunk.path,
        "kind": chunk.kind,
        "position": chunk.position,
        "start": chunk.start,
        "end": chunk.end,
        "tokens": chunk.tokens,
        "file_hash": record.content_hash,
        "signature": record.signature,
        "file_size": record.size,
        "file_mtime_ns": record.mtime_ns,
    }
    # Chroma metadata cannot hold None; absent keys simply don't match page filters.
    if chunk.page is not None:
        meta["page"] = chunk.page
    if chunk.heading:
        meta["heading"] = chunk.heading
    return meta


def from_metadata(chunk_id: str, text: str | None, meta: dict[str, Any] | None) -> tuple[ChunkRecord, FileRecord]:
    """The chunk and (with ``chunk_count`` 0 and no pages) its file, read back from Chroma."""
    meta = meta or {}
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
        chunk_count=0,
        ingested_at=0.0,
    )
    return chunk, record
