"""The small folder of text and Markdown files the tests share."""

from __future__ import annotations

from pathlib import Path


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
