"""Tables: Excel (.xlsx, read-only openpyxl) and delimited text (.csv, .tsv).

Each sheet is read as a table (``rag.ingest.loaders.layout.read_table``): title rows, a
header of one or more rows, then rows quoted as records ("Number: 13 | Square: 169"), cut
into blocks that each start with the title (``row_blocks``).  Each block's heading path is
``(sheet, "rows 2-40")`` with the row numbers a person sees in Excel or a text editor, so
a citation reads ``table.xlsx:Sheet1!rows 2-40``.  Formulas are read as the values Excel
last saved.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.container import open_zip
from rag.ingest.loaders.layout import SectionWriter, cell_text, read_table, row_blocks, table_text
from rag.ingest.loaders.text import decode_lines

# CSV fields can be long (a pasted paragraph); the csv module's default limit is 128 KB.
csv.field_size_limit(16 << 20)


def load_xlsx(path: Path, data: bytes) -> LoadedDocument:
    open_zip(path, data, ".xlsx").close()
    from openpyxl import load_workbook  # lazily: openpyxl costs start-up time

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except MemoryError:  # the parse worker reports it as out of memory
        raise
    except Exception as exc:  # openpyxl raises KeyError, ValueError, lxml errors...
        raise DocumentError(path, f"damaged .xlsx ({_short(exc)})") from None
    writer = SectionWriter()
    warnings: list[str] = []
    try:
        for sheet in book.worksheets:
            try:
                rows = (
                    (number, [cell_text(v) for v in values])
                    for number, values in enumerate(sheet.iter_rows(values_only=True), start=sheet.min_row or 1)
                )
                add_table(writer, sheet.title, rows)
            except MemoryError:  # the parse worker reports it as out of memory
                raise
            except Exception as exc:  # one bad sheet must not lose the others
                warnings.append(f"sheet {sheet.title}: could not be read ({_short(exc)})")
    finally:
        book.close()
    if not writer.sections and warnings:
        raise DocumentError(path, f"damaged .xlsx ({warnings[0]})")
    return LoadedDocument(path, "xlsx", writer.sections, warnings)


def load_csv(path: Path, data: bytes) -> LoadedDocument:
    lines, warnings = decode_lines(data, path)
    text = "".join(lines)
    dialect = _dialect(text, tab=path.suffix.lower() == ".tsv")
    # Row numbers are line numbers of a row's first line (a quoted field may span lines).
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    rows: list[tuple[int, list[str]]] = []
    try:
        line = 1
        for cells in reader:
            rows.append((line, [" ".join(c.split()) for c in cells]))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DocumentError(path, f"malformed CSV at line {reader.line_num}: {exc}") from None
    writer = SectionWriter()
    add_table(writer, None, rows)
    return LoadedDocument(path, "csv", writer.sections, warnings)


def add_table(writer: SectionWriter, sheet: str | None, rows: Iterable[tuple[int, Sequence[str]]]) -> None:
    """Write a sheet's rows as row-range sections (Excel, CSV and OpenDocument sheets share it)."""
    table = read_table(rows)
    if table is None:
        return
    prefix = (sheet,) if sheet else ()
    if not table.rows:  # a header alone is still text someone may look for
        writer.add(table_text(table), heading=(*prefix, "rows 1"))
        return
    for block in row_blocks(table):
        writer.add(block.text, heading=(*prefix, block.label))


def _dialect(text: str, *, tab: bool) -> type[csv.Dialect] | csv.Dialect:
    if tab:
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:  # one column, or too irregular to tell: commas are the default
        return csv.excel


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return (message[:117] + "...") if len(message) > 120 else (message or type(exc).__name__)
