"""Read a file into sections of text, by its extension.

``load`` either returns a document with at least one non-blank section or raises
``DocumentError`` with a one-line reason; it never lets a parser's own exception out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.markdown import load_markdown
from rag.ingest.loaders.pdf import load_pdf
from rag.ingest.loaders.text import decode_text, load_text, read_bytes

__all__ = ["SUPPORTED_EXTENSIONS", "decode_text", "kind_of", "load"]

#: Lower-case extension -> ``LoadedDocument.kind``.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
}

_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    "text": load_text,
    "markdown": load_markdown,
    "pdf": load_pdf,
    "html": load_html,
}


def kind_of(path: Path) -> str | None:
    """The document kind for this file name, or None when rag cannot read it."""
    return SUPPORTED_EXTENSIONS.get(path.suffix.lower())


def load(path: Path) -> LoadedDocument:
    kind = kind_of(path)
    if kind is None:
        raise DocumentError(path, f"unsupported file type '{path.suffix or path.name}'")
    data = read_bytes(path)
    if not data or data.isspace():
        raise DocumentError(path, "empty file")
    document = _LOADERS[kind](path, data)
    if not document.sections:
        raise DocumentError(path, "no visible text" if kind == "html" else "no text")
    return document
