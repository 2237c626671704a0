"""Read a file into sections of text, by its extension (the table is ``rag.filetypes``).

``load`` either returns a document with at least one non-blank section or raises
``DocumentError`` with a one-line reason; it never lets a parser's own exception out.
Each ``read_*`` here is a reader that ``rag.filetypes.FILE_TYPES`` names: the same
signature for every type, whatever its parser needs.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rag.errors import DocumentError
from rag.filetypes import FILE_TYPES, SUPPORTED_EXTENSIONS, FileType, file_type, kind_named, kind_of, kinds
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
from rag.ingest.loaders.text import decode_text, load_plain_text, load_text, read_bytes
from rag.text import normalize_controls

__all__ = [
    "FILE_TYPES",
    "SUPPORTED_EXTENSIONS",
    "FileType",
    "LoadOptions",
    "Reader",
    "decode_text",
    "file_type",
    "kind_named",
    "kind_of",
    "kinds",
    "load",
    "load_bytes",
    "reader",
]


@dataclass(frozen=True)
class LoadOptions:
    """Choices that change what a loader reads (they are part of the chunking recipe)."""

    ocr: OcrMode = "auto"


Reader = Callable[[Path, bytes, LoadOptions], LoadedDocument]


def _plain(function: Callable[[Path, bytes], LoadedDocument], kind: str | None = None) -> Reader:
    def read(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
        document = function(path, data)
        if kind is not None:
            document.kind = kind
        return document

    return read


def read_pdf(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_pdf(path, data, options.ocr)


def read_image(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return LoadedDocument(path, "image", [Section(load_image_text(path, data, options.ocr).strip(), ocr=True)])


def read_eml(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_eml(path, data, lambda p, d: load_bytes(p, d, options))


def read_msg(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_msg(path, data, lambda p, d: load_bytes(p, d, options))


read_text = _plain(load_plain_text)
read_code = _plain(load_text, "code")
read_json = _plain(load_text, "json")
read_yaml = _plain(load_text, "yaml")
read_markdown = _plain(load_markdown)
read_html = _plain(load_html)
read_docx = _plain(load_docx)
read_pptx = _plain(load_pptx)
read_xlsx = _plain(load_xlsx)
read_odf = _plain(load_odf)
read_csv = _plain(load_csv)
read_epub = _plain(load_epub)
read_rst = _plain(load_rst)
read_tex = _plain(load_tex)


@functools.cache
def reader(name: str) -> Reader:
    """The reader a ``FileType`` names: ``read_pdf`` (here) or ``module:function``."""
    module, _, function = name.rpartition(":")
    found: Reader = getattr(importlib.import_module(module) if module else sys.modules[__name__], function)
    return found


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
    document = reader(found.reader)(path, data, options or LoadOptions())
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
