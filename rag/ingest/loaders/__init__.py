"""Read a file into sections of text, by its extension: the one table of file types.

``load`` either returns a document with at least one non-blank section or raises
``DocumentError`` with a one-line reason; it never lets a parser's own exception out.
Adding a file type is one loader module and one line in ``FILE_TYPES``; discovery,
``--type`` filters, ``rag status`` and citations all read this table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders.docx import load_docx
from rag.ingest.loaders.eml import load_eml
from rag.ingest.loaders.epub import load_epub
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.markdown import load_markdown
from rag.ingest.loaders.markup import load_rst, load_tex
from rag.ingest.loaders.msg import load_msg
from rag.ingest.loaders.ocr import OcrMode, load_image_text
from rag.ingest.loaders.odf import load_odf
from rag.ingest.loaders.pdf import load_pdf
from rag.ingest.loaders.pptx import load_pptx
from rag.ingest.loaders.spreadsheet import load_csv, load_xlsx
from rag.ingest.loaders.text import decode_text, load_text, read_bytes
from rag.text import normalize_controls

__all__ = [
    "FILE_TYPES",
    "SUPPORTED_EXTENSIONS",
    "FileType",
    "LoadOptions",
    "decode_text",
    "file_type",
    "kind_named",
    "kind_of",
    "kinds",
    "load",
    "load_bytes",
]

#: How a citation points into a file of this type (see ``rag.results.location``).
Locator = Literal["page", "slide", "rows", "section"]


@dataclass(frozen=True)
class LoadOptions:
    """Choices that change what a loader reads (they are part of the chunking recipe)."""

    ocr: OcrMode = "auto"


Reader = Callable[[Path, bytes, LoadOptions], LoadedDocument]


@dataclass(frozen=True)
class FileType:
    kind: str
    read: Reader
    #: How citations locate a chunk: by page (or just the file), slide, sheet and rows, or heading.
    cites: Locator = "page"
    #: Parsed in a worker process with time and memory limits: binary formats, C parsers,
    #: decompression.  Plain-text formats are parsed in-process (no worker start-up cost).
    isolate: bool = True


def _plain(function: Callable[[Path, bytes], LoadedDocument], kind: str | None = None) -> Reader:
    def read(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
        document = function(path, data)
        if kind is not None:
            document.kind = kind
        return document

    return read


def _pdf(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_pdf(path, data, options.ocr)


def _image(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return LoadedDocument(path, "image", [Section(load_image_text(path, data, options.ocr).strip(), ocr=True)])


def _eml(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_eml(path, data, lambda p, d: load_bytes(p, d, options))


def _msg(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_msg(path, data, lambda p, d: load_bytes(p, d, options))


_TEXT = FileType("text", _plain(load_text), isolate=False)
_CODE = FileType("code", _plain(load_text, "code"), isolate=False)
_IMAGE = FileType("image", _image)

#: Lower-case extension -> how to read it.
FILE_TYPES: dict[str, FileType] = {
    ".txt": _TEXT,
    ".md": FileType("markdown", _plain(load_markdown), isolate=False),
    ".markdown": FileType("markdown", _plain(load_markdown), isolate=False),
    ".pdf": FileType("pdf", _pdf),
    ".html": FileType("html", _plain(load_html), isolate=False),
    ".htm": FileType("html", _plain(load_html), isolate=False),
    ".docx": FileType("docx", _plain(load_docx), cites="section"),
    ".pptx": FileType("pptx", _plain(load_pptx), cites="slide"),
    ".xlsx": FileType("xlsx", _plain(load_xlsx), cites="rows"),
    ".xlsm": FileType("xlsx", _plain(load_xlsx), cites="rows"),  # macros are not run, only cells read
    ".odt": FileType("odt", _plain(load_odf), cites="section"),
    ".ods": FileType("ods", _plain(load_odf), cites="rows"),
    ".odp": FileType("odp", _plain(load_odf), cites="slide"),
    ".csv": FileType("csv", _plain(load_csv), cites="rows", isolate=False),
    ".tsv": FileType("csv", _plain(load_csv), cites="rows", isolate=False),
    ".epub": FileType("epub", _plain(load_epub), cites="section"),
    ".eml": FileType("eml", _eml, cites="section"),
    ".msg": FileType("msg", _msg, cites="section"),
    ".rst": FileType("rst", _plain(load_rst), cites="section", isolate=False),
    ".tex": FileType("tex", _plain(load_tex), cites="section", isolate=False),
    ".json": FileType("json", _plain(load_text, "json"), isolate=False),
    ".yaml": FileType("yaml", _plain(load_text, "yaml"), isolate=False),
    ".yml": FileType("yaml", _plain(load_text, "yaml"), isolate=False),
    ".png": _IMAGE,
    ".jpg": _IMAGE,
    ".jpeg": _IMAGE,
    ".tif": _IMAGE,
    ".tiff": _IMAGE,
    **dict.fromkeys(
        (".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".c", ".h", ".cpp", ".hpp", ".cc", ".cs", ".go", ".rs",
         ".rb", ".php", ".swift", ".kt", ".scala", ".sh", ".sql", ".r", ".lua", ".pl"),
        _CODE,
    ),
}  # fmt: skip

#: Lower-case extension -> ``LoadedDocument.kind``.
SUPPORTED_EXTENSIONS: dict[str, str] = {ext: t.kind for ext, t in FILE_TYPES.items()}


def file_type(path: Path | str) -> FileType | None:
    """How to read this file, by its name; None when rag cannot read it."""
    # ``Path(path).suffix`` without building a Path: this runs several times per file.
    name = os.path.basename(path)
    dot = name.rfind(".")
    return FILE_TYPES.get(name[dot:].lower()) if 0 < dot < len(name) - 1 else None


def kind_of(path: Path) -> str | None:
    """The document kind for this file name, or None when rag cannot read it."""
    found = file_type(path)
    return found.kind if found else None


def kind_named(name: str) -> str | None:
    """The kind a ``--type`` value means: a kind (``markdown``) or an extension (``md``, ``.py``)."""
    name = name.lower().strip()
    if name in {t.kind for t in FILE_TYPES.values()}:
        return name
    found = FILE_TYPES.get("." + name.lstrip("."))
    return found.kind if found else None


def kinds() -> list[str]:
    """Every document kind rag reads (``--type`` help)."""
    return sorted({t.kind for t in FILE_TYPES.values()})


def type_names() -> list[str]:
    """Every ``--type`` value, for help and error messages."""
    return sorted({ext.lstrip(".") for ext in FILE_TYPES} | {t.kind for t in FILE_TYPES.values()})


def load(path: Path, options: LoadOptions | None = None) -> LoadedDocument:
    found = file_type(path)
    if found is None:
        raise DocumentError(path, f"unsupported file type '{path.suffix or path.name}'")
    return load_bytes(path, read_bytes(path), options)


def load_bytes(path: Path, data: bytes, options: LoadOptions | None = None) -> LoadedDocument:
    """Read ``data`` as the file ``path`` names (its extension picks the loader)."""
    found = file_type(path)
    if found is None:
        raise DocumentError(path, f"unsupported file type '{path.suffix or path.name}'")
    if not data or data.isspace():
        raise DocumentError(path, "empty file")
    document = found.read(path, data, options or LoadOptions())
    document.sections = [s for s in map(_normalized, document.sections) if s.text]
    if not document.sections:
        raise DocumentError(path, "no visible text" if found.kind == "html" else "no text")
    return document


def _normalized(section: Section) -> Section:
    """The section without control characters (one place for every loader), still stripped.

    Characters are only dropped or replaced one for one, so a section never grows: the
    sections' offsets stay in order and never overlap.
    """
    text = normalize_controls(section.text)
    if text == section.text:
        return section
    lead = len(text) - len(text.lstrip())
    return replace(section, text=text.strip(), offset=section.offset + lead)
