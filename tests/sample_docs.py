"""The small folder of text and Markdown files the tests share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rag import Engine


def write_sample_docs(root: Path) -> Path:
    """Write the small text and Markdown folder the tests share into ``root``."""
    (root / "sub").mkdir(parents=True)
    (root / "volcanoes.txt").write_text(
        "Volcanoes form where magma reaches the surface.\n\n"
        "Mount Etna in Sicily is one of the most active volcanoes in Europe. "
        "Its eruptions are frequent and mostly effusive.\n",
        encoding="utf-8",
    )
    (root / "bees.md").write_text(
        "# Bees\n\nHoney bees live in colonies with a single queen.\n\n"
        "## Pollination\n\nBees pollinate flowering plants while collecting nectar.\n",
        encoding="utf-8",
    )
    (root / "sub" / "trains.txt").write_text(
        "The first public steam railway opened in 1825 between Stockton and Darlington.\n",
        encoding="utf-8",
    )
    return root


def offline_engine(corpus: Mapping[str, str], folder: Path, store: Path, index: str) -> Engine:
    """An index of ``corpus`` (file name to text), written into ``folder``, with the local
    model and the extractive answerer: what the answerer tests ask real questions of."""
    for name, text in corpus.items():
        (folder / name).write_text(text, encoding="utf-8")
    engine = Engine(index=index, store=store, embedding__embedder="local", llm__llm="none")
    engine.ingest([folder])
    return engine
