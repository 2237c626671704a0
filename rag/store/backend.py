"""What an index needs from a vector store: the ``VectorBackend`` protocol.

Chroma (``rag.store.vectors``) is the one backend today; another is one module that
implements these methods.  Only ``rag.store.index.Index`` talks to a backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np


class VectorBackend(Protocol):
    """One collection of vectors, each with its text and metadata, under a string id."""

    #: Where the vectors live, for messages (a folder or a URL).
    location: str

    def exists(self) -> bool: ...
    def create(self, metadata: Mapping[str, Any]) -> None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    def set_metadata(self, values: Mapping[str, Any]) -> None: ...
    def drop(self) -> None: ...
    def close(self) -> None: ...
    def count(self) -> int: ...
    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        documents: Sequence[str] | None,
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None:
        """Write vectors (with texts, unless None) under ``ids``, replacing what they held."""
        ...

    def delete(self, ids: Sequence[str]) -> None: ...
    def existing(self, ids: Sequence[str]) -> set[str]: ...
    def all_ids(self, page: int = 5000) -> Iterator[list[str]]: ...
    def query(
        self,
        vector: np.ndarray,
        k: int,
        *,
        paths: Sequence[str] | None = None,
        pages: tuple[int | None, int | None] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest ids with cosine similarity, best first, within ``paths`` and ``pages``."""
        ...

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def records(self, page: int = 2000) -> Iterator[list[tuple[str, str | None, dict[str, Any] | None]]]:
        """Every (id, text, metadata), a page at a time (to rebuild a manifest from a server)."""
        ...

    def fetch(self, ids: Sequence[str]) -> list[tuple[str, str | None, dict[str, Any] | None]]:
        """(id, text, metadata) of those ``ids`` the collection holds."""
        ...

    def delete_where(self, where: Mapping[str, Any]) -> None:
        """Delete every record whose metadata matches ``where``."""
        ...

    def size_bytes(self) -> int:
        """Bytes this collection takes on local disk (0 when it lives on a server)."""
        ...
