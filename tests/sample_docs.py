"""The small folder of text and Markdown files the tests share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from rag import Engine

#: The shared folder: each file's path under the folder, and its text.
SAMPLE_DOCS = {
    "volcanoes.txt": "Volcanoes form where magma reaches the surface.\n\n"
    "Mount Etna in Sicily is one of the most active volcanoes in Europe. "
    "Its eruptions are frequent and mostly effusive.\n",
    "bees.md": "# Bees\n\nHoney bees live in colonies with a single queen.\n\n"
    "## Pollination\n\nBees pollinate flowering plants while collecting nectar.\n",
    "sub/trains.txt": "The first public steam railway opened in 1825 between Stockton and Darlington.\n",
}


def write_sample_docs(root: Path, names: Iterable[str] = SAMPLE_DOCS) -> Path:
    """Write the small text and Markdown folder the tests share (or the files ``names``) into ``root``."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(SAMPLE_DOCS[name], encoding="utf-8")
    return root


def offline_engine(corpus: Mapping[str, str], folder: Path, store: Path, index: str) -> Engine:
    """An index of ``corpus`` (file name to text), written into ``folder``, with the local
    model and the extractive answerer: what the answerer tests ask real questions of."""
    for name, text in corpus.items():
        (folder / name).write_text(text, encoding="utf-8")
    engine = Engine(index=index, store=store, embedding__embedder="local", llm__llm="none")
    engine.ingest([folder])
    return engine
