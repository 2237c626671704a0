"""HTML: the text a reader sees, one section per h1-h6 heading.

Uses the standard library's tolerant parser.  Scripts, styles, templates, SVG, ``<noscript>``
and elements marked ``hidden``/``aria-hidden="true"``/``display:none`` are dropped; block
elements become line or paragraph breaks, and runs of whitespace collapse to one space
except inside ``<pre>``.  A data table becomes records, "Town: Newnham | Height: 1.5 m"
(``layout.read_table``: header rows, ``colspan`` merged headers, header-less tables; its
``<caption>`` is its title); a table used for layout (one column, long cells, a table,
heading or ``role="presentation"`` inside) keeps its cells joined with `` | ``.  Section
offsets point into that visible text.  When the page has no ``<h1>``, its ``<title>`` heads every heading
path, so that chunks still say which page they came from.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders.layout import Table, read_table, table_text
from rag.ingest.loaders.text import decode_text

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "select", "title"})
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
_LINE = frozenset({"br", "li", "tr", "dt", "dd", "caption", "figcaption", "summary", "option"})
_PARAGRAPH = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "center", "details", "dialog", "div", "dl",
        "fieldset", "figure", "footer", "form", "header", "hgroup", "hr", "main", "menu", "nav", "ol", "p",
        "pre", "section", "table", "ul",
    }
)  # fmt: skip
# Elements whose end tag may be left out: a hidden one must not hide what follows it.
_OPTIONAL_END = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_CELLS = frozenset({"td", "th"})
#: A cell longer than this is prose laid out in a table, not a value (mail is built of such).
MAX_CELL_CHARS = 300
_WHITESPACE = re.compile(r"\s+")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
# Browsers read these labels as windows-1252 (WHATWG Encoding), and so do we.
_AS_CP1252 = frozenset({"ascii", "iso8859-1", "cp1252"})


#: One heading of a heading path: its title and the offset where its text starts.
Heading = tuple[str, int]


@dataclass(frozen=True)
class VisibleText:
    """A page's visible text, where its headings cut it, and where its anchors point."""

    text: str
    #: ``(offset, heading path)`` for each run of text under one heading, in order.
    sections: list[tuple[int, tuple[Heading, ...]]]
    #: ``id`` (or ``<a name>``) -> the offset in ``text`` of what follows that element's start.
    anchors: dict[str, int]
    title: str
    saw_h1: bool
    warning: str | None


def visible_text(path: Path, data: bytes) -> VisibleText:
    decoded = decode_text(data, path, declared=_declared_charset(data))
    parser = _VisibleText()
    try:
        parser.feed(decoded.text)
        parser.close()
    except Exception as exc:  # html.parser has asserts on broken markup
        raise DocumentError(path, f"could not parse HTML ({type(exc).__name__})") from None
    text = "".join(parser.parts)
    return VisibleText(text, parser.sections, parser.anchors, parser.title, parser.saw_h1, decoded.warning)


def load_html(path: Path, data: bytes) -> LoadedDocument:
    page = visible_text(path, data)
    prefix = (page.title,) if page.title and not page.saw_h1 else ()
    sections = []
    for start, end, heading in cuts(page):
        chunk = page.text[start:end]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            titles = prefix + tuple(title for title, _ in heading)
            sections.append(Section(chunk.strip(), heading=titles, offset=start + lead))
    return LoadedDocument(path, "html", sections, [page.warning] if page.warning else [])


def cuts(page: VisibleText, at: Iterable[int] = ()) -> list[tuple[int, int, tuple[Heading, ...]]]:
    """``(start, end, heading path)`` of each section, also cut at the offsets ``at``."""
    bounds = sorted({start for start, _ in page.sections} | {a for a in at if 0 < a < len(page.text)})
    pieces = []
    index = 0
    for i, start in enumerate(bounds):
        while index + 1 < len(page.sections) and page.sections[index + 1][0] <= start:
            index += 1
        end = bounds[i + 1] if i + 1 < len(bounds) else len(page.text)
        pieces.append((start, end, page.sections[index][1]))
    return pieces


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if not match:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    return "cp1252" if name in _AS_CP1252 else name


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[tuple[int, tuple[Heading, ...]]] = [(0, ())]
        self.anchors: dict[str, int] = {}
        self.title = ""
        self.saw_h1 = False
        self._breaks = 0  # newlines owed before the next text
        self._separator = ""  # inline separator owed before the next text
        self._skip_tag = ""  # the element whose content is being dropped
        self._skip_depth = 0
        self._pre = 0
        self._heading_level = 0
        self._heading_start = -1  # offset of the heading's text, once it has some
        self._heading_part = 0  # index in parts of that text
        self._stack: list[tuple[int, Heading]] = []
        self._title_parts: list[str] = []
        self._table: _Table | None = None  # the outermost table being read
        self._table_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skip_tag:
            for name, value in attrs:
                if value and (name == "id" or (name == "name" and tag == "a")):
                    self.anchors.setdefault(value, self.length)
        if self._skip_tag:
            if tag != self._skip_tag:
                return
            if tag not in _OPTIONAL_END or self._skip_depth > 1:
                self._skip_depth += 1
                return
            # <li hidden>a<li>b: the hidden item ended where the next one starts.
            self._skip_tag, self._skip_depth = "", 0
        if tag not in _VOID and (tag in _SKIP or _is_hidden(attrs)):
            self._skip_tag, self._skip_depth = tag, 1
            return
        self._block(tag)
        if tag == "table":
            self._table_depth += 1
            if self._table_depth == 1:
                self._table = _Table(len(self.parts), self.length, self._breaks, layout=_is_layout(attrs))
            elif self._table:
                self._table.layout = True  # a table inside a table lays out a page
        elif self._table and self._table_depth == 1:
            self._table.start(tag, attrs)
        if tag == "pre":
            self._pre += 1
        elif tag in _CELLS and self.length and not self._breaks:
            self._separator = " | "
        elif tag in _HEADINGS:
            self._heading_level = _HEADINGS[tag]
            self._heading_start = -1

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if not self._skip_depth:
                    self._skip_tag = ""
            return
        self._block(tag)
        if tag == "table" and self._table_depth:
            self._table_depth -= 1
            if not self._table_depth:
                self._end_table()
        elif self._table and self._table_depth == 1 and tag in ("caption", *_CELLS):
            self._table.end()
        if tag == "pre":
            self._pre = max(self._pre - 1, 0)
        elif tag in _HEADINGS and self._heading_level:
            self._end_heading()

    def handle_data(self, data: str) -> None:
        if self._skip_tag:
            if self._skip_tag == "title":
                self._title_parts.append(data)
                self.title = _WHITESPACE.sub(" ", "".join(self._title_parts)).strip()
            return
        if self._table:
            self._table.data(data)
        if self._pre:
            self._write(data)
            return
        collapsed = _WHITESPACE.sub(" ", data)
        if collapsed.startswith(" ") and not self._separator:
            self._separator = " "
        self._write(collapsed.strip())
        if collapsed.endswith(" ") and collapsed.strip():
            self._separator = " "

    def _block(self, tag: str) -> None:
        if tag in _LINE:
            self._breaks = max(self._breaks, 1)
        elif tag in _PARAGRAPH or tag in _HEADINGS:
            self._breaks = 2

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.length:
            lead = "\n" * self._breaks if self._breaks else self._separator
            self.parts.append(lead)
            self.length += len(lead)
        self._breaks, self._separator = 0, ""
        if self._heading_level and self._heading_start < 0:
            self._heading_start, self._heading_part = self.length, len(self.parts)
        self.parts.append(text)
        self.length += len(text)

    def _end_table(self) -> None:
        """The table's text so far replaced by its records, when it is a data table."""
        held, self._table = self._table, None
        if held is None or held.layout or self.sections[-1][0] > held.length:
            return  # a heading inside: the page's sections would lose their offsets
        table = held.read()
        if table is None:
            return
        breaks = self._breaks
        del self.parts[held.part :]
        self.length = held.length
        for name, at in self.anchors.items():  # an anchor in the table points at the table
            self.anchors[name] = min(at, held.length + (held.breaks if held.length else 0))
        self._breaks, self._separator = held.breaks, ""
        self._write(table_text(table))
        self._breaks = breaks

    def _end_heading(self) -> None:
        level, start = self._heading_level, self._heading_start
        self._heading_level = 0
        if start < 0:
            return  # a heading without text
        title = _WHITESPACE.sub(" ", "".join(self.parts[self._heading_part :])).strip()
        self.saw_h1 = self.saw_h1 or level == 1
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, (title, start)))
        heading = tuple(h for _, h in self._stack)
        if self.sections[-1][0] == start:
            self.sections[-1] = (start, heading)
        else:
            self.sections.append((start, heading))


def _is_hidden(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "hidden" or (name == "aria-hidden" and value == "true"):
            return True
        if name == "style" and value and _HIDDEN_STYLE.search(value):
            return True
    return False


class _Table:
    """An HTML table's caption and cells as the parser meets them, and where its text began."""

    def __init__(self, part: int, length: int, breaks: int, *, layout: bool) -> None:
        self.part, self.length, self.breaks = part, length, breaks  # the parser's state at <table>
        self.layout = layout
        self.caption: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None  # the text of the open cell or caption
        self._at = 0  # the open cell's column in its row

    def start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in _CELLS:
            if not self.rows:
                self.rows.append([])
            self.end()
            self._cell, self._at = [], len(self.rows[-1])
            self.rows[-1].append("")
            span = dict(attrs).get("colspan") or ""
            # A merged cell's columns stay apart, as layout.read_table reads merged headers.
            self.rows[-1] += [""] * (min(int(span), 50) - 1 if span.isdigit() and int(span) > 1 else 0)
        elif tag == "caption":
            self.end()
            self._cell = self.caption
        elif tag in _HEADINGS or tag == "table":
            self.layout = True
        elif self._cell is not None and (tag in _LINE or tag in _PARAGRAPH):
            self._cell.append(" ")  # "Best<br>month" is two words

    def data(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)

    def end(self) -> None:
        """Close the open cell: its text goes into the row, where ``start`` left room for it."""
        if self._cell is None or self._cell is self.caption:
            self._cell = None
            return
        text = " ".join("".join(self._cell).split())
        self.rows[-1][self._at] = text
        self._cell = None
        self.layout = self.layout or len(text) > MAX_CELL_CHARS

    def read(self) -> Table | None:
        self.end()
        rows = [(n, row) for n, row in enumerate(self.rows, start=1) if any(row)]
        if len(rows) < 2 or max(sum(1 for c in row if c) for _, row in rows) < 2:
            return None  # one row or one column: a box around text
        table = read_table(rows)
        caption = " ".join("".join(self.caption).split())
        return replace(table, title=[caption, *table.title]) if table and caption else table


def _is_layout(attrs: list[tuple[str, str | None]]) -> bool:
    return any(name == "role" and value in ("presentation", "none") for name, value in attrs)
