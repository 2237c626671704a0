"""Helpers for loaders that build their text from a structure (Office files, tables, mail).

Such files have no text of their own to point into, so the extracted text is defined as
the sections' texts joined by blank lines, and ``SectionWriter`` keeps offsets in it.
Tables become records ("Number: 13 | Square: 169"), in blocks of rows each led by the
table's title lines, so that a chunk read on its own still says what its columns mean and
what the table is about (``read_table``, ``row_blocks``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from rag.ingest.document import Section
from rag.results import CELL_SEPARATOR, ROWS_PREFIX  # what the answerer reads as a row, and its range

#: Characters of rows per table block: under the local embedder's 200-token chunks, so a
#: block is one chunk and its row range and header hold for the whole chunk.
TABLE_BLOCK_CHARS = 500


class SectionWriter:
    """Collects sections, giving each its offset in the joined text."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._length = 0

    def add(self, text: str, *, page: int | None = None, heading: tuple[str, ...] = (), ocr: bool = False) -> None:
        text = text.strip()
        if not text:
            return
        if self._length:
            self._length += 2  # the blank line between sections
        self.sections.append(Section(text, page=page, heading=heading, offset=self._length, ocr=ocr))
        self._length += len(text)


def cell_text(value: object) -> str:
    """A spreadsheet or table value as a person would type it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds").removesuffix(" 00:00:00")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


#: A table's title lines (a period, a unit: "In millions of CHF") start with this in chunk
#: text: they say what every row is about, and the answerer quotes rows, not titles.
TITLE_MARK = "# "
#: Most rows of one cell above a table read as its title (repeated in every chunk of it).
MAX_TITLE_ROWS = 3
#: Most header rows read as one (a period over "Sales | Growth"); more is a body of text.
MAX_HEADER_ROWS = 3
_NUMBER = re.compile(r"^[-+(]?[$€£¥]?\d[\d,.' ]*%?\)?$")
_YEAR = re.compile(r"^(?:19|20)\d\d$")  # years name columns ("Sales" over "2023 | 2022")
# Values no header holds: dates ("2020-03-30", "30/03/2020", "2020.3.30."), addresses.
_VALUE = re.compile(r"^(?:\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\.?(?:[ T]\d.*)?|\S+@\S+\.\w+|https?://\S+)$")
#: A header-less table's column names ("Column 2" is how people name them).
COLUMN_NAME = "Column {}"


@dataclass(frozen=True)
class Table:
    """A table as read: the lines above its header, its column names, and its rows."""

    title: list[str]
    columns: list[str]
    rows: list[tuple[int, list[str]]]  # (row number as the file counts it, cells)

    def record(self, cells: Sequence[str]) -> str:
        """A row as "Column: value | ...": a cell under no name stands bare, empty cells are left out."""
        named = [
            f"{self.columns[i]}: {cell}" if i < len(self.columns) and self.columns[i] else cell
            for i, cell in enumerate(cells)
            if cell
        ]
        return CELL_SEPARATOR.join(named)


def read_table(rows: Iterable[tuple[int, Sequence[str]]]) -> Table | None:
    """A table from rows ``(number, cells)``: title rows, a header of one or more rows, the body.

    Rows of a single cell above a wider one are its title.  The first row after them is the
    header, unless it reads as data (``_is_data``): then the columns are named "Column 1",
    "Column 2"..., as people name them when a table has no header.  A header
    cell spanning columns (followed by empty cells, as merged cells read) means the row
    below it names those columns, when that row holds no numbers but years: "Q1 2023" over
    "Sales | Growth" gives "Q1 2023 Sales" and "Q1 2023 Growth".
    """
    kept = [(n, trim_row(cells)) for n, cells in rows]
    kept = [(n, cells) for n, cells in kept if cells]
    if not kept:
        return None
    widest = max(sum(1 for c in cells if c) for _, cells in kept)
    single = 0  # leading rows of one cell
    while single < len(kept) - 1 and sum(1 for c in kept[single][1] if c) == 1:
        single += 1
    # A few of them above a wider table are its title; a column of text is no title.
    titled = widest > 1 and single <= MAX_TITLE_ROWS
    title = [next(c for c in cells if c) for _, cells in kept[:single]] if titled else []
    kept = kept[len(title) :]
    if _is_data(kept[0][1], [cells for _, cells in kept[1:]]):
        width = max(len(cells) for _, cells in kept)
        return Table(title, [COLUMN_NAME.format(i) for i in range(1, width + 1)], kept)
    header = [kept.pop(0)[1]]
    while (
        kept
        and len(header) < MAX_HEADER_ROWS
        and _spans(header[-1], max(len(cells) for _, cells in kept))
        and not any(holds_value(c) for c in kept[0][1])
        and sum(1 for c in kept[0][1] if c) > 1
    ):
        header.append(kept.pop(0)[1])
    return Table(title, _column_names(header), kept)


def holds_value(cell: str) -> bool:
    """A number other than a year, a date, an address: what a header does not hold."""
    return bool((_NUMBER.match(cell) and not _YEAR.match(cell)) or _VALUE.match(cell))


def _is_data(first: Sequence[str], body: Sequence[Sequence[str]]) -> bool:
    """True when a table's first row reads as one of its rows, not as column names: it holds
    a value (``holds_value``), or a cell of it comes again in the same column below (a
    header names a column once; "Purple" over "Purple" is a colour, twice)."""
    if any(holds_value(c) for c in first):
        return True
    below = [{row[i] for row in body if i < len(row)} for i in range(len(first))]
    return any(cell and cell in below[i] for i, cell in enumerate(first))


def _spans(cells: Sequence[str], width: int) -> bool:
    """True when a named cell is followed by an empty one, or by the end of a row narrower than
    the table: a merged cell over several columns."""
    padded = [*cells, *[""] * (width - len(cells))]
    return any(a and not b for a, b in itertools.pairwise(padded))


def _column_names(header: Sequence[Sequence[str]]) -> list[str]:
    """Each column's name: its header cells top to bottom, a merged cell's name carried right."""
    width = max(len(row) for row in header)
    names: list[list[str]] = [[] for _ in range(width)]
    for depth, row in enumerate(header):
        carried = ""
        for i in range(width):
            cell = row[i] if i < len(row) else ""
            if cell:
                carried = cell
            elif depth == len(header) - 1 or not carried:
                continue  # the last header row names its own cells only
            else:
                cell = carried
            if cell not in names[i]:
                names[i].append(cell)
    return [" ".join(parts) for parts in names]


def table_text(table: Table) -> str:
    """A whole table as text (for documents that keep a table inside a section): title lines, then records."""
    lines = [TITLE_MARK + t for t in table.title]
    if not table.rows:
        return "\n".join([*lines, CELL_SEPARATOR.join(c for c in table.columns if c)])
    return "\n".join([*lines, *(table.record(cells) for _, cells in table.rows)])


@dataclass(frozen=True)
class RowBlock:
    first: int  # row numbers as the file counts them (1-based, the header included)
    last: int
    text: str

    @property
    def label(self) -> str:
        return f"{ROWS_PREFIX}{self.first}-{self.last}" if self.last != self.first else f"{ROWS_PREFIX}{self.first}"


def row_blocks(table: Table, budget: int = TABLE_BLOCK_CHARS) -> Iterator[RowBlock]:
    """The table's rows as records in blocks of about ``budget`` characters, each led by its title.

    Every row names its columns, and the title counts against the budget, so a block read
    on its own (one chunk) still says what its numbers mean and what period they cover.
    """
    head = [TITLE_MARK + t for t in table.title]
    budget = max(budget - sum(len(t) + 1 for t in head), 0)
    lines: list[str] = []
    first = last = 0
    size = 0
    for number, cells in table.rows:
        line = table.record(cells)
        if lines and size + len(line) > budget:
            yield RowBlock(first, last, "\n".join([*head, *lines]))
            lines, size = [], 0
        if not lines:
            first = number
        lines.append(line)
        last = number
        size += len(line) + 1
    if lines:
        yield RowBlock(first, last, "\n".join([*head, *lines]))


def trim_row(cells: Sequence[str]) -> list[str]:
    """Cells without the empty ones at the end (spreadsheets pad rows to the widest)."""
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return list(cells[:end])


def header_columns(cells: Sequence[str]) -> list[str]:
    """A declared header's column names; a header with no names at all (a Markdown table
    written ``| | |`` to have none) names its columns "Column 1", "Column 2"..."""
    if any(cells):
        return list(cells)
    return [COLUMN_NAME.format(i) for i in range(1, len(cells) + 1)]


def splice_tables(
    sections: Sequence[Section], tables: Sequence[tuple[int, int, Table]], *, between: str = "\n"
) -> list[Section]:
    """``sections`` of a text file with each table span ``(start, end, table)`` read as records.

    For text formats that keep the file as their extracted text (Markdown, plain text): the
    extracted text becomes the file with each table's source rows replaced, in place, by its
    records, so a section's offset still points at exactly its text, and text before the
    first table keeps the file's own offsets.  A short table stays inside its section; a
    long one becomes sections of its own, blocks of rows as ``row_blocks`` cuts them.  Each
    table lies inside one section; ``between`` goes between its lines.
    """
    out: list[Section] = []
    pending = sorted(tables, key=lambda t: t[0])
    shift = 0  # how much longer the text so far is than the file: records name their columns
    for section in sections:
        end = section.offset + len(section.text)
        if not pending or pending[0][0] >= end:  # no table: the section as it was
            out.append(replace(section, offset=section.offset + shift))
            continue
        parts: list[str] = []
        start = section.offset + shift  # where ``parts`` starts in the extracted text
        position = section.offset  # in the file
        while pending and pending[0][0] < end:
            table_start, table_end, table = pending.pop(0)
            if table_start < section.offset or table_end > end:
                continue  # outside the section, or across its end: left as written
            parts.append(section.text[position - section.offset : table_start - section.offset])
            text = table_text(table).replace("\n", between)
            if len(text) <= TABLE_BLOCK_CHARS:
                parts.append(text)
            else:
                out += _stripped("".join(parts), start, section)
                at = table_start + shift
                blocks = [block.text.replace("\n", between) for block in row_blocks(table)]
                for block in blocks:
                    out.append(Section(block, page=section.page, heading=section.heading, offset=at, ocr=section.ocr))
                    at += len(block) + 2
                text = "\n\n".join(blocks)
                parts, start = [], table_start + shift + len(text)
            shift += len(text) - (table_end - table_start)
            position = table_end
        parts.append(section.text[position - section.offset :])
        out += _stripped("".join(parts), start, section)
    return out


def _stripped(text: str, offset: int, like: Section) -> list[Section]:
    """``text`` at ``offset`` as a section like ``like``, without its surrounding whitespace."""
    if not text.strip():
        return []
    lead = len(text) - len(text.lstrip())
    return [Section(text.strip(), page=like.page, heading=like.heading, offset=offset + lead, ocr=like.ocr)]
