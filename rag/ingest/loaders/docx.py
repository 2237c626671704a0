"""Word (.docx): one section per heading, with the page when the file records page breaks.

Paragraphs and tables are read in document order with python-docx.  A paragraph styled
Title or Heading N (or carrying an outline level) starts a section and extends the heading
path.  Word records where its last layout broke pages (``w:lastRenderedPageBreak``); when a
file has those, pages are counted from them, else from explicit page breaks, else pages are
unknown (None) rather than guessed.  A table becomes one line per row, each cell prefixed
with its column's header ("Region: North | Cases: 12"), so any run of rows keeps its meaning
(``rag.ingest.loaders.layout.read_table``: title rows and merged header rows included); a
long table becomes sections of its own, blocks of rows each led by the table's title.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.container import open_zip
from rag.ingest.loaders.layout import TABLE_BLOCK_CHARS, SectionWriter, Table, read_table, row_blocks, table_text

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_HEADING_STYLE = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    open_zip(path, data, ".docx").close()  # encryption, damage and zip bombs, before python-docx
    import docx  # lazily: python-docx and lxml cost start-up time

    try:
        document = docx.Document(io.BytesIO(data))
    except MemoryError:  # the parse worker reports it as out of memory
        raise
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors...
        raise DocumentError(path, f"damaged .docx ({_short(exc)})") from None
    body = document.element.body
    rendered = any(True for _ in body.iter(f"{_W}lastRenderedPageBreak"))
    explicit = any(el.get(f"{_W}type") == "page" for el in body.iter(f"{_W}br"))
    paged = rendered or explicit
    break_tags = {f"{_W}lastRenderedPageBreak"} if rendered else {f"{_W}br"}

    style_names = {s.style_id: s.name or s.style_id for s in document.styles}
    writer = SectionWriter()
    stack: list[tuple[int, str]] = []
    parts: list[str] = []
    page = 1
    section_page = 1

    body_parts = 0  # parts other than the section's heading

    def flush() -> None:
        # A heading with nothing under it gives no section of its own (as in Markdown):
        # its title still heads the paths of the sections below it.
        if body_parts:
            writer.add("\n\n".join(parts), page=section_page if paged else None, heading=tuple(t for _, t in stack))
        parts.clear()

    for kind, element in _blocks(body):
        if kind == "p":
            before, after = _page_breaks(element, break_tags)
            page += before
            text = _paragraph_text(element)
            level = _heading_level(element, style_names)
            if level is not None and text.strip():
                flush()
                body_parts = 0
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, " ".join(text.split())))
                section_page = page
            else:
                if page != section_page and parts:
                    flush()
                    body_parts = 0
                if not parts:
                    section_page = page
                body_parts += bool(text.strip())
            if text.strip():
                parts.append(text.strip())
            page += after
        else:
            table = _table(element)
            if table is None:
                continue
            text = table_text(table)
            if len(text) > TABLE_BLOCK_CHARS:
                # A long table is cut into blocks of rows, each led by the table's title, so
                # that no chunk of it loses what its numbers are about.
                flush()
                body_parts = 0
                for block in row_blocks(table):
                    writer.add(block.text, page=page if paged else None, heading=tuple(t for _, t in stack))
                continue
            if not parts:
                section_page = page
            parts.append(text)
            body_parts += 1
    flush()
    return LoadedDocument(path, "docx", writer.sections)


def _blocks(body: Any) -> Iterator[tuple[str, Any]]:
    """Paragraphs and tables in document order (tables inside tables are read as text)."""
    for child in body.iterchildren():
        if child.tag == f"{_W}p":
            yield "p", child
        elif child.tag == f"{_W}tbl":
            yield "tbl", child
        elif child.tag == f"{_W}sdt":  # content controls wrap ordinary paragraphs
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _blocks(content)


def _paragraph_text(p: Any) -> str:
    out: list[str] = []
    for el in p.iter(f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr"):
        if el.tag == f"{_W}t":
            out.append(el.text or "")
        elif el.tag == f"{_W}tab":
            out.append("\t")
        elif el.get(f"{_W}type") != "page":
            out.append("\n")
    return "".join(out)


def _page_breaks(p: Any, tags: set[str]) -> tuple[int, int]:
    """Breaks before the paragraph's first text, and after it."""
    before = after = 0
    seen_text = False
    for el in p.iter():
        if el.tag == f"{_W}t" and (el.text or "").strip():
            seen_text = True
        elif el.tag in tags and (el.tag != f"{_W}br" or el.get(f"{_W}type") == "page"):
            if seen_text:
                after += 1
            else:
                before += 1
    return before, after


def _heading_level(p: Any, style_names: dict[str, str]) -> int | None:
    ppr = p.find(f"{_W}pPr")
    style_id = None
    if ppr is not None:
        outline = ppr.find(f"{_W}outlineLvl")
        if outline is not None and (value := outline.get(f"{_W}val", "")).isdigit() and int(value) < 9:
            return int(value) + 1
        style = ppr.find(f"{_W}pStyle")
        style_id = style.get(f"{_W}val") if style is not None else None
    if not style_id:
        return None
    name = style_names.get(style_id, style_id)
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.fullmatch(name.strip()) or _HEADING_STYLE.fullmatch(style_id)
    return int(match.group(1)) if match else None


def _table(tbl: Any) -> Table | None:
    rows: list[tuple[int, list[str]]] = []
    for number, tr in enumerate(tbl.iter(f"{_W}tr"), start=1):
        cells = []
        for tc in tr.iter(f"{_W}tc"):
            text = " ".join(" ".join(_paragraph_text(p).split()) for p in tc.iter(f"{_W}p"))
            cells.append(text.strip())
            span = tc.find(f"{_W}tcPr/{_W}gridSpan")  # a merged cell: its columns stay apart
            if span is not None and (value := span.get(f"{_W}val", "")).isdigit():
                cells += [""] * (int(value) - 1)
        rows.append((number, cells))
    return read_table(rows)


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return (message[:117] + "...") if len(message) > 120 else (message or type(exc).__name__)
