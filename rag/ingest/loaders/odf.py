"""OpenDocument (.odt, .ods, .odp): the zipped XML LibreOffice writes, read with the standard library.

``content.xml`` holds the body.  A text document gets one section per heading
(``text:h`` and its outline level), its tables one line per row with each cell led by its
column's header, as Word tables are; a spreadsheet goes through the Excel table path
(sheet and rows in citations); a presentation gives one section per slide, numbered
from 1, titled by its title frame, speaker notes after a "Notes:" line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.container import open_zip, read_member
from rag.ingest.loaders.layout import SectionWriter, trim_row
from rag.ingest.loaders.spreadsheet import add_table

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_PRESENTATION = "{urn:oasis:names:tc:opendocument:xmlns:presentation:1.0}"
# A sheet's last row or column is often "repeated" to the sheet's end (a million empty
# rows); content repeated more than this many times is kept this many times.
_MAX_REPEAT = 1000


def load_odf(path: Path, data: bytes) -> LoadedDocument:
    what = path.suffix.lower() or ".odt"
    with open_zip(path, data, what) as archive:
        content = read_member(path, archive, "content.xml", what)
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise DocumentError(path, f"damaged {what}: bad XML in content.xml ({exc})") from None
    body = root.find(f"{_OFFICE}body")
    writer = SectionWriter()
    for part in body if body is not None else ():
        if part.tag == f"{_OFFICE}text":
            _text_document(part, writer)
        elif part.tag == f"{_OFFICE}spreadsheet":
            for sheet in part.iter(f"{_TABLE}table"):
                add_table(writer, sheet.get(f"{_TABLE}name") or None, _sheet_rows(sheet))
        elif part.tag == f"{_OFFICE}presentation":
            for number, page in enumerate(part.iter(f"{_DRAW}page"), start=1):
                title, text = _slide(page)
                writer.add(text, page=number, heading=(title,) if title else ())
    return LoadedDocument(path, what.lstrip("."), writer.sections)


def _text_document(body: ElementTree.Element, writer: SectionWriter) -> None:
    stack: list[tuple[int, str]] = []
    parts: list[str] = []

    def flush() -> None:
        writer.add("\n\n".join(parts), heading=tuple(t for _, t in stack))
        parts.clear()

    for kind, element in _blocks(body):
        if kind == "heading":
            title = " ".join(_inline(element).split())
            if not title:
                continue
            flush()
            level = int(element.get(f"{_TEXT}outline-level") or 1)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        elif kind == "table":
            parts.append(_records(_table_rows(element)))
        else:
            text = _inline(element).strip()
            if text:
                parts.append(text)
    flush()


def _blocks(element: ElementTree.Element) -> Iterator[tuple[str, ElementTree.Element]]:
    """Headings, paragraphs and tables in reading order (lists and sections opened)."""
    for child in element:
        if child.tag == f"{_TEXT}h":
            yield "heading", child
        elif child.tag == f"{_TEXT}p":
            yield "paragraph", child
        elif child.tag == f"{_TABLE}table":
            yield "table", child
        elif child.tag in (f"{_TEXT}list", f"{_TEXT}list-item", f"{_TEXT}section", f"{_TEXT}list-header"):
            yield from _blocks(child)


def _inline(element: ElementTree.Element) -> str:
    """A paragraph's text: ``text:s`` is spaces, ``text:tab`` a tab, ``text:line-break`` a newline."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == f"{_TEXT}s":
            parts.append(" " * int(child.get(f"{_TEXT}c") or 1))
        elif child.tag == f"{_TEXT}tab":
            parts.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif child.tag != f"{_TEXT}note-citation":
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _cell(cell: ElementTree.Element) -> str:
    return " ".join(" ".join(_inline(p).split()) for p in cell.iter(f"{_TEXT}p")).strip()


def _table_rows(table: ElementTree.Element) -> Iterator[list[str]]:
    for row in table.iter(f"{_TABLE}table-row"):
        cells: list[str] = []
        for cell in row:
            if cell.tag in (f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell"):
                text = _cell(cell)
                repeat = int(cell.get(f"{_TABLE}number-columns-repeated") or 1)
                cells.extend([text] * (min(repeat, _MAX_REPEAT) if text else min(repeat, 1)))
        yield trim_row(cells)


def _sheet_rows(sheet: ElementTree.Element) -> Iterator[tuple[int, list[str]]]:
    """A sheet's rows with their numbers as the spreadsheet counts them (repeats counted)."""
    number = 1
    for row, cells in zip(sheet.iter(f"{_TABLE}table-row"), _table_rows(sheet), strict=True):
        repeat = int(row.get(f"{_TABLE}number-rows-repeated") or 1)
        if cells:
            for i in range(min(repeat, _MAX_REPEAT)):
                yield number + i, cells
        number += repeat


def _records(rows: Iterator[list[str]]) -> str:
    """Table rows as lines of "Header: value" cells (the first row is the header)."""
    filled = [r for r in rows if any(r)]
    if not filled:
        return ""
    header, body = filled[0], filled[1:]
    if not body:
        return " | ".join(header)
    return "\n".join(
        " | ".join(f"{header[i]}: {c}" if i < len(header) and header[i] else c for i, c in enumerate(row) if c)
        for row in body
    )


def _slide(page: ElementTree.Element) -> tuple[str, str]:
    title = ""
    parts: list[str] = []
    notes: list[str] = []
    for child in page:
        if child.tag == f"{_PRESENTATION}notes":
            notes.extend(_lines(child))
            continue
        for frame in child.iter(f"{_DRAW}frame"):
            text = "\n".join(_lines(frame))
            if frame.get(f"{_PRESENTATION}class") == "title" and not title:
                title = " ".join(text.split())
            if text:
                parts.append(text)
    if notes:
        parts.append("Notes: " + "\n".join(notes))
    return title, "\n\n".join(parts)


def _lines(element: ElementTree.Element) -> list[str]:
    return [line for line in (_inline(p).strip() for p in element.iter(f"{_TEXT}p")) if line]
