"""What loaders produce and what the chunker makes of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Section:
    """A run of extracted text from one place in a file.

    ``offset`` is where ``text`` starts in the file's extracted text: the decoded file for
    plain text and Markdown, the visible text for HTML, the page's text for PDFs.  Chunk
    spans are measured in the same coordinates, so ``extracted[start:end] == chunk.text``.
    """

    text: str
    page: int | None = None
    heading: tuple[str, ...] = ()
    offset: int = 0
    #: The text came from OCR of an image (a scanned page, a photo), not from the file.
    ocr: bool = False


@dataclass
class LoadedDocument:
    """A file's text, split where its structure splits it (pages, headings)."""

    path: Path
    kind: str  # a kind from the loader table (rag.ingest.loaders)
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)

    @property
    def char_count(self) -> int:
        return sum(len(s.text) for s in self.sections)


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it has an id: text plus where it came from."""

    text: str
    page: int | None
    heading: tuple[str, ...]
    start: int
    end: int
    position: int
    tokens: int
    ocr: bool = False
