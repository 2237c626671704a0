"""One ``Store`` serving many indexes and threads: shared models, usage as a value, the library API."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rag import Document, Filters, RagError, Store, Usage
from rag.chat.sessions import SessionNotFoundError
from rag.filetypes import FILE_TYPES, FileType, kinds
from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders import LoadOptions
from rag.store.manifest import Manifest
from tests.conftest import FIXTURES
from tests.openai_server import FakeOpenAI

README = Path(__file__).resolve().parents[2] / "README.md"


# --- usage under concurrency ---------------------------------------------------------------------


def _reply(body: dict[str, Any]) -> str:
    """A reply whose length depends on the conversation (its marker), so cross-billing would show."""
    marker = re.search(r"conv(\d+)x", str(body["messages"]))
    n = int(marker.group(1)) if marker else 0
    return "Mount Etna [1]." + " Indeed." * (n * 3 + 1)


def test_eight_conversations_on_one_store_are_billed_only_their_own_tokens(
    openai_env: FakeOpenAI, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_MIN_SCORE", "-1")
    openai_env.default_reply = _reply
    store = Store()
    engine = store.index("shared")
    engine.ingest(docs, embedder="hash")
    totals: dict[int, Usage] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def converse(n: int) -> None:
        try:
            chat = store.index("shared").chat(session=f"chat-{n}")
            start.wait(timeout=120)
            spent = Usage()
            for question in ("Which volcano is active in Sicily", "and how often does it erupt", "and where is it"):
                spent += chat.ask(f"{question} conv{n}x?").usage
            totals[n] = spent
            chat.close()
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)
            start.abort()  # the others stop waiting for this one

    threads = [threading.Thread(target=converse, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [e for e in errors if not isinstance(e, threading.BrokenBarrierError)], errors
    assert errors == []
    for n, spent in totals.items():
        reported = openai_env.usage_with(f"conv{n}x")
        assert reported["requests"] == 5  # three answers and two rewrites
        assert (spent.requests, spent.prompt_tokens, spent.completion_tokens) == (
            reported["requests"],
            reported["prompt_tokens"],
            reported["completion_tokens"],
        ), n
    # The index's totals are the sum of every conversation's, to the token.
    (row,) = engine.indexes()[0].usage
    everything = sum(totals.values(), Usage())
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (
        everything.requests,
        everything.prompt_tokens,
        everything.completion_tokens,
    )
    assert len(store.sessions().list(index="shared")) == 8


# --- shared models ---------------------------------------------------------------------------------


def test_three_indexes_in_one_store_load_the_local_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.embed import local

    loads: list[str] = []
    original = local._open

    def counting(precision: str) -> Any:  # reads the weights and builds the ONNX session
        loads.append(precision)
        return original(precision)

    monkeypatch.setattr(local, "_open", counting)
    store = Store()
    for name in ("alpha", "beta", "gamma"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.txt").write_text(f"The {name} report says the river floods every spring.\n")
        store.index(name).ingest(folder)
    for name in ("alpha", "beta", "gamma"):
        engine = store.index(name)
        assert engine.search("river floods")[0].source.endswith(f"{name}.txt")
        assert not engine.ask("When does the river flood?", llm="none").refused
    # Once per precision: on a VNNI CPU the indexes embed in int8 and the extractive answerer
    # scores sentences with the fp32 model (engine.py), so two loads; never one per index.
    assert sorted(loads) == sorted(set(loads)) and 1 <= len(loads) <= 2
    store.close()


# --- the loader table ----------------------------------------------------------------------------


def load_toy(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    """A toy format: one line per section, shouted."""
    lines = data.decode("utf-8").splitlines()
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    return LoadedDocument(
        path, "toy", [Section(line.upper(), offset=o) for line, o in zip(lines, offsets, strict=True)]
    )


def test_a_new_file_type_is_one_loader_and_one_line(docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (docs / "parrots.toy").write_text("parrots can mimic human speech\n")
    assert "toy" not in kinds()

    monkeypatch.setitem(FILE_TYPES, ".toy", FileType("toy", f"{__name__}:load_toy", isolate=False))  # the one line

    engine = Store().index("toys")
    report = engine.ingest(docs, embedder="hash")
    assert report.added == 4 and report.unsupported == []
    hits = engine.search("parrots mimic speech", filters=Filters(types=("toy",)))
    assert [h.source for h in hits] == [str(docs / "parrots.toy")] and hits[0].text == "PARROTS CAN MIMIC HUMAN SPEECH"
    assert {d.kind for d in engine.documents()} == {"text", "markdown", "toy"}
    assert "toy" in kinds()


# --- documents ------------------------------------------------------------------------------------


def test_documents_their_chunks_and_removing_them(docs: Path) -> None:
    engine = Store().index("docs")
    engine.ingest(docs, embedder="hash")
    documents = engine.documents()
    assert [Path(d.source).name for d in documents] == ["bees.md", "trains.txt", "volcanoes.txt"]
    assert all(re.fullmatch(r"[0-9a-f]{16}", d.id) for d in documents)
    assert [d.id for d in Store().index("docs").documents()] == [d.id for d in documents]  # stable
    volcanoes = documents[2]
    assert isinstance(volcanoes, Document) and volcanoes.kind == "text" and volcanoes.pages is None
    chunks = engine.chunks(volcanoes.id)
    text = Path(volcanoes.source).read_text()
    assert len(chunks) == volcanoes.chunks >= 1
    assert all(text[c.start : c.end] == c.text for c in chunks)

    assert engine.remove([volcanoes.id]) == {volcanoes.source: volcanoes.chunks}
    assert engine.remove([docs / "sub" / "trains.txt"]) == {str(docs / "sub" / "trains.txt"): 1}
    assert engine.remove(["/no/such/file.txt"]) == {}
    assert [Path(d.source).name for d in engine.documents()] == ["bees.md"]
    assert all(h.source.endswith("bees.md") for h in engine.search("volcano Etna railway"))
    index = engine.store.open_index("docs")
    assert index.vector_ids() == index.live_ids()  # removed from both halves, nothing left behind
    # The next ingest of the folder puts them back: they were removed, not excluded.
    assert engine.ingest(docs, embedder="hash").added == 2


def _open_files_under(folder: Path) -> list[str]:
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:  # closed between listing and reading
            continue
        if target.is_relative_to(folder):
            found.append(str(target))
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_closed_store_leaves_no_file_of_its_home_open(tmp_path: Path, docs: Path) -> None:
    # A notebook or server opens and closes stores for hours: Chroma's SQLite and HNSW
    # files (and the index in memory) must go with the store, not with the process.
    home = tmp_path / "home"
    with Store(home) as store:
        engine = store.index("docs")
        engine.ingest(docs, embedder="hash")
        assert engine.search("volcano")
        assert _open_files_under(home)
        damaged = store.layout.index_dir("damaged") / "index.db"
        damaged.parent.mkdir(parents=True)
        damaged.write_bytes(b"not a database" * 100)
        with pytest.raises(RagError, match="damaged"):
            store.index("damaged").search("volcano")  # fails after opening Chroma
    assert _open_files_under(home) == []


def _open_sockets() -> set[str]:
    """This process's TCP sockets, by inode.  Compared as sets: a socket another test leaked
    may be garbage-collected meanwhile, which a count would take for this test's.  TCP
    only: Chroma's runtime opens a socket pair of its own, once per process."""
    tcp = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError):
            tcp |= {f"socket:[{row.split()[9]}]" for row in Path(table).read_text().splitlines()[1:]}
    return {link for fd in Path("/proc/self/fd").iterdir() if (link := _readlink(fd)) in tcp}


def _readlink(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_closed_store_hangs_up_on_the_model_server(openai_env: FakeOpenAI, docs: Path) -> None:
    before = _open_sockets()  # the fake server's own listening socket is already open
    with Store() as store:
        engine = store.index("docs")
        engine.ingest(docs, embedder="hash")
        openai_env.reply("Mount Etna is an active volcano in Sicily.")  # an answer the sources support
        assert not engine.ask("Which volcano is in Sicily?", llm="openai").refused
        assert _open_sockets() - before  # a kept-alive connection, both of its ends in this process
    deadline = time.monotonic() + 5
    while _open_sockets() - before and time.monotonic() < deadline:
        time.sleep(0.05)  # the server's end closes when its handler sees the hang-up
    assert not _open_sockets() - before


# --- sessions ------------------------------------------------------------------------------------


def test_sessions_are_a_library_api(docs: Path) -> None:
    store = Store()
    assert store.sessions().list() == [] and not store.layout.sessions_path.exists()
    engine = store.index("docs")
    engine.ingest(docs, embedder="hash")
    with engine.chat(session="trip", llm="none") as chat:
        chat.ask("Which volcano is in Sicily?")
    sessions = store.sessions()
    assert [s.name for s in sessions.list()] == ["trip"] and sessions.list(index="other") == []
    session = sessions.get("trip")
    assert session.info.index == "docs" and [t.question for t in session.turns] == ["Which volcano is in Sicily?"]
    sessions.delete("trip")
    with pytest.raises(SessionNotFoundError):
        sessions.get("trip")
    with pytest.raises(SessionNotFoundError):
        sessions.delete("trip")


# --- readers and writers ---------------------------------------------------------------------------


def test_readers_never_wait_for_a_writer(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "index.db")
    in_transaction, release = threading.Event(), threading.Event()

    def writer() -> None:
        with manifest.transaction() as db:
            db.execute("INSERT INTO meta(key, value) VALUES ('x', '1')")
            in_transaction.set()
            release.wait()

    thread = threading.Thread(target=writer)
    thread.start()
    assert in_transaction.wait(timeout=60)
    read = threading.Thread(target=lambda: (manifest.chunk_count(), manifest.get_meta("x")))
    read.start()
    read.join(timeout=30)  # generous: a reader that waited would wait for ever, not 30 s
    blocked = read.is_alive()
    release.set()
    thread.join()
    read.join()
    assert not blocked
    assert manifest.get_meta("x") == 1  # and sees the write once it is committed
    manifest.close()


def test_threads_opening_a_new_sessions_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Eight chats started together on a new store each open sessions.db; turning a new
    # file to WAL takes a lock SQLite does not wait for, so some failed "database is locked".
    from rag.chat.sessions import SessionStore

    errors: list[BaseException] = []
    for trial in range(60):
        path = tmp_path / f"store{trial}" / "sessions.db"
        start = threading.Barrier(8)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait(timeout=60)
            try:
                SessionStore(path).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


# --- the README ----------------------------------------------------------------------------------


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None
    papers = tmp_path / "papers"
    shutil.copytree(FIXTURES / "pdf", papers, ignore=shutil.ignore_patterns("bad", "encrypted*", "*.md"))
    code = block.group(1).replace('"~/papers"', repr(str(papers)))
    assert str(papers) in code
    monkeypatch.setenv("RAG_EMBEDDER", "hash")  # the README's API, without the minutes of a real model
    source = "async def readme():\n" + textwrap.indent(code, "    ") + "    return locals()\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, str(README), "exec"), namespace)
    names = asyncio.run(namespace["readme"]())
    assert names["report"].added == len(list(papers.glob("*.pdf"))) > 0 and names["report"].failed == []
    assert all(h.source.endswith(".pdf") and 1 <= (h.page or 0) <= 3 for h in names["hits"])
    assert names["stream"].answer is not None
    assert len(names["chat"].turns) == 2
