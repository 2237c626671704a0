"""Incremental ingest: exactly once per chunk, through changes, deletions, crashes and rivals.

These tests use the small ``hash`` embedder from conftest (the pipeline's logic does not
depend on the model); real-model runs are in test_cli_ingest.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rag import Engine
from rag.embed import factory
from rag.errors import EmbedderMismatchError, IndexLockedError, StoreError
from tests.conftest import FIXTURES, HashEmbedder, deliver_ctrl_c


def _engine(**overrides) -> Engine:
    return Engine(**{"embedding__embedder": "hash", **overrides})


def _consistent(engine: Engine) -> tuple[int, int]:
    """Chroma, the keyword index and the manifest hold exactly the same chunk ids; returns (chunks, files)."""
    index = engine.open_index()
    chroma_ids = index.vector_ids()
    assert chroma_ids == index.live_ids()
    assert index.keyword_ids() == chroma_ids  # no ghost hits, no missing chunks
    return len(chroma_ids), index.file_count()


def _embedder(engine: Engine) -> HashEmbedder:
    embedder = engine.embedder()
    assert isinstance(embedder, HashEmbedder)
    return embedder


def test_first_ingest_then_unchanged_rerun_embeds_nothing(docs: Path) -> None:
    engine = _engine()
    report = engine.ingest([docs])
    assert (report.added, report.updated, report.unchanged, report.failed) == (3, 0, 0, [])
    assert report.chunks_added == report.chunks_total > 0
    chunks, files = _consistent(engine)
    assert (chunks, files) == (report.chunks_total, 3)

    before = _embedder(engine).texts_embedded
    again = engine.ingest([docs])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert again.chunks_added == again.chunks_removed == 0
    assert _embedder(engine).texts_embedded == before
    assert _consistent(engine) == (chunks, files)


def test_changed_file_replaces_its_chunks(docs: Path) -> None:
    engine = _engine()
    engine.ingest([docs])
    (docs / "volcanoes.txt").write_text("Geysers erupt hot water and steam at Yellowstone.\n", encoding="utf-8")
    report = engine.ingest([docs])
    assert (report.added, report.updated, report.unchanged) == (0, 1, 2)
    assert report.chunks_removed >= 1 and report.chunks_added >= 1
    _consistent(engine)
    texts = " ".join(h.text for h in engine.search("Etna eruptions volcano", k=10))
    assert "Etna" not in texts
    assert "Yellowstone" in engine.search("geysers Yellowstone", k=1)[0].text


def test_touched_but_identical_file_is_not_reembedded(docs: Path) -> None:
    engine = _engine()
    engine.ingest([docs])
    before = _embedder(engine).texts_embedded
    path = docs / "bees.md"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    report = engine.ingest([docs])
    assert report.unchanged == 3
    assert _embedder(engine).texts_embedded == before


def test_deleted_files_are_pruned_unless_no_prune(docs: Path) -> None:
    engine = _engine()
    engine.ingest([docs])
    (docs / "sub" / "trains.txt").unlink()
    kept = engine.ingest([docs], prune=False)
    assert kept.removed == 0
    assert _consistent(engine)[1] == 3
    pruned = engine.ingest([docs])
    assert pruned.removed == 1 and pruned.chunks_removed >= 1
    assert _consistent(engine)[1] == 2
    assert all("trains" not in h.source for h in engine.search("steam railway Stockton", k=10))


def test_a_symlink_to_a_file_outside_is_tracked_by_the_link_and_pruned_with_it(docs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "tides.txt").write_text("Spring tides follow the full and the new moon.\n", encoding="utf-8")
    (docs / "tides-link.txt").symlink_to(outside / "tides.txt")
    engine = _engine(ingest__follow_links=True)  # a link out of the folder is followed only when asked
    engine.ingest([docs])
    [hit] = engine.search("spring tides full moon", k=1)
    assert hit.source == str(docs.resolve() / "tides-link.txt")
    (docs / "tides-link.txt").unlink()
    report = engine.ingest([docs])
    assert report.removed == 1
    assert all("tides" not in h.source for h in engine.search("spring tides full moon", k=10))
    assert (outside / "tides.txt").exists()  # rag never touches the user's files


def test_a_file_indexed_through_an_outside_link_leaves_when_links_are_no_longer_followed(
    docs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "tides.txt").write_text("Spring tides follow the full and the new moon.\n", encoding="utf-8")
    (docs / "tides-link.txt").symlink_to(outside / "tides.txt")
    _engine(ingest__follow_links=True).ingest([docs])  # as every ingest did before links were refused
    engine = _engine()
    report = engine.ingest([docs])
    assert report.removed == 1
    assert all("tides" not in h.source for h in engine.search("spring tides full moon", k=10))
    assert (docs / "tides-link.txt").is_symlink() and (outside / "tides.txt").exists()  # nothing of the user's touched


def test_ingesting_a_subfolder_does_not_prune_the_rest(docs: Path) -> None:
    engine = _engine()
    engine.ingest([docs])
    report = engine.ingest([docs / "sub"])
    assert report.removed == 0 and report.unchanged == 1
    assert _consistent(engine)[1] == 3


def test_duplicate_files_are_embedded_once(docs: Path) -> None:
    shutil.copy(docs / "bees.md", docs / "bees-copy.md")
    engine = _engine()
    report = engine.ingest([docs])
    embedder = _embedder(engine)
    embedded = [t for call in embedder.calls for t in call]
    assert len(embedded) == len(set(embedded))
    assert report.chunks_total == _consistent(engine)[0]
    assert report.embedded < report.chunks_added


def test_a_file_that_breaks_keeps_its_previous_version(docs: Path) -> None:
    engine = _engine()
    good = docs / "report.pdf"
    shutil.copy(FIXTURES / "pdf" / "google-doc_zen-of-python.pdf", good)
    first = engine.ingest([docs])
    assert first.failed == []
    chunks_before = _consistent(engine)[0]
    good.write_bytes(b"oops")  # a bad save over a good file
    second = engine.ingest([docs])
    assert [p.path for p in second.failed] == [str(good.resolve())]
    assert "not a PDF" in second.failed[0].reason
    assert _consistent(engine)[0] == chunks_before
    assert any(h.source.endswith("report.pdf") for h in engine.search("Zen of Python beautiful", k=5))


def test_bad_files_are_reported_one_line_each_and_the_rest_indexed(tmp_path: Path, docs: Path) -> None:
    bad = FIXTURES / "pdf" / "bad"
    shutil.copytree(bad, docs / "bad")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (docs / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    report = _engine().ingest([docs])
    assert report.added == 3
    failed = {Path(p.path).name: p.reason for p in report.failed}
    for name in os.listdir(bad):
        if name.endswith(".pdf") and "empty-password" not in name:
            assert name in failed, f"{name} was not reported"
    assert failed["binary.txt"] == "binary file, not text"
    assert "symlink" in failed["dangling.md"]
    assert all("\n" not in reason for reason in failed.values())


def test_changing_the_chunk_size_rechunks_everything(docs: Path) -> None:
    _engine().ingest([docs])
    report = _engine(ingest__chunk_tokens=20).ingest([docs])
    assert report.updated == 3
    engine = _engine(ingest__chunk_tokens=20)
    assert _consistent(engine)[1] == 3


def test_an_index_refuses_a_different_embedder(docs: Path, request: pytest.FixtureRequest) -> None:
    request.addfinalizer(factory.register("hash2", lambda model, settings: HashEmbedder(provider="hash2")).undo)
    engine = _engine()
    engine.ingest([docs])
    with pytest.raises(EmbedderMismatchError, match="built with embedder 'hash:v1', not 'hash2:v1'"):
        Engine().ingest([docs], embedder="hash2")
    # Without a request, an existing index keeps its own embedder.
    assert Engine().ingest([docs]).unchanged == 3


def test_the_next_window_is_chunked_while_the_model_embeds_this_one(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The model must not wait at each window boundary for the next files to be chunked."""
    import threading

    class Watching(HashEmbedder):
        def __init__(self) -> None:
            super().__init__(provider="watching")
            self.embedding_started = threading.Event()
            self.counted_elsewhere = threading.Event()
            self.counts = 0

        def count_tokens(self, texts):
            self.counts += 1
            # Two calls a file: by the 30th file the first window (64 chunks) is full.  With
            # the overlap, this file is chunked while that window is embedded.
            if self.counts == 60 and self.embedding_started.wait(timeout=10):
                self.counted_elsewhere.set()
            return super().count_tokens(texts)

        def embed_batch(self, texts):
            if not self.calls:
                self.embedding_started.set()
                self.overlapped = self.counted_elsewhere.wait(timeout=10)
            return super().embed_batch(texts)

    watching = Watching()
    request.addfinalizer(factory.register("watching", lambda model, settings: watching).undo)
    folder = _many_docs(tmp_path / "many")
    report = Engine(embedding__embedder="watching").ingest([folder])
    assert (report.added, report.failed, report.interrupted) == (40, [], None)
    assert report.chunks_total > 64  # more than the first window
    assert watching.overlapped, "nothing was chunked while the first window was embedded"
    assert _consistent(Engine(embedding__embedder="watching")) == (report.chunks_total, 40)


def test_the_next_window_starts_while_this_ones_last_batch_runs(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """At a window's end the free core takes the next window's first batch, and a text in
    both windows, still being embedded, is embedded once and stored for both files."""
    import threading

    shared = "The shared paragraph, longer than any other in the first window, repeated later."

    class SideBySide(HashEmbedder):
        batch_size, concurrency = 1, 2

        def __init__(self) -> None:
            super().__init__(provider="sidebyside")
            self.second_window_started = threading.Event()
            self.overlapped: bool | None = None

        def embed_batch(self, texts):
            if any("second" in t for t in texts):
                self.second_window_started.set()
            if shared in texts:
                self.overlapped = self.second_window_started.wait(timeout=10)
            return super().embed_batch(texts)

    embedder = SideBySide()
    request.addfinalizer(factory.register("sidebyside", lambda model, settings: embedder).undo)
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(63):  # the first window: 64 one-chunk files, the shared text the longest
        (folder / f"a{i:02d}.txt").write_text(f"first note {i}\n", encoding="utf-8")
    (folder / "a63.txt").write_text(shared + "\n", encoding="utf-8")
    for i in range(20):
        (folder / f"b{i:02d}.txt").write_text(f"second note {i}\n", encoding="utf-8")
    (folder / "b20.txt").write_text(shared + "\n", encoding="utf-8")

    engine = Engine(embedding__embedder="sidebyside")
    report = engine.ingest([folder])
    assert (report.added, report.failed, report.interrupted) == (85, [], None)
    assert embedder.overlapped, "the model waited for the first window to end"
    assert sum(texts.count(shared) for texts in embedder.calls) == 1
    assert report.embedded == 84
    assert {h.source for h in engine.search("shared paragraph repeated", k=2)} == {
        str(folder / "a63.txt"),
        str(folder / "b20.txt"),
    }
    assert _consistent(engine) == (85, 85)


def test_only_the_last_batches_rows_are_written_after_the_model_is_done(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Vectors are written in big batches (Chroma's cost per call), but once the last
    window's last batches are running, what is buffered is written, not held for after them."""
    import threading

    from rag.store.index import Index

    class LastWaits(HashEmbedder):
        batch_size, concurrency = 4, 2

        def __init__(self) -> None:
            super().__init__(provider="lastwaits")
            self.written = threading.Event()
            self.overlapped: bool | None = None

        def embed_batch(self, texts):
            vectors = super().embed_batch(texts)
            if "note number 39" in texts:  # the last batch (equal lengths keep file order)
                self.overlapped = self.written.wait(timeout=10)
            return vectors

    embedder = LastWaits()
    request.addfinalizer(factory.register("lastwaits", lambda model, settings: embedder).undo)
    writes: list[int] = []
    real_write = Index.write_vectors

    def write(self, chunks, vectors, files) -> None:
        writes.append(len(chunks))
        embedder.written.set()
        real_write(self, chunks, vectors, files)

    monkeypatch.setattr(Index, "write_vectors", write)
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(40):  # one window, well under a write's size
        (folder / f"n{i:02d}.txt").write_text(f"note number {i}\n", encoding="utf-8")
    report = Engine(embedding__embedder="lastwaits").ingest([folder])
    assert (report.added, report.chunks_total, len(embedder.calls)) == (40, 40, 10)
    assert embedder.overlapped, "nothing was written until the model was done"
    # Left for after the model: the batch finished but not yet handed over, and the last one.
    assert sum(writes) == 40 and writes[-1] <= 2 * LastWaits.batch_size


# --- interrupted and concurrent runs --------------------------------------------------------

_SLOW_INGEST = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.helpers import register_slow
from rag import Engine

PAUSE_AFTER = int(os.environ["PAUSE_AFTER_BATCHES"])
PAUSED, GO = Path(os.environ["PAUSED_FILE"]), Path(os.environ["GO_FILE"])

def pause(batches):
    if batches == PAUSE_AFTER:
        # Hold mid-ingest, the earlier batches stored, until the test has acted (a signal,
        # or the GO file): the test never races the ingest.
        PAUSED.touch()
        while not GO.exists():
            time.sleep(0.01)

register_slow(pause)
report = Engine(embedding__embedder="slow", store__lock_timeout=float(os.environ.get("LOCK_TIMEOUT", "0"))).ingest(
    [sys.argv[1]]
)
print("DONE", report.chunks_total, flush=True)
"""


def _many_docs(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sentences = " ".join(f"Document {i} sentence {j} talks about topic{i} and item{j}." for j in range(12))
        (root / f"doc{i:03d}.txt").write_text(sentences + "\n", encoding="utf-8")
    return root


class SlowIngest:
    """``rag ingest`` in a subprocess whose embedder holds after ``pause_after`` batches until ``go()``."""

    def __init__(self, folder: Path, signals: Path, *, pause_after: int = -1, lock_timeout: float = 0) -> None:
        signals.mkdir(parents=True, exist_ok=True)
        self.paused, self._go = signals / "paused", signals / "go"
        script = _SLOW_INGEST.format(root=str(Path(__file__).resolve().parents[2]))
        env = {
            **os.environ,
            "PAUSE_AFTER_BATCHES": str(pause_after),
            "PAUSED_FILE": str(self.paused),
            "GO_FILE": str(self._go),
            "LOCK_TIMEOUT": str(lock_timeout),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), str(folder)],
            env=env,
            preexec_fn=deliver_ctrl_c,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_until_paused(self, timeout: float = 120) -> None:
        """Return once the ingest holds mid-way (its embedder wrote the file)."""
        deadline = time.monotonic() + timeout
        while not self.paused.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"the ingest ended before its pause: {self.process.communicate()}")
            assert time.monotonic() < deadline, "the ingest never reached its pause"
            time.sleep(0.02)

    def go(self) -> None:
        self._go.touch()


@pytest.mark.parametrize(
    ("sig", "after"),
    [(signal.SIGKILL, 2), (signal.SIGKILL, 10), (signal.SIGKILL, 19), (signal.SIGINT, 10)],
    ids=["kill-9-early", "kill-9", "kill-9-late", "ctrl-c"],
)
def test_interrupted_ingest_is_repaired_without_reembedding(
    tmp_path: Path,
    isolated: Path,
    sig: int,
    after: int,
    request: pytest.FixtureRequest,
) -> None:
    """``after``: embedding batches (of four texts) stored before the ingest holds and is signalled."""
    folder = _many_docs(tmp_path / "many")
    ingest = SlowIngest(folder, tmp_path / "signals", pause_after=after)
    ingest.wait_until_paused()  # ``after`` batches embedded and stored, the next one held
    ingest.process.send_signal(sig)
    ingest.process.wait(timeout=60)
    assert ingest.process.returncode != 0

    engine = _engine(embedding__embedder="slow")
    request.addfinalizer(factory.register("slow", lambda model, settings: HashEmbedder(provider="slow")).undo)
    cached_before = engine.store.embedding_cache().count()
    assert after <= cached_before <= 4 * after  # batches of up to four texts (fewer at a window's end)
    report = engine.ingest([folder])
    assert report.failed == []
    # Everything embedded before the kill is reused, never embedded again: the cache grew by
    # exactly what this run embedded.  (Files whose window was committed before the kill
    # are simply unchanged now.)
    assert report.embedded == engine.store.embedding_cache().count() - cached_before
    assert _embedder(engine).texts_embedded == report.embedded
    chunks, files = _consistent(engine)
    assert files == 40
    assert chunks == report.chunks_total
    # Every document's chunks are there exactly once.
    index = engine.open_index()
    for i in range(40):
        path = str((folder / f"doc{i:03d}.txt").resolve())
        positions = [c.position for c in index.chunks_of(path)]
        assert positions == list(range(len(positions))) and positions


def test_a_vector_write_that_fails_stops_the_run_and_the_next_run_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.ingest.pipeline import _VectorWriter
    from rag.store.index import Index

    folder = _many_docs(tmp_path / "many")
    monkeypatch.setattr(_VectorWriter, "size", 8)  # many writes, each in the writer thread
    writes: list[int] = []
    real_write = Index.write_vectors

    def failing_write(self, chunks, vectors, files) -> None:
        writes.append(len(chunks))
        if len(writes) == 3:
            raise StoreError("Chroma at test: disk full")
        real_write(self, chunks, vectors, files)

    monkeypatch.setattr(Index, "write_vectors", failing_write)
    engine = _engine()
    report = engine.ingest([folder])
    assert report.interrupted == "Chroma at test: disk full"
    assert report.added == 0 and report.chunks_total == 0  # the window's files never went live
    assert engine.open_index().file_count() == 0

    monkeypatch.setattr(Index, "write_vectors", real_write)
    paid_for = engine.store.embedding_cache().count()
    again = _engine().ingest([folder])
    assert (again.added, again.failed, again.interrupted) == (40, [], None)
    assert again.repaired > 0  # the pending rows and vectors of the failed run were cleared
    assert paid_for > 0 and again.from_cache == paid_for  # nothing paid for is embedded twice
    assert again.from_cache + again.embedded == again.chunks_total
    chunks, files = _consistent(engine)
    assert (chunks, files) == (again.chunks_total, 40)


def test_a_second_writer_waits_or_stops_with_a_clear_message(
    tmp_path: Path, isolated: Path, request: pytest.FixtureRequest
) -> None:
    folder = _many_docs(tmp_path / "many", n=20)
    first = SlowIngest(folder, tmp_path / "first", pause_after=1)
    first.wait_until_paused()  # it holds the write lock, mid-ingest
    request.addfinalizer(factory.register("slow", lambda model, settings: HashEmbedder(provider="slow")).undo)
    with pytest.raises(IndexLockedError, match="being written by another rag process"):
        Engine(embedding__embedder="slow", store__lock_timeout=0.2).ingest([folder])
    # A patient second writer waits its turn and then finds nothing left to do.
    second = SlowIngest(folder, tmp_path / "second", lock_timeout=120)
    first.go()
    out_first, err_first = first.process.communicate(timeout=120)
    out_second, err_second = second.process.communicate(timeout=120)
    assert first.process.returncode == 0, err_first
    assert second.process.returncode == 0, err_second
    assert out_first.split()[-1] == out_second.split()[-1]
    engine = Engine()
    assert _consistent(engine)[1] == 20
