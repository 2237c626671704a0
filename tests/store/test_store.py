"""The manifest's chunk lifecycle, the embedding cache, and Chroma batching."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.errors import EmbedderMismatchError, IndexNotFoundError, UsageError
from rag.settings import Settings
from rag.store.cache import EmbeddingCache
from rag.store.index import Index, validate_index_name
from rag.store.manifest import Manifest
from rag.store.records import ChunkRecord, FileRecord
from rag.store.vectors import VectorStore


def _chunk(i: int, text: str, path: str = "/docs/a.txt") -> ChunkRecord:
    return ChunkRecord(f"c{i}", path, "text", i, None, "", 0, len(text), len(text.split()), text)


def _file(path: str = "/docs/a.txt", n: int = 2) -> FileRecord:
    return FileRecord(path, "hash", "sig", "text", 10, 1, None, n, 0.0)


def test_pending_chunks_are_invisible_until_committed(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    manifest.add_pending([_chunk(0, "lava flows from the volcano"), _chunk(1, "bees make honey")])
    assert manifest.chunks(["c0"]) == {}
    assert sorted(manifest.unsettled()) == ["c0", "c1"]

    assert manifest.commit_file(_file(), ["c0", "c1"]) == []
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


def test_the_keyword_index_shows_live_chunks_only_and_follows_deletes(settings: Settings) -> None:
    index = Index.open(settings, "kw", create=True)
    index.bind_embedder("hash:v1", 3)
    chunks = [_chunk(0, "lava flows from the volcano"), _chunk(1, "quartz crystals")]
    index.stage(chunks)
    index.write_vectors(chunks, np.eye(3, dtype=np.float32)[:2], {"/docs/a.txt": _file()})
    assert index.keyword("volcano", 5) == []  # pending: not yet live
    index.commit_file(_file(), ["c0", "c1"])
    assert [i for i, _ in index.keyword("volcanoes", 5)] == ["c0"]  # stemming
    index.remove(["/docs/a.txt"])
    assert index.keyword("quartz", 5) == [] and index.keyword_ids() == set()
    index.close()


def test_an_fts5_era_index_gets_its_keyword_index_built_on_open(settings: Settings) -> None:
    import sqlite3

    index = Index.open(settings, "old", create=True)
    index.bind_embedder("hash:v1", 3)
    index.add_file(_file(n=1), [_chunk(0, "granite rocks")], np.eye(3, dtype=np.float32)[:1])
    index.close()
    folder = index.layout.index_dir("old")
    shutil.rmtree(folder / "keyword")  # as rag 0.1 left it: FTS5 inside index.db, no keyword folder
    with sqlite3.connect(folder / "index.db") as db:
        db.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(heading, text)")
    again = Index.open(settings, "old")
    assert [i for i, _ in again.keyword("granite", 5)] == ["c0"]
    with sqlite3.connect(folder / "index.db") as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'chunks_fts'").fetchone() is None
    again.close()


def test_remote_changes_replace_whatever_state_a_chunk_was_in(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    manifest.add_pending([_chunk(0, "old"), _chunk(1, "mine, unfinished", path="/docs/b.txt")])
    manifest.commit_file(_file(n=1), ["c0"])
    # Another machine replaced a.txt's chunk and committed b.txt's chunk, which was pending here.
    manifest.apply_remote(
        ["c0"], [_chunk(2, "new"), _chunk(1, "theirs", path="/docs/b.txt")], [_file(), _file("/docs/b.txt")]
    )
    assert manifest.live_ids() == {"c1", "c2"} and manifest.unsettled() == []
    assert {p: r.chunk_count for p, r in manifest.files().items()} == {"/docs/a.txt": 1, "/docs/b.txt": 1}
    manifest.apply_remote(["c1"], [], [])
    assert set(manifest.files()) == {"/docs/a.txt"}  # a file left without chunks is forgotten


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
    collection = store._read(lambda c: c, None)
    original = collection.upsert

    def spy(**kwargs):
        sizes.append(len(kwargs["ids"]))
        return original(**kwargs)

    monkeypatch.setattr(collection, "upsert", spy)
    assert store._folder is not None
    monkeypatch.setattr(store._folder._client, "get_max_batch_size", lambda: 100)
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


def test_chroma_records_round_trip_and_0_1_records_still_read() -> None:
    from rag.store.records import from_metadata, to_metadata

    chunk = ChunkRecord("c1", "/d/a.md", "md", 2, 3, "Intro > Ünïcode", 10, 40, 9, 'text with "quotes" and ü')
    record = FileRecord("/d/a.md", "h" * 64, "sig", "md", 123, 456, None, 0, 0.0)
    meta = to_metadata(chunk, record)
    assert set(meta) == {"source", "page", "rag"}  # filters, and one packed string
    assert from_metadata("c1", None, meta) == (chunk, record)

    old = {  # what 0.1 wrote: a key per field, the text as the record's document
        "source": "/d/a.md", "kind": "md", "position": 2, "start": 10, "end": 40, "tokens": 9,
        "file_hash": "h" * 64, "signature": "sig", "file_size": 123, "file_mtime_ns": 456,
        "page": 3, "heading": "Intro > Ünïcode",
    }  # fmt: skip
    assert from_metadata("c1", chunk.text, old) == (chunk, record)


def test_a_broad_path_filter_post_filters_the_nearest_and_agrees_with_chromas_filter(settings: Settings) -> None:
    rng = np.random.default_rng(7)
    index = Index.open(settings, "filtered", create=True)
    index.bind_embedder("hash:v1", 16)
    paths = [f"/docs/f{n}.txt" for n in range(20)]
    for f, path in enumerate(paths):
        chunks = [_chunk(f * 10 + j, f"text {f} {j}", path) for j in range(10)]
        vectors = rng.standard_normal((10, 16)).astype(np.float32)
        index.add_file(_file(path, 10), chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    calls: list[dict[str, object]] = []
    real_query = index._vectors.query

    def watched(vector, k, **filters):
        calls.append({"k": k, **filters})
        return real_query(vector, k, **filters)

    index._vectors.query = watched  # type: ignore[method-assign]
    for kept, k in ((paths[:5], 2), (paths[:1], 12)):  # a quarter of the chunks; then fewer than k
        for _ in range(5):
            query = rng.standard_normal(16).astype(np.float32)
            calls.clear()
            got = index.dense(query, k, paths=kept)
            assert got == real_query(query, k, paths=kept)  # the same ids, order and scores
            if k == 2:
                assert len(got) == 2 and calls == [{"k": 16}]  # one unfiltered search: 2 x 2 x 200 / 50
            else:
                assert len(got) == 10 and calls == [{"k": 12, "paths": kept, "pages": None}]  # Chroma filters
    index.close()
