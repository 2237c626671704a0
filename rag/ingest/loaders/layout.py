"""Helpers for loaders that build their text from a structure (Office files, tables, mail).

Such files have no text of their own to point into, so the extracted text is defined as
the sections' texts joined by blank lines, and ``SectionWriter`` keeps offsets in it.
Tables become blocks of rows, each block repeating the header so that a chunk read on
its own still says what its columns mean.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from rag.ingest.document import Section
from rag.results import ROWS_PREFIX  # the heading entry that citations read as a row range

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


@dataclass(frozen=True)
class RowBlock:
    first: int  # row numbers as the file counts them (1-based, the header included)
    last: int
    text: str

    @property
    def label(self) -> str:
        return f"{ROWS_PREFIX}{self.first}-{self.last}" if self.last != self.first else f"{ROWS_PREFIX}{self.first}"


def row_blocks(
    header: Sequence[str], rows: Iterable[tuple[int, Sequence[str]]], budget: int = TABLE_BLOCK_CHARS
) -> Iterator[RowBlock]:
    """Rows ``(number, cells)`` in blocks of about ``budget`` characters, each led by the header.

    The header counts against the budget, so a wide table gets blocks of one row: a
    block must fit one chunk, or the chunks after its first would lose the header.
    """
    head = " | ".join(header)
    budget = max(budget - len(head), 0)
    lines: list[str] = []
    first = last = 0
    size = 0
    for number, cells in rows:
        line = " | ".join(cells)
        if lines and size + len(line) > budget:
            yield RowBlock(first, last, "\n".join([head, *lines]))
            lines, size = [], 0
        if not lines:
            first = number
        lines.append(line)
        last = number
        size += len(line) + 1
    if lines:
        yield RowBlock(first, last, "\n".join([head, *lines]))


def trim_row(cells: Sequence[str]) -> list[str]:
    """Cells without the empty ones at the end (spreadsheets pad rows to the widest)."""
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return list(cells[:end])
