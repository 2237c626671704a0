"""The one table of file types: extensions, kinds, how citations point into them, and the
reader for each, by name.

It imports no parser: results, filters and discovery read it without loading PDF or
Office libraries.  Adding a file type is one reader (a function ``(path, data, options) ->
LoadedDocument``, usually a module in ``rag.ingest.loaders``) and one line in
``FILE_TYPES``; discovery, ``--type`` filters, ``rag status``, citations and the loaders
all read this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "FILE_TYPES",
    "SUPPORTED_EXTENSIONS",
    "FileType",
    "Locator",
    "file_type",
    "kind_named",
    "kind_of",
    "kinds",
    "type_names",
]

#: How a citation points into a file of this type (see ``rag.results.location``).
Locator = Literal["page", "slide", "rows", "section"]


@dataclass(frozen=True)
class FileType:
    kind: str
    #: The reader, by name: an attribute of ``rag.ingest.loaders`` (``read_pdf``), or
    #: ``module:function`` for one that lives elsewhere.  Imported when first used.
    reader: str
    #: How citations locate a chunk: by page (or just the file), slide, sheet and rows, or heading.
    cites: Locator = "page"
    #: Parsed in a worker process with time and memory limits: binary formats, C parsers,
    #: decompression.  Plain-text formats are parsed in-process (no worker start-up cost).
    isolate: bool = True


_TEXT = FileType("text", "read_text", isolate=False)
_CODE = FileType("code", "read_code", isolate=False)
_IMAGE = FileType("image", "read_image")

#: Lower-case extension -> how to read it.
FILE_TYPES: dict[str, FileType] = {
    ".txt": _TEXT,
    ".md": FileType("markdown", "read_markdown", isolate=False),
    ".markdown": FileType("markdown", "read_markdown", isolate=False),
    ".pdf": FileType("pdf", "read_pdf"),
    ".html": FileType("html", "read_html", isolate=False),
    ".htm": FileType("html", "read_html", isolate=False),
    ".docx": FileType("docx", "read_docx", cites="section"),
    ".pptx": FileType("pptx", "read_pptx", cites="slide"),
    ".xlsx": FileType("xlsx", "read_xlsx", cites="rows"),
    ".xlsm": FileType("xlsx", "read_xlsx", cites="rows"),  # macros are not run, only cells read
    ".odt": FileType("odt", "read_odf", cites="section"),
    ".ods": FileType("ods", "read_odf", cites="rows"),
    ".odp": FileType("odp", "read_odf", cites="slide"),
    ".csv": FileType("csv", "read_csv", cites="rows", isolate=False),
    ".tsv": FileType("csv", "read_csv", cites="rows", isolate=False),
    ".epub": FileType("epub", "read_epub", cites="section"),
    ".eml": FileType("eml", "read_eml", cites="section"),
    ".msg": FileType("msg", "read_msg", cites="section"),
    ".rst": FileType("rst", "read_rst", cites="section", isolate=False),
    ".tex": FileType("tex", "read_tex", cites="section", isolate=False),
    ".json": FileType("json", "read_json", isolate=False),
    ".yaml": FileType("yaml", "read_yaml", isolate=False),
    ".yml": FileType("yaml", "read_yaml", isolate=False),
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


def kind_of(path: Path | str) -> str | None:
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
