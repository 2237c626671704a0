"""Read a file into sections of text, by its extension: the one table of file types.

``LOADERS`` maps each extension to its loader and the kind of document it makes.
Discovery (which files to read), search filters (``--type``) and the CLI's help all read
this table, so a new file type is one loader module plus one line here, or one call to
``register`` (e.g. from a plugin or a test).

``load`` either returns a document with at least one non-blank section or raises
``DocumentError`` with a one-line reason; it never lets a parser's own exception out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.markdown import load_markdown
from rag.ingest.loaders.pdf import load_pdf
from rag.ingest.loaders.text import decode_text, load_text, read_bytes

__all__ = ["LOADERS", "Loader", "decode_text", "kind_of", "kinds", "load", "register", "resolve_type", "type_names"]

#: Reads a file's bytes into a document (raises ``DocumentError`` on bad input).
Loader = Callable[[Path, bytes], LoadedDocument]


class FileType(NamedTuple):
    load: Loader
    kind: str


#: Lower-case extension -> (loader, ``LoadedDocument.kind``).  One line per extension.
LOADERS: dict[str, FileType] = {
    ".txt": FileType(load_text, "text"),
    ".md": FileType(load_markdown, "markdown"),
    ".markdown": FileType(load_markdown, "markdown"),
    ".pdf": FileType(load_pdf, "pdf"),
    ".html": FileType(load_html, "html"),
    ".htm": FileType(load_html, "html"),
}


def register(extension: str, loader: Loader, kind: str) -> None:
    """Read files ending in ``extension`` with ``loader``, as documents of ``kind``."""
    LOADERS["." + extension.lower().lstrip(".")] = FileType(loader, kind)


def kind_of(path: Path) -> str | None:
    """The document kind for this file name, or None when rag cannot read it."""
    entry = LOADERS.get(path.suffix.lower())
    return entry.kind if entry is not None else None


def kinds() -> list[str]:
    """Every document kind rag reads."""
    return sorted({entry.kind for entry in LOADERS.values()})


def type_names() -> list[str]:
    """What ``--type`` accepts: kinds and extensions (``markdown``, ``md``, ``pdf``...)."""
    return sorted(set(kinds()) | {ext.lstrip(".") for ext in LOADERS})


def resolve_type(name: str) -> str | None:
    """The kind a ``--type`` value names (a kind, or an extension with or without its dot)."""
    key = name.strip().lower().lstrip(".")
    if key in kinds():
        return key
    entry = LOADERS.get("." + key)
    return entry.kind if entry is not None else None


def load(path: Path) -> LoadedDocument:
    entry = LOADERS.get(path.suffix.lower())
    if entry is None:
        raise DocumentError(path, f"unsupported file type '{path.suffix or path.name}'")
    data = read_bytes(path)
    if not data or data.isspace():
        raise DocumentError(path, "empty file")
    document = entry.load(path, data)
    if not document.sections:
        raise DocumentError(path, "no visible text" if entry.kind == "html" else "no text")
    return document
