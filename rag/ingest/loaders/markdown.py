"""Markdown: one section per heading, each knowing its heading path.

The raw Markdown is kept (no rendering), so a section's offset points into the decoded
file exactly (tables aside, below).  ATX (``# Title``) and setext (``Title`` over ``===``/``---``) headings
count; ``#`` lines inside fenced code blocks do not.  YAML front matter at the top is
left out of every section: it is metadata, and its closing ``---`` would otherwise read
as a setext underline.  A heading with nothing under it gives no section of its own; its
title still appears in the heading path of the sections below it.

GitHub-flavoured pipe tables (a header row, then a ``|---|:---:|`` delimiter row) are read
as records, "Town: Newnham | Bore height: 1.5 m", through ``layout``'s table path, so a
row quoted alone still names its columns: cells lose their inline markup (emphasis, code,
links) and ``\\|`` is a pipe inside a cell.  The extracted text is then the file with each
table's rows replaced in place by its records (``layout.splice_tables``): offsets point at
the file exactly up to the first table, and at the records after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders.layout import Table, header_columns, splice_tables
from rag.ingest.loaders.text import decode_text

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
# A pipe table's delimiter row: a run of dashes per column, colons for alignment.
_DELIMITER = re.compile(r" {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")
_PIPE = re.compile(r"(?<!\\)\|")  # a pipe that is not escaped
# Inline markup a cell loses: images and links keep their text, code spans and emphasis
# their content (as the answerer reads prose's emphasis), <br> is a space.
_INLINE = [
    (re.compile(r"!?\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])"), r"\1"),  # [text](url), [text][ref]
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # <https://...>
    (re.compile(r"(`+)(.+?)\1"), r"\2"),
    (re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])"), r"\1"),
    (re.compile(r"<br\s*/?>", re.IGNORECASE), " "),
]
# Lines that start a block a setext underline cannot turn into a heading.
_NOT_PARAGRAPH = re.compile(r" {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|\|)| {4}|\t")


@dataclass(frozen=True)
class _Heading:
    start: int  # where the heading's first line starts
    body: int  # where the text under it starts
    level: int
    title: str


def load_markdown(path: Path, data: bytes) -> LoadedDocument:
    decoded = decode_text(data, path)
    text = decoded.text
    body_start = _front_matter_end(text)
    headings = _headings(text, body_start)
    first = headings[0].start if headings else len(text)
    sections = [Section(text[body_start:first], offset=body_start)]
    stack: list[tuple[int, str]] = []
    for i, heading in enumerate(headings):
        end = headings[i + 1].start if i + 1 < len(headings) else len(text)
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        if heading.title:
            stack.append((heading.level, heading.title))
        if text[heading.body : end].strip():
            titles = tuple(title for _, title in stack)
            sections.append(Section(text[heading.start : end], heading=titles, offset=heading.start))
    sections = [s for s in sections if s.text.strip()]
    # A blank line between records: Markdown joins the lines of a paragraph, and the
    # records must stay apart when the text is shown rendered (the web page's source view).
    sections = splice_tables(sections, _pipe_tables(text, body_start), between="\n\n")
    return LoadedDocument(path, "markdown", sections, [decoded.warning] if decoded.warning else [])


def _front_matter_end(text: str) -> int:
    """Offset just past a leading ``---`` ... ``---`` (or ``...``) block, else 0."""
    first_line = re.match(r"---[ \t]*\r?\n", text)
    if not first_line:
        return 0
    close = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$\n?", re.MULTILINE).search(text, first_line.end())
    return close.end() if close else 0


def _headings(text: str, start: int) -> list[_Heading]:
    headings: list[_Heading] = []
    fence: str | None = None  # the opening fence while inside a code block
    paragraph: list[tuple[int, str]] = []  # (offset, line) of the paragraph so far
    pos = start
    for raw in text[start:].split("\n"):
        line_start, pos = pos, pos + len(raw) + 1
        line = raw.rstrip("\r")
        if fence is not None:
            closing = _FENCE.fullmatch(line.rstrip())
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
            continue
        if opening := _FENCE.match(line):
            fence, paragraph = opening.group(1), []
            continue
        if atx := _ATX.fullmatch(line):
            title = (atx.group(2) or "").strip()
            headings.append(_Heading(line_start, min(pos, len(text)), len(atx.group(1)), title))
            paragraph = []
            continue
        underline = _SETEXT.fullmatch(line)
        if underline and paragraph:
            title = " ".join(part.strip() for _, part in paragraph)
            level = 1 if underline.group(1)[0] == "=" else 2
            headings.append(_Heading(paragraph[0][0], min(pos, len(text)), level, title))
            paragraph = []
        elif not line.strip() or (not paragraph and _NOT_PARAGRAPH.match(line)):
            paragraph = []
        else:
            paragraph.append((line_start, line))
    return headings


def _pipe_tables(text: str, start: int) -> list[tuple[int, int, Table]]:
    """``(start, end, table)`` of each pipe table outside code blocks: a header row of cells,
    a delimiter row of as many, then rows up to a blank line or a line with no pipe."""
    lines: list[tuple[int, str]] = []  # (offset, line without its end)
    pos = start
    for raw in text[start:].split("\n"):
        lines.append((pos, raw.rstrip("\r")))
        pos += len(raw) + 1
    tables = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i][1]
        if fence is not None:
            closing = _FENCE.fullmatch(line.rstrip())
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
            i += 1
            continue
        if opening := _FENCE.match(line):
            fence = opening.group(1)
            i += 1
            continue
        header = _cells(line)
        if (
            header is None
            or i + 1 >= len(lines)
            or not _DELIMITER.fullmatch(lines[i + 1][1])
            or len(_cells(lines[i + 1][1]) or ()) != len(header)
        ):
            i += 1
            continue
        rows: list[tuple[int, list[str]]] = []
        j = i + 2
        while j < len(lines) and (cells := _cells(lines[j][1])) is not None and not _ATX.fullmatch(lines[j][1]):
            cells = [_plain(c) for c in (cells + [""] * len(header))[: len(header)]]  # as GitHub pads and cuts
            if any(cells):
                rows.append((j - i, cells))
            j += 1
        end = lines[j - 1][0] + len(lines[j - 1][1])
        tables.append((lines[i][0], end, Table([], header_columns([_plain(c) for c in header]), rows)))
        i = j
    return tables


def _cells(line: str) -> list[str] | None:
    """A pipe-table row's cells (outer pipes optional), or None for a line that is no row."""
    if not line.strip() or line.startswith(("    ", "\t")) or not _PIPE.search(line):
        return None
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    # An escaped pipe stays a pipe, without the spaces that would make it a cell separator.
    return [re.sub(r"\s*\\\|\s*", "|", cell.strip()) for cell in _PIPE.split(row)]


def _plain(cell: str) -> str:
    for pattern, replacement in _INLINE:
        cell = pattern.sub(replacement, cell)
    return " ".join(cell.split())
