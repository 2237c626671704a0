"""Plain-text formats with headings of their own: reStructuredText and LaTeX.

The decoded file is kept as it is (no rendering), so offsets point into it exactly, as
for Markdown.  reStructuredText titles are a line underlined (optionally also overlined)
by a run of one punctuation character; their levels follow the order in which each
underline style first appears, as docutils reads them.  LaTeX headings are ``\\part``,
``\\chapter``, ``\\section`` down to ``\\subparagraph`` (starred or with a short title).
"""

from __future__ import annotations

import re
from pathlib import Path

from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders.text import decode_text

_RST_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1{2,}[ \t]*")
_TEX_HEADING = re.compile(
    r"\\(part|chapter|section|subsection|subsubsection|paragraph|subparagraph)\*?\s*"
    r"(?:\[[^\]]*\]\s*)?\{((?:[^{}]|\{[^{}]*\})*)\}"
)
_TEX_LEVELS = {
    "part": 0, "chapter": 1, "section": 2, "subsection": 3, "subsubsection": 4, "paragraph": 5, "subparagraph": 6,
}  # fmt: skip
_TEX_COMMAND = re.compile(r"\\[a-zA-Z]+\*?\s*(?:\{([^{}]*)\})?")


def load_rst(path: Path, data: bytes) -> LoadedDocument:
    decoded = decode_text(data, path)
    return LoadedDocument(path, "rst", split_at(decoded.text, _rst_headings(decoded.text)), _warn(decoded.warning))


def load_tex(path: Path, data: bytes) -> LoadedDocument:
    decoded = decode_text(data, path)
    text = decoded.text
    headings = []
    for match in _TEX_HEADING.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if "%" in text[line_start : match.start()]:
            continue  # commented out
        title = " ".join(_TEX_COMMAND.sub(lambda m: m.group(1) or "", match.group(2)).replace("~", " ").split())
        headings.append((match.start(), _TEX_LEVELS[match.group(1)], title))
    return LoadedDocument(path, "tex", split_at(text, headings), _warn(decoded.warning))


def split_at(text: str, headings: list[tuple[int, int, str]]) -> list[Section]:
    """Sections of ``text`` cut at each ``(offset, level, title)``, with heading paths."""
    starts = [h[0] for h in headings]
    sections = [Section(text[: starts[0] if starts else len(text)], offset=0)]
    stack: list[tuple[int, str]] = []
    for i, (start, level, title) in enumerate(headings):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        while stack and stack[-1][0] >= level:
            stack.pop()
        if title:
            stack.append((level, title))
        sections.append(Section(text[start:end], heading=tuple(t for _, t in stack), offset=start))
    return [_stripped(s) for s in sections if s.text.strip()]


def _stripped(section: Section) -> Section:
    lead = len(section.text) - len(section.text.lstrip())
    return Section(section.text.strip(), heading=section.heading, offset=section.offset + lead)


def _rst_headings(text: str) -> list[tuple[int, int, str]]:
    lines = text.split("\n")
    offsets = []
    position = 0
    for line in lines:
        offsets.append(position)
        position += len(line) + 1
    styles: list[tuple[str, bool]] = []
    headings = []
    i = 0
    while i + 1 < len(lines):
        title = lines[i].rstrip("\r")
        under = _RST_ADORNMENT.fullmatch(lines[i + 1].rstrip("\r"))
        over = i > 0 and _RST_ADORNMENT.fullmatch(lines[i - 1].rstrip("\r"))
        if (
            title.strip()
            and not _RST_ADORNMENT.fullmatch(title)
            and under
            and len(under.group(0).rstrip()) >= len(title.rstrip())
            and (i == 0 or not lines[i - 1].strip() or over)
        ):
            style = (under.group(1), bool(over and over.group(1) == under.group(1)))
            if style not in styles:
                styles.append(style)
            start = offsets[i - 1] if style[1] else offsets[i]
            headings.append((start, styles.index(style) + 1, title.strip()))
            i += 2
            continue
        i += 1
    return headings


def _warn(warning: str | None) -> list[str]:
    return [warning] if warning else []
