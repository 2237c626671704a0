"""Crash consistency of one index: what a killed ingest leaves, and what search and repair do with it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag import Engine
from rag.embed import factory
from rag.store.records import ChunkRecord
from tests.conftest import HashEmbedder
from tests.ingest.test_ingest import SlowIngest, _consistent, _many_docs


def _engine(**overrides: Any) -> Engine:
    return Engine(**{"embedding__embedder": "hash", **overrides})


def _long_doc(path: Path, paragraphs: int, topic: str) -> Path:
    path.write_text(
        "\n\n".join(f"Paragraph {i} is about {topic}, {topic} again, item {i}." for i in range(paragraphs)) + "\n",
        encoding="utf-8",
    )
    return path


def test_dense_search_returns_k_live_chunks_however_many_are_pending(tmp_path: Path) -> None:
    """An ingest killed after writing many vectors must not starve searches of results."""
    engine = _engine()
    docs = tmp_path / "docs"
    docs.mkdir()
    _long_doc(docs / "valid.md", 400, "glaciers")
    engine.ingest([docs])
    index = engine.open_index()
    embedder = engine.embedder()
    # Chunks whose vectors are exactly the query's, staged and written but never committed:
    # what an ingest killed before its commit leaves (1,000 of them).
    query = "glaciers again"
    vector = embedder.embed_query(query)
    orphans = [
        ChunkRecord(f"orphan-{i}", str(docs / "partial.md"), "markdown", i, None, "", 0, 1, 3, query)
        for i in range(1000)
    ]
    index.stage(orphans)
    record = next(iter(index.files().values()))
    index.write_vectors(orphans, np.tile(vector, (len(orphans), 1)), {orphans[0].path: record})
    live = index.chunk_count()
    assert live >= 50 and len(index.vector_ids()) == live + 1000
    for k in (5, 50):
        hits = engine.search(query, k, mode="dense")
        assert len(hits) == k, k
        assert all(h.source.endswith("valid.md") for h in hits)


def test_repair_restores_only_files_whose_chunks_are_all_there(tmp_path: Path) -> None:
    engine = _engine()
    docs = tmp_path / "docs"
    docs.mkdir()
    whole = _long_doc(docs / "whole.md", 30, "rivers")
    partial = _long_doc(docs / "partial.md", 30, "deserts")
    engine.ingest([docs])
    index = engine.open_index()
    lost = [c.id for c in index.chunks_of(str(partial.resolve())) if c.position in (3, 4, 6)]
    whole_chunks = index.file(str(whole.resolve()))
    assert whole_chunks is not None and len(lost) == 3
    # As a killed upload leaves it: some of a file's vectors never written, and no manifest.
    index._vectors.delete(lost)
    repaired = engine.repair()
    assert (repaired.files, repaired.chunks) == (1, whole_chunks.chunk_count)
    assert repaired.dropped == [str(partial.resolve())]
    assert [d.source for d in engine.documents()] == [str(whole.resolve())]
    _consistent(engine)  # the incomplete file's other vectors are gone too
    again = engine.ingest([docs])
    assert (again.added, again.unchanged) == (1, 1)  # indexed again, not "unchanged"
    _consistent(engine)


def test_opening_an_index_settles_what_a_killed_ingest_left(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    folder = _many_docs(tmp_path / "many")
    ingest = SlowIngest(folder, tmp_path / "signals", pause_after=10)
    ingest.wait_until_paused()
    ingest.process.send_signal(signal.SIGKILL)
    ingest.process.wait(timeout=60)
    request.addfinalizer(factory.register("slow", lambda model, settings: HashEmbedder(provider="slow")).undo)
    engine = _engine(embedding__embedder="slow")
    index = engine.open_index()  # no ingest: opening is enough
    assert index._manifest.unsettled_count() == 0
    assert index.settled_at_open > 0
    _consistent(engine)
