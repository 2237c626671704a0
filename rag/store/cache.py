"""Vectors already computed, keyed by embedder and text hash.

Identical chunks (duplicate files, re-chunking, a re-run after an interrupted ingest)
are embedded once.  Each batch is written here the moment it arrives, which is what makes
paid-for embeddings survive a crash, a Ctrl-C or a rate-limit failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.store.sqlite import Database


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        self._database = Database(path)
        self._database.execute(
            "CREATE TABLE IF NOT EXISTS vectors (embedder TEXT NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL, "
            "PRIMARY KEY (embedder, key)) WITHOUT ROWID"
        )

    def get(self, embedder: str, texts: Sequence[str], dimension: int) -> dict[int, np.ndarray]:
        """Cached vectors for ``texts``, by position in ``texts``."""
        positions: dict[bytes, list[int]] = {}
        for i, text in enumerate(texts):
            positions.setdefault(text_key(text), []).append(i)
        found: dict[int, np.ndarray] = {}
        keys = list(positions)
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            rows = self._database.query(
                f"SELECT key, vector FROM vectors WHERE embedder = ? AND key IN ({','.join('?' * len(part))})",
                (embedder, *part),
            )
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape == (dimension,):
                    for i in positions[key]:
                        found[i] = vector
        return found

    def put(self, embedder: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (embedder, text_key(t), np.asarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._database.write() as db:
            db.executemany("INSERT OR REPLACE INTO vectors(embedder, key, vector) VALUES (?, ?, ?)", rows)

    def count(self, embedder: str | None = None) -> int:
        if embedder is None:
            return int(self._database.query("SELECT count(*) FROM vectors")[0][0])
        return int(self._database.query("SELECT count(*) FROM vectors WHERE embedder = ?", (embedder,))[0][0])

    def clear(self) -> None:
        self._database.execute("DELETE FROM vectors")

    def close(self) -> None:
        self._database.close()
