"""Markdown: one section per heading, each knowing its heading path.

The raw Markdown is kept (no rendering), so a section's offset points into the decoded
file exactly.  ATX (``# Title``) and setext (``Title`` over ``===``/``---``) headings
count; ``#`` lines inside fenced code blocks do not.  YAML front matter at the top is
left out of every section: it is metadata, and its closing ``---`` would otherwise read
as a setext underline.  A heading with nothing under it gives no section of its own; its
title still appears in the heading path of the sections below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders.text import decode_text

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
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
