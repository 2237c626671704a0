"""Tables in plain text: columns aligned with spaces, as reports and command output print them.

Only what reads as a table beyond doubt is taken, since prose or code read as records
would be garbled:

- a run of at least ``MIN_ROWS`` lines between blank lines (a line of one cell just above
  is the table's title), every line with the same number of cells (two or more), cells
  apart by two spaces or a tab;
- either a rule of dashes under the first line ("-----  ------", which says where the
  columns are) or columns that line up (each starts, or ends, at the same place on every
  line) of which one holds numbers or dates below the first line;
- no line that reads as code (a comment, an assignment, a line ending in ``;`` or a brace)
  or as a table of contents (dot leaders).

Measured: no table in ../shared/data's and data/'s text files (articles, SQuAD and SciFact
paragraphs are prose), nor in 995 README/NEWS/.md files of /usr/share/doc; 19 in 1,479
of its compressed documents (changelogs, manuals, licences) and 5 in 680 files of Python's
standard library, every one a real table (pip list output, protocol layouts, reST
tables), after dot leaders were ruled out (a manual's table of contents read as 5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.ingest.loaders.layout import Table, header_columns, holds_value, read_table

#: Fewest lines a table has (a header and two rows, or three rows).
MIN_ROWS = 3
_GAP = re.compile(r"\t+| {2,}")
_RULE = re.compile(r"[ \t]*[-=]{2,}(?:[ \t]+[-=]{2,})+[ \t]*")
# Code, not a table: comments, assignments and arrows, statement ends and braces; and a
# table of contents, whose dot leaders line its page numbers up.
_NOT_TABLE = re.compile(r"^(?:#|//|/\*|--\s)|\s(?:=|==|:=|->|=>)\s|[;{}\\]$|\.{4,}|(?:\. ){3,}")


@dataclass(frozen=True)
class _Line:
    offset: int  # in the text
    text: str  # tabs expanded, without the line end


def text_tables(text: str) -> list[tuple[int, int, Table]]:
    """``(start, end, table)`` for each table in ``text``; ``end`` is the end of its last line."""
    tables = []
    for run in _runs(text):
        # Rules above and below a table are its borders (reStructuredText's simple tables).
        inner = run[1:] if _RULE.fullmatch(run[0].text) else run
        inner = inner[:-1] if _RULE.fullmatch(inner[-1].text) else inner
        for title in (0, 1):  # the whole run, or a title line (one cell) above the table
            if title and len(_cells(inner[0].text)) > 1:
                break
            found = _table(inner[title:], [inner[0].text.strip()] if title else [])
            if found is not None:
                tables.append((run[0].offset, run[-1].offset + len(run[-1].text), found))
                break
    return tables


def _runs(text: str) -> list[list[_Line]]:
    """Runs of non-blank lines, at least ``MIN_ROWS`` long."""
    runs: list[list[_Line]] = [[]]
    position = 0
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if line.strip():
            runs[-1].append(_Line(position, line))
        elif runs[-1]:
            runs.append([])
        position += len(raw) + 1
    return [run for run in runs if len(run) >= MIN_ROWS]


def _table(lines: list[_Line], title: list[str]) -> Table | None:
    if len(lines) < MIN_ROWS or any(_NOT_TABLE.search(line.text.strip()) for line in lines):
        return None
    if "\t" in "".join(line.text for line in lines):
        return None  # tab stops vary by editor: alignment cannot be checked
    if _RULE.fullmatch(lines[1].text):
        return _ruled(lines, title)
    cells = [_cells(line.text) for line in lines]
    width = len(cells[0])
    if width < 2 or any(len(row) != width for row in cells):
        return None
    for column in range(1, width):
        starts = {row[column][0] for row in cells}
        ends = {row[column][1] for row in cells}
        if len(starts) > 1 and len(ends) > 1:
            return None  # not aligned: prose with double spaces
    texts = [[text for _, _, text in row] for row in cells]
    if not any(all(holds_value(row[c]) for row in texts[1:]) for c in range(1, width)):
        return None  # columns of words only: a list laid out in columns as often as a table
    table = read_table(list(enumerate(texts, start=1)))
    return Table(title, table.columns, table.rows) if table else None


def _ruled(lines: list[_Line], title: list[str]) -> Table | None:
    """A table whose header is underlined by one run of dashes per column."""
    starts = [m.start() for m in re.finditer(r"[-=]+", lines[1].text)]
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate([lines[0], *lines[2:]], start=1):
        if any(0 < s < len(line.text) and line.text[s - 1] != " " for s in starts):
            return None  # text across a column's edge: the rule does not describe the lines
        bounds = [*starts, len(line.text)]
        cells = [line.text[bounds[i] : bounds[i + 1]].strip() for i in range(len(starts))]
        if line.text[: starts[0]].strip():
            return None
        rows.append((number, cells))
    header = rows.pop(0)[1]
    return Table(title, header_columns(header), rows)


def _cells(line: str) -> list[tuple[int, int, str]]:
    """``(start, end, text)`` of the line's cells: text apart by two spaces or more."""
    cells = []
    position = len(line) - len(line.lstrip())
    for part in _GAP.split(line.strip()):
        start = line.index(part, position)
        cells.append((start, start + len(part), part))
        position = start + len(part)
    return cells
