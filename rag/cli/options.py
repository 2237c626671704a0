"""Command-line options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rag.filetypes import kinds

# Help texts use "\[" because rich would read "[default: ...]" as markup and drop it.
IndexOpt = Annotated[str | None, typer.Option("--index", "-i", help="Index name \\[default: RAG_INDEX or 'default'].")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="Store folder \\[default: RAG_HOME or the user data folder].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
KOpt = Annotated[int | None, typer.Option("-k", "--top-k", min=1, max=1000, help="Chunks to retrieve.")]
ModeOpt = Annotated[str | None, typer.Option("--mode", help="dense, keyword or hybrid \\[default: hybrid].")]
PathFilter = Annotated[list[str] | None, typer.Option("--path", help="Only files matching this glob (repeatable).")]
TypeFilter = Annotated[
    list[str] | None,
    typer.Option("--type", help=f"Only this file type: {', '.join(kinds())}, or an extension (repeatable)."),
]
PagesFilter = Annotated[str | None, typer.Option("--pages", help="Only these pages: N, N-M, N- or -M.")]
LlmOpt = Annotated[str | None, typer.Option("--llm", help="auto, openai, or none (extractive, offline).")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Chat model \\[default: RAG_CHAT_MODEL].")]

# What to read and how: `rag ingest`, `rag watch`.
IncludeOpt = Annotated[list[str] | None, typer.Option("--include", help="Only files matching this glob.")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Skip files matching this glob.")]
EmbedderOpt = Annotated[
    str | None,
    typer.Option("--embedder", help="local, local:int8, local:fp32, openai or openai:MODEL (new indexes only)."),
]
OcrOpt = Annotated[
    str | None,
    typer.Option("--ocr", help="auto (scanned pages and images), never or always \\[default: RAG_OCR or auto]."),
]

FollowLinksOpt = Annotated[
    bool, typer.Option("--follow-links", help="Follow symlinks out of the folder too \\[default: RAG_FOLLOW_LINKS].")
]


def ocr_overrides(ocr: str | None) -> dict[str, Any]:
    """The engine override ``--ocr`` asks for (none when not given)."""
    if ocr is not None and ocr not in ("auto", "never", "always"):
        raise typer.BadParameter("use auto, never or always", param_hint="--ocr")
    return {"ingest__ocr": ocr} if ocr else {}
