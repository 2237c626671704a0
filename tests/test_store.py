"""The manifest's chunk lifecycle, the embedding cache, and Chroma batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import EmbedderMismatchError, IndexNotFoundError, UsageError
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, validate_index_name
from rag.store.manifest import Manifest, keyword_terms
from rag.store.records import ChunkRecord, FileRecord
from rag.store.vectors import VectorStore


def _chunk(i: int, text: str, path: str = "/docs/a.txt") -> ChunkRecord:
    return ChunkRecord(f"c{i}", path, "text", i, None, "", 0, len(text), len(text.split()), text)


def _file(path: str = "/docs/a.txt", n: int = 2) -> FileRecord:
    return FileRecord(path, "hash", "sig", "text", 10, 1, None, n, 0.0)


def test_pending_chunks_are_invisible_until_committed(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    manifest.add_pending([_chunk(0, "lava flows from the volcano"), _chunk(1, "bees make honey")])
    assert manifest.keyword_search("volcano", 5) == []
    assert manifest.chunks(["c0"]) == {}
    assert sorted(manifest.unsettled()) == ["c0", "c1"]

    assert manifest.commit_file(_file(), ["c0", "c1"]) == []
    assert [i for i, _ in manifest.keyword_search("volcanoes", 5)] == ["c0"]  # porter stemming
    assert manifest.unsettled() == []
    assert manifest.chunk_count() == 2


def test_commit_replaces_old_chunks_and_forget_marks_them_stale(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    manifest.add_pending([_chunk(0, "old text")])
    manifest.commit_file(_file(n=1), ["c0"])
    manifest.add_pending([_chunk(5, "new text")])
    stale = manifest.commit_file(_file(n=1), ["c5"])
    assert stale == ["c0"]
    assert manifest.unsettled() == ["c0"]
    assert set(manifest.live_ids()) == {"c5"}
    manifest.purge(stale)
    assert manifest.forget_file("/docs/a.txt") == ["c5"]
    assert manifest.file_count() == 0
    assert manifest.keyword_search("new", 5) == []


def test_commit_files_commits_many_files_at_once(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    manifest.add_pending([_chunk(0, "old a", "/docs/a.txt"), _chunk(1, "old b", "/docs/b.txt")])
    manifest.commit_files([(_file("/docs/a.txt", 1), ["c0"]), (_file("/docs/b.txt", 1), ["c1"])])
    assert manifest.live_ids() == {"c0", "c1"} and manifest.file_count() == 2

    new = [_chunk(2, "new a", "/docs/a.txt"), _chunk(3, "new b", "/docs/b.txt"), _chunk(4, "c", "/docs/c.txt")]
    manifest.add_pending(new)
    replaced = manifest.commit_files(
        [(_file("/docs/a.txt", 1), ["c2"]), (_file("/docs/b.txt", 1), ["c1", "c3"]), (_file("/docs/c.txt", 1), ["c4"])]
    )
    assert replaced == [["c0"], [], []]  # a kept id is not stale
    assert manifest.live_ids() == {"c1", "c2", "c3", "c4"}
    assert manifest.unsettled() == ["c0"]
    assert manifest.file_count() == 3


def test_keyword_index_follows_deletes(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    manifest.add_pending([_chunk(0, "quartz crystals"), _chunk(1, "granite rocks")])
    manifest.commit_file(_file(), ["c0", "c1"])
    manifest.purge(manifest.forget_file("/docs/a.txt"))
    assert manifest.keyword_search("quartz", 5) == []
    rows = manifest._query("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'quartz'")
    assert rows[0][0] == 0


def test_keyword_terms_drop_stopwords_but_not_everything() -> None:
    assert keyword_terms("What is the boiling point of water?") == ["boiling", "point", "water"]
    assert keyword_terms("to be or not") == ["not"]
    assert keyword_terms("the") == ["the"]


def test_embedding_cache_round_trip_and_dedup(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.db")
    vectors = np.eye(3, dtype=np.float32)
    cache.put("m", ["a", "b", "c"], vectors)
    found = cache.get("m", ["c", "x", "a", "a"], dimension=3)
    assert sorted(found) == [0, 2, 3]
    np.testing.assert_array_equal(found[0], vectors[2])
    np.testing.assert_array_equal(found[3], vectors[0])
    assert cache.get("other-model", ["a"], dimension=3) == {}
    assert cache.get("m", ["a"], dimension=4) == {}  # wrong shape is a miss, never garbage


def test_vector_store_batches_below_chromas_limit(tmp_path: Path, monkeypatch) -> None:
    store = VectorStore.connect("rag-test", path=tmp_path / "chroma")
    store.create({"rag_embedder": "x"})
    sizes: list[int] = []
    collection = store._require()
    original = collection.upsert

    def spy(**kwargs):
        sizes.append(len(kwargs["ids"]))
        return original(**kwargs)

    monkeypatch.setattr(collection, "upsert", spy)
    monkeypatch.setattr(store._client, "get_max_batch_size", lambda: 100)
    n = 250
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert([f"id{i}" for i in range(n)], vectors, [f"t{i}" for i in range(n)], [{"source": "s"}] * n)
    assert sizes and max(sizes) < 100 and sum(sizes) == n
    assert store.count() == n
    best = store.query(vectors[7], 3)
    assert best[0][0] == "id7" and best[0][1] == pytest.approx(1.0, abs=1e-4)
    assert store.existing(["id1", "nope"]) == {"id1"}
    store.delete([f"id{i}" for i in range(n)])
    assert store.count() == 0


def test_index_records_its_embedder_and_refuses_another(settings: Settings) -> None:
    with pytest.raises(IndexNotFoundError, match="rag ingest PATH"):
        Index.open(settings, "missing")
    with Index.open(settings, "notes", create=True) as index:
        index.bind_embedder("hash:v1", 64)
        index.bind_embedder("hash:v1", 64)
        with pytest.raises(EmbedderMismatchError, match="hash:v1"):
            index.bind_embedder("local:other", 384)
    with Index.open(settings, "notes") as index:
        assert (index.embedder_name, index.dimension) == ("hash:v1", 64)


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "x" * 64, "a/b"])
def test_bad_index_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError):
        validate_index_name(name)
