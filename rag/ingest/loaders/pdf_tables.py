"""Tables in text PDFs, found from where PDFium places each character.

A PDF has no tables, only characters at positions, and PDFium's text order may read a
table column by column (the California WARN report).  So the page's characters are laid
out again by position: lines by height on the page, cells where a line's gap is wider
than ``CELL_GAP`` times its font height (a word space is about a third of it, table
columns a whole one or more).  Three or more lines in a row whose cells fall into the
same columns are a table: its column spans are the union of the widest rows' cell spans,
and up to three one-cell lines just above it are its title.  Lines whose cells are long
are prose (two columns of a page side by side), not rows; unevenly spaced lines, scattered
cells and formula fonts are formulas set out, not rows.

Turned text (a landscape table set sideways on a portrait page, or a page shown turned by
its /Rotate with its text drawn turned to match) is read in its own axes: each character's
position is turned back by its angle, a quarter turn at a time, so that its lines run left
to right again, and each direction's characters are searched for tables apart.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.ingest.loaders.layout import COLUMN_NAME, MAX_TITLE_ROWS, Table, holds_value, read_table

#: A gap wider than this many font heights (loose character boxes) separates cells.  On
#: the FBI NICS table, words in a cell are 0.25-0.4 apart and columns 1.0-11.
CELL_GAP = 0.8
#: A gap wider than this many font heights is a word space inside a cell.
WORD_GAP = 0.15
#: Rows a table needs (the header counted): two lines of two cells are often prose.
MIN_ROWS = 3
#: A line with a cell longer than this, or a median cell longer than ``MEDIAN_CELL``, is prose.
MAX_CELL = 60
MEDIAN_CELL = 30
#: Share of rows that may put two cells in one column before the lines are no table.
MAX_CLASHES = 0.25
#: Rows below the header a table needs, and the share of its cells that must be filled:
#: formulas set out on a few lines also have short cells side by side, but scattered.
MIN_BODY = 3
MIN_FILLED = 0.6
#: A column whose cells average more characters than this is prose beside a gutter (line
#: numbers of a transcript), not a table column.
MAX_MEAN_CELL = 35
# Characters of formula fonts (private use, controls): math set out, not a table.
_FORMULA = re.compile(r"[\x00-\x1f\ue000-\uf8ff]")


@dataclass
class _Cell:
    x0: float
    x1: float
    text: str
    chars: list[int]


@dataclass
class _Line:
    y: float  # centre height
    em: float  # font height
    cells: list[_Cell]


@dataclass(frozen=True)
class PageTable:
    """A table found on a page: its characters (indices into the page text) and its reading."""

    chars: frozenset[int]
    table: Table


def find_tables(textpage: Any, text: str) -> list[PageTable]:
    """The tables on a page, given its PDFium text page and the text it gave (one char per index)."""
    found: list[PageTable] = []
    for lines in _lines(textpage, text):
        run: list[int] = []
        for i, line in enumerate([*lines, None]):
            if line is not None and _row_like(line):
                run.append(i)
                continue
            if len(run) >= MIN_ROWS:
                table = _table(lines, run)
                if table is not None:
                    found.append(table)
            run = []
    return found


_Glyph = tuple[int, float, float, float, float]  # index, left, right, centre height, font height
#: How far (radians) a character's angle may be from a quarter turn for it to be read turned back.
_SKEW = 0.01


def _turned(angle: float, box: tuple[float, float, float, float]) -> tuple[int, float, float, float, float] | None:
    """The quarter turns of a character drawn at ``angle`` (PDFium's, clockwise) and its ``box``
    (left, bottom, right, top) in its text's own axes (lines left to right, top line highest);
    None for text at another angle (a slanted label)."""
    turns = round(angle / (math.pi / 2))
    if abs(angle - turns * math.pi / 2) > _SKEW:
        return None
    turns %= 4
    left, bottom, right, top = box
    if not turns:
        return 0, left, right, bottom, top
    cos, sin = ((1, 0), (0, 1), (-1, 0), (0, -1))[turns]
    xs = [x * cos - y * sin for x, y in ((left, bottom), (right, top))]
    ys = [x * sin + y * cos for x, y in ((left, bottom), (right, top))]
    return turns, min(xs), max(xs), min(ys), max(ys)


def _lines(textpage: Any, text: str) -> list[list[_Line]]:
    """The page's characters as lines, top to bottom, each cut into cells, left to right: one
    list of lines for each direction its text runs in (upright first)."""
    import pypdfium2.raw as pdfium_c  # lazily, as the loaders import pypdfium2

    directions: dict[int, list[_Glyph]] = {}
    for index, char in enumerate(text):
        if char.isspace() or char in "\ufffe\ufffd":
            continue
        angle = pdfium_c.FPDFText_GetCharAngle(textpage.raw, index)
        turned = _turned(angle, textpage.get_charbox(index, loose=True))
        if turned is None:
            continue
        turns, left, right, bottom, top = turned
        if top - bottom <= 0:
            continue
        directions.setdefault(turns, []).append((index, left, right, (top + bottom) / 2, top - bottom))
    return [_direction_lines(directions[turns], text) for turns in sorted(directions)]


def _direction_lines(glyphs: list[_Glyph], text: str) -> list[_Line]:
    """Characters running in one direction as lines, top to bottom, cut into cells."""
    glyphs.sort(key=lambda g: -g[3])
    rows: list[list[_Glyph]] = []
    for glyph in glyphs:
        if rows and abs(rows[-1][0][3] - glyph[3]) <= 0.4 * glyph[4]:
            rows[-1].append(glyph)
        else:
            rows.append([glyph])
    lines = []
    for row in rows:
        row.sort(key=lambda g: g[1])
        em = statistics.median(g[4] for g in row)
        cells: list[_Cell] = []
        previous = None
        for index, left, right, _, _ in row:
            gap = left - previous if previous is not None else None
            if gap is None or gap > CELL_GAP * em:
                cells.append(_Cell(left, right, "", []))
            cell = cells[-1]
            if gap is not None and WORD_GAP * em < gap <= CELL_GAP * em:
                cell.text += " "
            cell.text += text[index]
            cell.chars.append(index)
            cell.x1 = max(cell.x1, right)
            previous = right if previous is None else max(previous, right)
        lines.append(_Line(statistics.fmean(g[3] for g in row), em, cells))
    return lines


def _row_like(line: _Line) -> bool:
    lengths = [len(c.text) for c in line.cells]
    return len(lengths) >= 2 and max(lengths) <= MAX_CELL and statistics.median(lengths) <= MEDIAN_CELL


def _table(lines: Sequence[_Line], run: list[int]) -> PageTable | None:
    """The run of row-like lines as a table, or None when their cells do not line up."""
    body = [lines[i] for i in run]
    # Rows of a table are evenly spaced, a line apart; formulas (sub- and superscripts as
    # lines of their own) and rotated text (a letter a "line") are not.
    pitches = [a.y - b.y for a, b in itertools.pairwise(body)]
    pitch = statistics.median(pitches)
    if pitch < 0.9 * statistics.median(line.em for line in body) or max(pitches) > 2.5 * pitch:
        return None
    widest = max(len(line.cells) for line in body)
    spans = sorted((c.x0, c.x1) for line in body if len(line.cells) >= max(2, 0.6 * widest) for c in line.cells)
    columns: list[list[float]] = []
    for x0, x1 in spans:
        if columns and x0 <= columns[-1][1]:
            columns[-1][1] = max(columns[-1][1], x1)
        else:
            columns.append([x0, x1])
    columns = _split_crowded(columns, body)
    if len(columns) < 2:
        return None
    rows: list[tuple[int, list[str]]] = []
    clashes = 0
    for number, line in enumerate(body, start=1):
        cells = [""] * len(columns)
        for cell in line.cells:
            k = _column(columns, cell)
            clashes += bool(cells[k])
            cells[k] = f"{cells[k]} {cell.text}".strip()
        rows.append((number, cells))
    filled = [c for _, cells in rows for c in cells if c]
    if (
        clashes > MAX_CLASHES * len(body)
        or len(filled) < MIN_FILLED * len(rows) * len(columns)
        # Rotated or vertical text reads as a letter per cell.
        or sum(len(c) == 1 and c.isalpha() for c in filled) > len(filled) / 4
        or any(_FORMULA.search(c) for c in filled)
        or any(
            statistics.fmean(len(cells[k]) for _, cells in rows if cells[k]) > MAX_MEAN_CELL
            for k in range(len(columns))
            if any(cells[k] for _, cells in rows)
        )
    ):
        return None
    rows = _group_header(rows, body, columns)
    title = _title(lines, run[0], body[0])
    chars = {i for line in [*title, *body] for c in line.cells for i in c.chars}
    titled = [(0, [line.cells[0].text]) for line in title]
    table = read_table([*titled, *rows])
    table = _fold_header_only(table) if table is not None else None
    if table is None or len(table.rows) < MIN_BODY or _numbered_lines(table):
        return None
    return PageTable(frozenset(chars), table)


def _group_header(
    rows: list[tuple[int, list[str]]], body: Sequence[_Line], columns: Sequence[Sequence[float]]
) -> list[tuple[int, list[str]]]:
    """Rows of a few group names above the header ("Pre-Pawn" over "Handgun | Long Gun") read
    into it: a group names the columns nearer its centre than its neighbours' ("Pre-Pawn
    Handgun").  A group name is centred over its columns, not aligned with the first, so the
    spreadsheets' rule (a merged cell's name carried right) would misplace it."""
    top = 0
    while top < min(2, len(rows) - 1) and len(body[top].cells) < 0.6 * len(columns):
        top += 1
    header_like = not any(holds_value(c) for c in rows[top][1])
    if not top or not header_like or sum(1 for c in rows[top][1] if c) < 0.6 * len(columns):
        return rows
    header = list(rows[top][1])
    centres = [(x0 + x1) / 2 for x0, x1 in columns]
    names: list[list[str]] = [[] for _ in columns]
    for line in body[:top]:
        groups = [((c.x0 + c.x1) / 2, c.text) for c in line.cells]
        for g, (centre, name) in enumerate(groups):
            left = centre - groups[g - 1][0] if g else float("inf")
            right = groups[g + 1][0] - centre if g + 1 < len(groups) else float("inf")
            reach = min(left, right) / 2 if min(left, right) < float("inf") else (columns[-1][1] - columns[0][0])
            for k, x in enumerate(centres):
                if abs(x - centre) < reach:
                    names[k].append(name)
    merged = [" ".join([*names[k], header[k]]).strip() for k in range(len(columns))]
    return [(rows[top][0], merged), *rows[top + 1 :]]


def _fold_header_only(table: Table) -> Table:
    """A column name over no values beside values under no name ("No. Of" set off-centre over
    its numbers, "*Other" left of right-aligned numbers) names those values."""
    width = len(table.columns)
    used = [any(k < len(cells) and cells[k] for _, cells in table.rows) for k in range(width)]
    names = list(table.columns)
    dropped = set()
    for k in range(width):
        if names[k] and not used[k]:
            for j in (k + 1, k - 1):
                if not 0 <= j < width:
                    continue
                # The values' column may hold a group name alone ("Pre-Pawn" over "*Other").
                bare = not names[j] or names[k].startswith(names[j] + " ")
                if bare and used[j] and j not in dropped:
                    names[j], names[k] = names[k], ""
                    dropped.add(k)
                    break
    if not dropped:
        return table
    keep = [k for k in range(width) if k not in dropped]
    padded = [(n, [*cells, *[""] * (width - len(cells))]) for n, cells in table.rows]
    return Table(table.title, [names[k] for k in keep], [(n, [cells[k] for k in keep]) for n, cells in padded])


def _numbered_lines(table: Table) -> bool:
    """True for a header-less "table" led by a column 1, 2, 3...: line numbers in the margin
    of a transcript or a legal text, beside its prose."""
    if not table.columns or table.columns[0] != COLUMN_NAME.format(1):
        return False
    first = [cells[0] if cells else "" for _, cells in table.rows]
    return all(c.isdigit() for c in first) and [int(c) for c in first] == list(
        range(int(first[0]), int(first[0]) + len(first))
    )


def carry_header(previous: Table | None, table: Table) -> Table:
    """A header-less table as wide as the table before it (on the page before) continues it:
    it takes that table's title and column names."""
    if (
        previous is not None
        and table.columns[:1] == [COLUMN_NAME.format(1)]
        and previous.columns[:1] != [COLUMN_NAME.format(1)]
        and len(previous.columns) == len(table.columns)
    ):
        return Table(previous.title, previous.columns, table.rows)
    return table


def _title(lines: Sequence[_Line], first: int, top: _Line) -> list[_Line]:
    """Up to ``MAX_TITLE_ROWS`` short one-cell lines just above a table."""
    title: list[_Line] = []
    below = top
    for line in reversed(lines[max(first - MAX_TITLE_ROWS, 0) : first]):
        near = line.y - below.y <= 3 * max(line.em, below.em)
        if len(line.cells) != 1 or len(line.cells[0].text) > 80 or line.cells[0].text.endswith(".") or not near:
            break
        title.insert(0, line)
        below = line
    return title


def _column(columns: Sequence[Sequence[float]], cell: _Cell) -> int:
    """The column of a cell: the first it covers (a merged header cell spans several), else the nearest."""
    covered = [k for k, (x0, x1) in enumerate(columns) if cell.x0 < x1 and cell.x1 > x0]
    return covered[0] if covered else _nearest(columns, (cell.x0 + cell.x1) / 2)


def _split_crowded(columns: list[list[float]], body: Sequence[_Line]) -> list[list[float]]:
    """Columns split where many rows hold two cells in one: a long name running into the next
    column joins the two in the union of cell spans (the WARN report's company and city)."""
    for _ in range(len(columns)):
        crowded = None
        for k in range(len(columns)):
            seconds = []
            for line in body:
                inside = [c for c in line.cells if _column(columns, c) == k]
                if len(inside) > 1:
                    seconds.append(min(c.x0 for c in inside[1:]))
            if len(seconds) > MAX_CLASHES * len(body):
                crowded = (k, min(seconds))
                break
        if crowded is None:
            break
        k, boundary = crowded
        columns = [*columns[:k], [columns[k][0], boundary - 0.01], [boundary, columns[k][1]], *columns[k + 1 :]]
    return columns


def _nearest(columns: Sequence[Sequence[float]], x: float) -> int:
    return min(range(len(columns)), key=lambda k: abs((columns[k][0] + columns[k][1]) / 2 - x))
