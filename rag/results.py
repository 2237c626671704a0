"""What the engine returns: plain dataclasses that print well and render in Jupyter."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.filetypes import file_type
from rag.jsonable import Jsonable, json_hook, jsonable, rounded, to_dict
from rag.text import md_cell
from rag.usage import Usage

# The manifest's separator of heading-path entries, and the entry ``row_blocks`` writes
# for a row range; repeated here so that results import nothing heavy.
HEADING_SEPARATOR = " > "
ROWS_PREFIX = "rows "
# Between the cells of a table row as loaders write it ("Number: 13 | Square: 169").
CELL_SEPARATOR = " | "
# Appended to a chunk's kind when its text came from OCR (a scanned page, an image).
OCR_SUFFIX = "+ocr"


def display_path(path: str) -> str:
    """A path as people want to read it: relative to the current folder when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def location(source: str, page: int | None, heading: str = "") -> str:
    """Where a chunk is, as citations show it, by what the file type has to point at.

    ``report.pdf:3`` (page), ``deck.pptx:slide 3``, ``table.xlsx:Sheet1!rows 2-40``,
    ``data.csv:rows 2-40``, ``report.docx:Findings > Costs (page 4)``; just the path
    for files with nothing finer (plain text, Markdown, HTML).
    """
    where = display_path(source)
    found = file_type(source)
    cites = found.cites if found else "page"
    parts = heading.split(HEADING_SEPARATOR) if heading else []
    if cites == "slide" and page is not None:
        return f"{where}:slide {page}"
    if cites == "rows" and parts and parts[-1].startswith(ROWS_PREFIX):
        sheet = HEADING_SEPARATOR.join(parts[:-1])
        return f"{where}:{sheet}!{parts[-1]}" if sheet else f"{where}:{parts[-1]}"
    if cites == "section" and parts:
        return f"{where}:{heading}" + (f" (page {page})" if page is not None else "")
    return f"{where}:{page}" if page is not None else where


@dataclass(frozen=True)
class Hit(Jsonable):
    """One retrieved chunk."""

    json_order = ("rank", "score", "relevance", "source", "page", "chunk_id", "heading", "start", "end", "text", "ocr")

    rank: int
    score: float = field(metadata=json_hook(convert=rounded(6)))
    chunk_id: str
    source: str
    page: int | None
    heading: str
    text: str
    start: int = 0
    end: int = 0
    #: Cosine similarity of query and chunk, whatever the ranking mode; refusal thresholds use it.
    relevance: float | None = field(default=None, metadata=json_hook(convert=rounded(6)))
    #: The text was read by OCR from an image of the page: expect recognition errors.
    ocr: bool = False

    @property
    def location(self) -> str:
        """Where the chunk is, for citations (``path:page``, ``deck.pptx:slide 3``...)."""
        return location(self.source, self.page, self.heading)

    def __repr__(self) -> str:
        snippet = " ".join(self.text.split())[:80]
        return f"Hit(rank={self.rank}, score={self.score:.3f}, {self.location!r}, {snippet!r})"


class Hits(list[Hit]):
    """Search results: a list of ``Hit`` that renders as a table in Jupyter."""

    #: What embedding the query cost (nothing with a local model).
    usage: Usage = Usage()

    def _repr_markdown_(self) -> str:
        if not self:
            return "*No results.*"
        lines = ["| # | score | source | text |", "|---|---|---|---|"]
        for hit in self:
            snippet = md_cell(" ".join(hit.text.split())[:160])
            lines.append(f"| {hit.rank} | {hit.score:.3f} | `{md_cell(hit.location)}` | {snippet} |")
        return "\n".join(lines)


@dataclass(frozen=True)
class Citation(Jsonable):
    """A numbered source that the answer cites."""

    json_order = ("n", "source", "page", "chunk_id", "score", "heading", "location", "attributed")

    n: int
    source: str
    page: int | None
    chunk_id: str
    score: float = field(metadata=json_hook(convert=rounded(6)))
    text: str = ""
    heading: str = ""
    #: rag matched an uncited sentence to this source; the model did not cite it.
    attributed: bool = False

    @property
    def location(self) -> str:
        return location(self.source, self.page, self.heading)


@dataclass(frozen=True)
class Support(Jsonable):
    """Whether one sentence of an answer (``text[start:end]``) is backed by the sources it cites.

    ``attributed``: the model cited nothing valid, and rag matched the sentence to
    ``citations`` itself.
    """

    start: int
    end: int
    supported: bool
    attributed: bool = False
    citations: tuple[int, ...] = ()


@dataclass(frozen=True)
class Span(Jsonable):
    """Characters ``start`` to ``end`` of an answer's text: the words that answer the question."""

    start: int
    end: int
    text: str


#: Why an answer is a refusal: nothing retrieved; nothing retrieved close enough to the
#: question; the answerer found no answer in the sources (the model said so, or no sentence
#: answered for the extractive one); the model answered but no sentence of it is backed by the
#: sources; its backed sentences do not answer what was asked; moderation flagged it.
Refusal = Literal["no_sources", "not_relevant", "not_found", "unsupported", "not_answering", "flagged"]
#: Why quotes of the sources stand in for a model's answer: no sentence of it is backed; it
#: copies passages of sources other than those the quotes choose.
SetAside = Literal["unsupported", "copied"]


@dataclass
class Answer:
    """An answer with the sources it cites, or a refusal."""

    question: str
    text: str = field(metadata=json_hook(key="answer"))
    refused: bool
    citations: list[Citation]
    model: str
    #: Which kind of answerer wrote it: "llm" or "extractive" (see ``rag.answer.registry``).
    answerer: str = "llm"
    #: What the answer cost (a chat's rewrite of the question included).
    usage: Usage = field(default_factory=Usage)
    context: list[Hit] = field(default_factory=list)
    removed_citations: int = 0
    rewritten_question: str | None = field(default=None, metadata=json_hook(omit_none=True))
    #: Time spent writing the answer (retrieval excluded).
    seconds: float | None = None
    #: The words that answer, within ``text`` (extractive answers mark them when they can).
    spans: list[Span] = field(default_factory=list)
    #: Each sentence of a generated answer and whether its sources back it (``rag.answer.support``).
    support: list[Support] = field(default_factory=list)
    #: Why it is a refusal (None for an answer): a model's failure ("unsupported",
    #: "not_answering") is told apart from documents that hold no answer.
    refusal: Refusal | None = field(default=None, metadata=json_hook(omit_none=True))
    #: Why the model's own answer was set aside for these quotes of its sources (None when
    #: the answer is the answerer's own): see ``LLMAnswerer.quotes``.
    set_aside: SetAside | None = field(default=None, metadata=json_hook(omit_none=True))

    json_order = (
        *("question", "text", "refused", "refusal", "set_aside", "citations", "model", "answerer", "usage"),
        "seconds",
        *("removed_citations", "spans", "support", "rewritten_question"),
    )

    def to_dict(self, *, include_context: bool = False) -> dict[str, Any]:
        data = to_dict(self, self.json_order)
        if include_context:
            data["context"] = jsonable(self.context)
        return data

    def marked(self, before: str = "**", after: str = "**") -> str:
        """``text`` with each span wrapped in ``before`` and ``after`` (Markdown bold by default)."""
        parts, last = [], 0
        for span in sorted(self.spans, key=lambda s: s.start):
            if span.start >= last:  # overlapping spans: the first one wins
                parts += [self.text[last : span.start], before, self.text[span.start : span.end], after]
                last = span.end
        parts.append(self.text[last:])
        return "".join(parts)

    def __str__(self) -> str:
        lines = [self.text]
        if self.citations:
            lines += ["", "Sources:"] + [f"[{c.n}] {c.location}" for c in self.citations]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        label = " *(extractive: no LLM configured)*" if self.answerer == "extractive" else ""
        if self.set_aside:
            label = " *(quotes: the model's answer did not stand)*"
        body = f"**{'Declined' if self.refused else 'Answer'}**{label}\n\n{self.marked()}"
        if self.citations:
            rows = ["| [n] | source | score |", "|---|---|---|"]
            for c in self.citations:
                link = Path(c.source).as_uri() if Path(c.source).is_absolute() else c.source
                page = f"#page={c.page}" if c.page is not None else ""
                rows.append(f"| [{c.n}] | [{md_cell(c.location)}]({link}{page}) | {c.score:.3f} |")
            body += "\n\n" + "\n".join(rows)
        return body


@dataclass(frozen=True)
class FileProblem(Jsonable):
    """A file that was skipped or could not be read, with the reason in one line."""

    path: str
    reason: str = field(metadata=json_hook(key="error"))


@dataclass(frozen=True)
class Unsupported(Jsonable):
    """A file skipped because rag does not read its type (``type`` is its extension)."""

    path: str
    type: str


@dataclass
class IngestReport:
    """What an ingest did."""

    index: str
    embedder: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[FileProblem] = field(default_factory=list)
    failed: list[FileProblem] = field(default_factory=list)
    #: Files of a type rag does not read, each named (they are not errors).
    unsupported: list[Unsupported] = field(default_factory=list)
    #: What was indexed but only in part or with a doubt ("OCR found only gibberish on page 3:
    #: not indexed"), per file: ``FileProblem(path, warnings joined by "; ")``.
    warnings: list[FileProblem] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    embedded: int = 0
    from_cache: int = 0
    repaired: int = 0
    seconds: float = 0.0
    #: What the run's embedding calls cost (nothing, for a local model).
    usage: Usage = field(default_factory=Usage)
    interrupted: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.interrupted is None

    def to_dict(self) -> dict[str, Any]:
        # A summary (counts, nested), not its fields: the one shape written out by hand.
        return {
            "index": self.index,
            "files": {
                "added": self.added,
                "updated": self.updated,
                "unchanged": self.unchanged,
                "removed": self.removed,
                "skipped": len(self.skipped),
                "failed": len(self.failed),
            },
            "chunks": {"added": self.chunks_added, "removed": self.chunks_removed, "total": self.chunks_total},
            "errors": jsonable(self.failed),
            "skipped": jsonable(self.skipped),
            "unsupported": len(self.unsupported),
            "unsupported_files": jsonable(self.unsupported),
            "warnings": [{"path": w.path, "warning": w.reason} for w in self.warnings],
            "embedded": self.embedded,
            "from_cache": self.from_cache,
            "repaired": self.repaired,
            "seconds": round(self.seconds, 3),
            "embedder": self.embedder,
            "usage": self.usage.to_dict() if self.usage else {},
            "interrupted": self.interrupted,
        }

    def _repr_markdown_(self) -> str:
        d = self.to_dict()
        f, c = d["files"], d["chunks"]
        text = (
            f"**{self.index}**: {f['added']} added, {f['updated']} updated, {f['unchanged']} unchanged, "
            f"{f['removed']} removed, {f['skipped']} skipped, {f['failed']} failed; "
            f"chunks +{c['added']} −{c['removed']} = {c['total']} ({self.seconds:.1f} s, {self.embedder})"
        )
        if self.failed:
            text += "\n\n" + "\n".join(f"- `{p.path}`: {p.reason}" for p in self.failed)
        return text

    def __repr__(self) -> str:
        d = self.to_dict()
        return f"IngestReport(index={self.index!r}, files={d['files']}, chunks={d['chunks']}, seconds={d['seconds']})"


def document_id(path: str) -> str:
    """A stable, URL-safe id for an indexed file: the start of its path's SHA-256."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Document(Jsonable):
    """An indexed file: ``id`` is stable and URL-safe (a hash of the path)."""

    id: str
    source: str
    kind: str
    pages: int | None
    chunks: int
    size: int
    ingested_at: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Repaired(Jsonable):
    """What ``rag repair`` rebuilt: the files and chunks back, and the files dropped as
    incomplete (an ingest killed half way), which the next ingest indexes again."""

    index: str
    files: int
    chunks: int
    dropped: list[str]
