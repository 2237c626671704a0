"""PowerPoint (.pptx): one section per slide, the slide number as its page.

Each slide gives its title (also its heading), the text of its other shapes in reading
order (grouped shapes and tables included, a table one record per row: "Colour: Purple |
Size: 2"), and its speaker notes after a "Notes:" line.  A long table follows as sections
of its own on the same slide, blocks of rows each led by the table's title.  Hidden
slides are read too: they are part of the deck.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.container import open_zip
from rag.ingest.loaders.layout import TABLE_BLOCK_CHARS, SectionWriter, Table, read_table, row_blocks, table_text


def load_pptx(path: Path, data: bytes) -> LoadedDocument:
    open_zip(path, data, ".pptx").close()
    from pptx import Presentation  # lazily: python-pptx costs start-up time

    try:
        deck = Presentation(io.BytesIO(data))
        slides = list(deck.slides)
    except MemoryError:  # the parse worker reports it as out of memory
        raise
    except Exception as exc:  # python-pptx raises KeyError, ValueError, lxml errors...
        raise DocumentError(path, f"damaged .pptx ({_short(exc)})") from None
    writer = SectionWriter()
    warnings: list[str] = []
    for number, slide in enumerate(slides, start=1):
        try:
            title, text, tables = _slide_text(slide)
        except MemoryError:  # the parse worker reports it as out of memory
            raise
        except Exception as exc:  # one bad slide must not lose the others
            warnings.append(f"slide {number}: could not be read ({_short(exc)})")
            continue
        writer.add(text, page=number, heading=(title,) if title else ())
        for table in tables:  # long ones, in blocks of rows each led by the table's title
            for block in row_blocks(table):
                writer.add(block.text, page=number, heading=(title,) if title else ())
    return LoadedDocument(path, "pptx", writer.sections, warnings)


def _slide_text(slide: Any) -> tuple[str, str, list[Table]]:
    """The slide's title, its text, and its tables too long to stay in that text."""
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
    parts = [title] if title else []
    long: list[Table] = []
    for shape in _shapes(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = [(n, [" ".join(c.text.split()) for c in row.cells]) for n, row in enumerate(shape.table.rows, 1)]
            table = read_table(rows)
            if table is not None and len(text := table_text(table)) > TABLE_BLOCK_CHARS:
                long.append(table)
            elif table is not None:
                parts.append(text)
            continue
        parts.extend(_shape_text(shape))
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            parts.append("Notes: " + notes.text.strip())
    return title, "\n\n".join(p for p in parts if p.strip()), long


def _shapes(shapes: Any) -> Iterator[Any]:
    """Shapes top to bottom, left to right, descending into groups."""
    ordered = sorted(shapes, key=lambda s: ((s.top or 0), (s.left or 0)))
    for shape in ordered:
        if shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _shape_text(shape: Any) -> list[str]:
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [shape.text_frame.text.strip()]
    return []


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return (message[:117] + "...") if len(message) > 120 else (message or type(exc).__name__)
