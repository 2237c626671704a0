"""Chroma, embedded or on a server: the dense half of an index.

Chroma holds each chunk's vector, text and metadata under a deterministic id, so a
collection on a server is complete on its own.  The index's SQLite file
(``rag.store.manifest``) records which ids exist and in what state, and is what search
results are read back from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rag.errors import StoreError, UsageError
from rag.store.folder import Folder
from rag.store.remote import list_collections

log = logging.getLogger(__name__)

# HNSW defaults (ef 100) lose recall on the 100+ candidates that hybrid fusion and
# Recall@100 need; 200 costs well under a millisecond per query at 100k chunks.
# ef_construction is Chroma's default (100): on 20k real MiniLM vectors it inserts 1.4x faster
# than 200 with the same recall@10 (1.0000 at ef_search 200). Searching wider is cheap (0.5 ms).
_HNSW = {"space": "cosine", "ef_construction": 100, "ef_search": 200, "max_neighbors": 16}


def parse_chroma_url(url: str) -> tuple[str, int, bool]:
    """``http://host:port`` to (host, port, ssl); a usage error if it is not a URL."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"RAG_CHROMA_URL must look like http://host:port, not {url!r}")
    ssl = parsed.scheme == "https"
    return parsed.hostname, parsed.port or (443 if ssl else 8000), ssl


class VectorStore:
    """One Chroma collection per index: a ``rag.store.backend.VectorBackend``.

    Embedded, every call goes through the folder's ``rag.store.folder.Folder``, which keeps
    this process current with other processes' writes; on a server, Chroma does that.
    """

    def __init__(
        self, client: Any, collection_name: str, location: str, path: Path | None = None, folder: Folder | None = None
    ) -> None:
        self._client = client
        self._name = collection_name
        self.location = location
        self._path = path
        self._folder = folder
        self._collection: Any = None
        self._epoch = -1

    @classmethod
    def connect(cls, collection_name: str, *, path: Path | None = None, url: str | None = None) -> VectorStore:
        """Open Chroma embedded in ``path``, or the server at ``url``."""
        try:
            if url:
                client = _connect(None, url)
                client.heartbeat()
                return cls(client, collection_name, url)
            assert path is not None
            path.mkdir(parents=True, exist_ok=True)
            folder = Folder.open(path, lambda p: _connect(p, None))
        except UsageError:
            raise
        except Exception as exc:  # chromadb raises many types; the user needs one line
            where = url or str(path)
            raise StoreError(f"cannot open Chroma at {where}: {_short(exc)}") from exc
        return cls(None, collection_name, str(path), path, folder)

    def collection_names(self) -> list[str]:
        """Every collection on this Chroma (this one or not), by name."""
        with self._use(write=False) as client:
            return [c.name for c in list_collections(client)]

    # --- one call at a time ---------------------------------------------------------------

    @contextmanager
    def _use(self, *, write: bool) -> Iterator[Any]:
        if self._folder is None:
            yield self._client
        else:
            with self._folder.writing() if write else self._folder.reading() as client:
                yield client

    def _collection_in(self, client: Any, *, create: bool = False, metadata: Mapping[str, Any] | None = None) -> Any:
        """The collection as ``client`` sees it (None when it does not exist)."""
        epoch = self._folder.epoch if self._folder is not None else 0
        if self._collection is not None and self._epoch == epoch:
            return self._collection
        try:
            if create:
                collection = client.get_or_create_collection(
                    self._name,
                    metadata=dict(metadata or {}) or None,
                    configuration={"hnsw": _HNSW},
                    embedding_function=None,
                )
            else:
                collection = client.get_collection(self._name, embedding_function=None)
        except Exception as exc:
            if not create and _is_not_found(exc):
                return None
            raise StoreError(f"Chroma at {self.location}: {_short(exc)}") from exc
        self._collection, self._epoch = collection, epoch
        return collection

    def _read(self, fn: Callable[[Any], Any], missing: Any) -> Any:
        """``fn(collection)``, or ``missing`` when there is no collection.  A read that fails
        while another process writes the folder is tried once more, after that write."""
        for attempt in (1, 2):
            try:
                with self._use(write=False) as client:
                    collection = self._collection_in(client)
                    return missing if collection is None else fn(collection)
            except Exception as exc:
                if attempt == 1 and self._folder is not None and self._folder.reopen_after_error():
                    continue
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"Chroma at {self.location}: {_short(exc)}") from exc
        raise AssertionError("unreachable")

    def _method(self, name: str, *, write: bool = False, **kwargs: Any) -> Any:
        """The collection's method ``name`` called with ``kwargs`` (None when there is no collection)."""
        if write:
            self._write(lambda c: getattr(c, name)(**kwargs))
            return None
        return self._read(lambda c: getattr(c, name)(**kwargs), None)

    def _write(self, fn: Callable[[Any], None], *, create: bool = False) -> None:
        """``fn(collection)`` as this process's one write to the folder; nothing when there
        is no collection (unless ``create``, when ``fn`` gets the client)."""
        try:
            with self._use(write=True) as client:
                if create:
                    fn(client)
                    return
                collection = self._collection_in(client)
                if collection is not None:
                    fn(collection)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Chroma at {self.location}: {_short(exc)}") from exc

    # --- collection -----------------------------------------------------------------------

    def exists(self) -> bool:
        return self._read(lambda c: True, False)

    def create(self, metadata: Mapping[str, Any]) -> None:
        self._write(lambda client: self._collection_in(client, create=True, metadata=metadata), create=True)

    @property
    def metadata(self) -> dict[str, Any]:
        return self._read(lambda c: dict(c.metadata or {}), {})

    def set_metadata(self, values: Mapping[str, Any]) -> None:
        def modify(collection: Any) -> None:
            merged = {**(collection.metadata or {}), **values}
            # Chroma rejects its own reserved hnsw:* keys in modify(); they live in configuration.
            collection.modify(metadata={k: v for k, v in merged.items() if not k.startswith("hnsw:")})

        if not self.exists():
            raise StoreError(f"collection {self._name} does not exist in Chroma at {self.location}")
        self._write(modify)

    def close(self) -> None:
        """Let go of the client (embedded: this process's last user of the folder closes it,
        and Chroma then closes its SQLite and HNSW files)."""
        self._collection = None
        if self._folder is not None:
            folder, self._folder = self._folder, None
            folder.release()
        elif self._client is not None:
            self._client.close()

    def drop(self) -> None:
        def delete(client: Any) -> None:
            if self._collection_in(client) is not None:
                client.delete_collection(self._name)
            self._collection = None

        self._write(delete, create=True)

    def count(self) -> int:
        return self._read(lambda c: int(c.count()), 0)

    # --- data -----------------------------------------------------------------------------

    def _batches(self, n: int) -> Iterator[slice]:
        with self._use(write=False) as client:
            size = max(1, min(5000, int(client.get_max_batch_size()) - 1))
        for start in range(0, n, size):
            yield slice(start, min(n, start + size))

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        documents: Sequence[str] | None,
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None:
        """Write vectors under ``ids``; rewriting an id replaces it, so retries are harmless."""
        if not ids:
            return
        if not self.exists():
            raise StoreError(f"collection {self._name} does not exist in Chroma at {self.location}")
        for part in self._batches(len(ids)):
            self._method(
                "upsert",
                write=True,
                ids=list(ids[part]),
                embeddings=np.asarray(vectors[part], dtype=np.float32),
                documents=list(documents[part]) if documents is not None else None,
                metadatas=[dict(m) for m in metadatas[part]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        for part in self._batches(len(ids)):
            self._method("delete", write=True, ids=list(ids[part]))

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` Chroma holds."""
        found: set[str] = set()
        for part in self._batches(len(ids)):
            got = self._method("get", ids=list(ids[part]), include=[])
            found.update(got["ids"] if got is not None else [])
        return found

    def query(
        self,
        vector: np.ndarray,
        k: int,
        *,
        paths: Sequence[str] | None = None,
        pages: tuple[int | None, int | None] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest ids with cosine similarity, best first, within ``paths`` and ``pages``."""
        if k <= 0:
            return []
        # Chroma returns fewer than n_results when it holds fewer; no count() round trip needed.
        result = self._read(
            lambda c: c.query(
                query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
                n_results=k,
                where=_where(paths, pages),
                include=["distances"],
            ),
            None,
        )
        if result is None:
            return []
        ids = result["ids"][0]
        distances = result["distances"][0] if result.get("distances") else [1.0] * len(ids)
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def all_ids(self, page: int = 5000) -> Iterator[list[str]]:
        offset = 0
        while True:
            got = self._method("get", include=[], limit=page, offset=offset)
            if got is None or not got["ids"]:
                return
            yield list(got["ids"])
            offset += len(got["ids"])

    def records(self, page: int = 2000) -> Iterator[list[tuple[str, str | None, dict[str, Any] | None]]]:
        offset = 0
        while True:
            got = self._method("get", include=["documents", "metadatas"], limit=page, offset=offset)
            if got is None or not got["ids"]:
                return
            yield list(zip(got["ids"], got["documents"], got["metadatas"], strict=True))
            offset += len(got["ids"])

    def fetch(self, ids: Sequence[str]) -> list[tuple[str, str | None, dict[str, Any] | None]]:
        """(id, text, metadata) of those ``ids`` the collection holds."""
        out: list[tuple[str, str | None, dict[str, Any] | None]] = []
        for part in self._batches(len(ids)):
            got = self._method("get", ids=list(ids[part]), include=["documents", "metadatas"])
            if got is not None:
                out += list(zip(got["ids"], got["documents"], got["metadatas"], strict=True))
        return out

    def delete_where(self, where: Mapping[str, Any]) -> None:
        """Delete every record whose metadata matches ``where``."""
        self._method("delete", write=True, where=dict(where))

    @property
    def client(self) -> Any:
        """The Chroma server's client (server mode keeps its lease and change log beside the collection)."""
        assert self._folder is None, "an embedded folder's client is reopened as other processes write"
        return self._client

    def size_bytes(self) -> int:
        """Bytes of this collection's segments when Chroma is embedded (a server's disk is not ours)."""
        if self._path is None or not self.exists():
            return 0
        return sum(p.stat().st_size for segment in self._segment_dirs() for p in segment.rglob("*") if p.is_file())

    def _segment_dirs(self) -> list[Path]:
        """Chroma keeps each collection's vector segment in a folder named by segment id."""
        import sqlite3

        assert self._path is not None
        db = self._path / "chroma.sqlite3"
        if not db.exists():
            return []
        try:
            collection_id = str(self._read(lambda c: c.id, None))
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                rows = con.execute("SELECT id FROM segments WHERE collection = ?", (collection_id,)).fetchall()
        except (sqlite3.Error, StoreError):
            return []
        return [self._path / row[0] for row in rows if (self._path / row[0]).is_dir()]

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        got = self._read(lambda c: c.get(ids=list(ids), include=["embeddings"]), None)
        if got is None:
            return {}
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"], strict=True)}


def _connect(path: Path | None, url: str | None) -> Any:
    """A Chroma client: embedded in ``path``, or for the server at ``url``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        host, port, ssl = parse_chroma_url(url)
        return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=chroma_settings)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def _where(paths: Sequence[str] | None, pages: tuple[int | None, int | None] | None) -> dict[str, Any] | None:
    """A Chroma ``where`` for the path and page filters (None when there are none)."""
    clauses: list[dict[str, Any]] = []
    if paths is not None:
        clauses.append({"source": {"$in": list(paths)}})
    if pages is not None:
        low, high = pages
        if low is not None:
            clauses.append({"page": {"$gte": low}})
        if high is not None:
            clauses.append({"page": {"$lte": high}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _is_not_found(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "notfound" in text or "does not exist" in text or "not found" in text


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
