"""``rag chat`` and ``rag history`` as users run them: real processes, piped or on a terminal.

Two stores are built once per module: one with the real local embedder (offline cases,
``--llm none``) and one embedded through the fake OpenAI server (LLM cases).  Every case
runs ``python -m rag`` in a subprocess against them; the interactive ones drive a
pseudo-terminal with pexpect.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag import Engine
from rag.settings import Settings
from tests.conftest import Cli, deliver_ctrl_c, rag_on_terminal
from tests.openai_server import FakeOpenAI, openai_server, settings_for
from tests.sample_docs import write_sample_docs

TOPICS = {
    "golden_gate.txt": (
        "Tell me about the Golden Gate Bridge",
        "1937",
        "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait that connects "
        "San Francisco Bay to the Pacific Ocean. It links San Francisco to Marin County. The bridge was "
        "designed by Joseph Strauss and Charles Ellis. It opened to traffic on May 27, 1937.",
    ),
    "louvre.txt": (
        "What is the Louvre?",
        "1793",
        "The Louvre is the world's most visited art museum, on the Right Bank of the Seine in Paris. It "
        "houses the Mona Lisa and the Venus de Milo. The building was a royal palace for centuries. It "
        "opened as a public museum on 10 August 1793.",
    ),
    "railway.txt": (
        "Tell me about the Stockton and Darlington Railway",
        "1825",
        "The Stockton and Darlington Railway was the world's first public railway to use steam "
        "locomotives. It connected collieries near Shildon with Stockton-on-Tees and Darlington in "
        "north-east England. It opened on 27 September 1825.",
    ),
    "eiffel.txt": (
        "What is the Eiffel Tower?",
        "1889",
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, named after the "
        "engineer Gustave Eiffel, whose company designed and built it for the World's Fair. It opened to "
        "the public on 31 March 1889.",
    ),
}
FOLLOW_UP = "and when did it open?"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Store:
    """An ingested store, and the environment a ``rag`` subprocess needs to use it."""

    home: Path
    env: dict[str, str]
    cwd: Path
    server: FakeOpenAI | None = None

    def rag(self, *args: str, stdin: str = "", timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rag", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **env},
            cwd=self.cwd,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "rag", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )


def _write_docs(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, (_, _, text) in TOPICS.items():
        (root / name).write_text(text + "\n", encoding="utf-8")
    # Two of the shared sample files (not trains.txt, which would answer the railway topic too).
    return write_sample_docs(root, ["volcanoes.txt", "bees.md"])


def _clean_env(home: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_"))}
    env.update(
        RAG_HOME=str(home),
        RAG_CONFIG=str(tmp / "no-config.toml"),
        XDG_CONFIG_HOME=str(tmp / "xdg"),
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The documents, ingested with the real local embedder."""
    tmp = tmp_path_factory.mktemp("chat-offline")
    docs = _write_docs(tmp / "docs")
    settings = Settings.load({"store.home": tmp / "home"}, environ={}, config_file=Path(os.devnull), dotenv=None)
    with Engine(settings=settings) as engine:
        assert engine.ingest(docs, embedder="local").ok
    return Store(tmp / "home", _clean_env(tmp / "home", tmp), tmp)


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The documents, embedded through the fake OpenAI server, which also writes the answers."""
    tmp = tmp_path_factory.mktemp("chat-llm")
    docs = _write_docs(tmp / "docs")
    with openai_server() as fake_llm:
        with Engine(settings=settings_for(fake_llm, store__home=tmp / "home")) as engine:
            assert engine.ingest(docs, embedder="openai").ok
        env = _clean_env(tmp / "home", tmp)
        env.update(
            OPENAI_BASE_URL=fake_llm.base_url,
            OPENAI_API_KEY=str(fake_llm.api_key),
            RAG_OPENAI_MAX_RETRIES="0",
            RAG_MIN_SCORE="-1",
        )
        yield Store(tmp / "home", env, tmp, fake_llm)


@pytest.fixture
def fake_llm(llm: Store) -> Iterator[FakeOpenAI]:
    assert llm.server is not None
    llm.server.replies.clear()
    yield llm.server
    llm.server.open_gates()
    llm.server.replies.clear()


@pytest.fixture
def rag_cli(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """``rag ARGS`` in this process, on a module store (for the quick ``history`` commands)."""

    def run(store: Store, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("RAG_HOME", str(store.home))
        return cli(*args)

    return run


def _chat_calls(fake_llm: FakeOpenAI, since: int = 0) -> list[dict[str, Any]]:
    return [r.body for r in fake_llm.requests_to("/chat/completions")[since:]]


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# --- offline: the real local model, --llm none ------------------------------------------------


def test_a_follow_up_retrieves_what_the_conversation_is_about(offline: Store) -> None:
    lines = []
    for first, _, _ in TOPICS.values():
        lines += [first, FOLLOW_UP, "/reset"]
    result = offline.rag("chat", "--llm", "none", "--json", "--show-context", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    answers = [d for d in _json_lines(result.stdout) if "answer" in d]
    assert len(answers) == 2 * len(TOPICS)
    for name, follow in zip(TOPICS, answers[1::2], strict=True):
        # The same words, four different right chunks: only the conversation can tell them apart.
        assert follow["question"] == FOLLOW_UP and not follow["refused"]
        assert name.split(".")[0].split("_")[0] in follow["rewritten_question"].lower().replace(" ", "_")
        assert follow["context"][0]["source"].endswith(name), follow["rewritten_question"]


def test_piped_output_is_plain_answers_with_sources(offline: Store, rag_cli: Cli) -> None:
    result = offline.rag("chat", "--llm", "none", stdin="What is the Louvre?\n\nexit\nnot asked\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not ANSI.search(out) and ">" not in out  # no colour, no prompt
    assert "Louvre" in out and "Sources:" in out and "louvre.txt" in out
    assert out.count("Sources:") == 1  # exit stopped it
    name = re.search(r"session (chat-\S+)", result.stderr)
    assert name, result.stderr  # an unnamed session is saved under a name that is shown
    code, out, _ = rag_cli(offline, "history", "--json")
    assert code == 0 and name.group(1) in {s["name"] for s in json.loads(out)["sessions"]}


def test_no_index_says_to_ingest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "empty", _clean_env(tmp_path / "empty", tmp_path), tmp_path)
    result = store.rag("chat", "--llm", "none", stdin="hello?\n")
    assert result.returncode == 1 and result.stdout == ""
    assert "run `rag ingest PATH` first" in result.stderr


def test_usage_errors_exit_2(offline: Store) -> None:
    assert offline.rag("chat", "--llm", "claude", stdin="").returncode == 2
    assert offline.rag("chat", "--session", "../etc", "--llm", "none", stdin="").returncode == 2


# --- with an LLM: the fake OpenAI server --------------------------------------------------------


def test_a_session_survives_a_restart(llm: Store, fake_llm: FakeOpenAI, rag_cli: Cli) -> None:
    fake_llm.reply("Mount Etna [1].")
    first = llm.rag("chat", "--session", "etna", "--json", stdin="Which volcano in Sicily is very active?\n")
    assert first.returncode == 0, first.stderr

    since = len(fake_llm.requests_to("/chat/completions"))
    fake_llm.reply("How often does Mount Etna erupt?", "Frequently [1].")
    second = llm.rag("chat", "--session", "etna", "--json", stdin="how often does it erupt?\n")
    assert second.returncode == 0, second.stderr
    (answer,) = _json_lines(second.stdout)
    assert answer["session"] == "etna" and answer["rewritten_question"] == "How often does Mount Etna erupt?"
    rewrite, ask = _chat_calls(fake_llm, since)
    # The new process remembered the earlier turn: in the rewrite, and as history.
    assert "User: Which volcano in Sicily is very active?" in rewrite["messages"][1]["content"]
    assert "Last question: how often does it erupt?" in rewrite["messages"][1]["content"]
    assert ask["messages"][1]["content"] == "Which volcano in Sicily is very active?"
    assert ask["messages"][-1]["content"].rstrip().endswith("Question: how often does it erupt?")

    listed = json.loads(rag_cli(llm, "history", "--json")[1])["sessions"]
    (etna,) = [s for s in listed if s["name"] == "etna"]
    assert etna["index"] == "default" and etna["turns"] == 2 and etna["updated"] >= etna["created"]
    shown = json.loads(rag_cli(llm, "history", "show", "etna", "--json")[1])
    assert [t["question"] for t in shown["turns"]] == [
        "Which volcano in Sicily is very active?",
        "how often does it erupt?",
    ]
    assert shown["turns"][0]["citations"][0]["source"].endswith("volcanoes.txt")
    assert shown["turns"][1]["rewritten_question"] == "How often does Mount Etna erupt?"
    code, text, _ = rag_cli(llm, "history", "show", "etna")
    assert code == 0 and "how often does it erupt?" in text and "Frequently [1]." in text
    assert "volcanoes.txt" in text and "etna" in rag_cli(llm, "history")[1]

    assert rag_cli(llm, "history", "rm", "etna")[0] == 0
    code, _, err = rag_cli(llm, "history", "show", "etna")
    assert code == 1 and "no chat session 'etna'" in err


def test_concurrent_chats_keep_their_sessions_apart(llm: Store, fake_llm: FakeOpenAI, rag_cli: Cli) -> None:
    fake_llm.default_reply = "Bees pollinate flowering plants [1]."
    try:
        questions = {name: [f"{name} question {i} about bees" for i in range(4)] for name in ("left", "right")}
        procs = {name: llm.popen("chat", "--session", name, "--json", "--no-rewrite") for name in questions}
        outputs = {name: p.communicate("\n".join(questions[name]) + "\n", timeout=120) for name, p in procs.items()}
        for name, p in procs.items():
            assert p.returncode == 0, outputs[name][1]
        for name, asked in questions.items():
            shown = json.loads(rag_cli(llm, "history", "show", name, "--json")[1])
            assert [t["question"] for t in shown["turns"]] == asked
    finally:
        fake_llm.default_reply = "This is a fake answer."


# --- a terminal ---------------------------------------------------------------------------------


def test_interactive_chat_streams_stops_on_ctrl_c_and_knows_its_commands(
    llm: Store, fake_llm: FakeOpenAI, rag_cli: Cli
) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = rag_on_terminal(
        "chat",
        "--session",
        "tty",
        env={**llm.env, "TERM": "xterm"},
        cwd=str(llm.cwd),
        timeout=60,
        dimensions=(40, 200),
        preexec_fn=deliver_ctrl_c,
    )
    try:
        child.expect("session tty")
        child.expect_exact("> ")
        fake_llm.reply("Mount Etna is in Sicily [1].")
        child.sendline("Which volcano in Sicily is very active?")
        child.expect_exact("Mount Etna is in Sicily [1].")
        child.expect("Sources")
        child.expect("volcanoes.txt")
        child.expect_exact("> ")

        # An answer the server holds mid-stream: Ctrl-C stops it, the prompt comes back, the
        # chat goes on.  (Held, not slow: the test never races the stream.)
        held = fake_llm.gate_stream(after_deltas=5)
        fake_llm.reply("Tell me more about Mount Etna.", "Etna erupts often " * 60 + "[1].")
        child.sendline("tell me more")
        child.expect("↳ Tell me more about Mount Etna.")  # the rewrite, shown before the answer
        child.expect("Etna erupts often")
        assert held.wait_for(1)
        child.sendintr()
        child.expect_exact("(stopped)")
        child.expect_exact("> ")
        assert child.isalive()
        held.open()

        child.sendline("/sources")  # the stopped answer is not a turn: the first one's context
        child.expect_exact("[1] ")
        child.expect("Mount Etna in Sicily is one of the")
        child.expect_exact("> ")
        child.sendline("/help")
        child.expect("/reset")
        child.expect_exact("> ")
        child.sendline("/reset")
        child.expect_exact("(conversation cleared)")
        child.expect_exact("> ")

        child.sendintr()  # at the prompt: a new line, not an exit
        child.expect("Ctrl-C again")
        child.expect_exact("> ")
        assert child.isalive()
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert (llm.home / "chat_history").exists()  # readline history, for the next session
    shown = json.loads(rag_cli(llm, "history", "show", "tty", "--json")[1])
    assert shown["turns"] == []  # /reset cleared the saved turns too


def test_resuming_a_session_finds_its_index(
    docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, on the ``hash`` test embedder: ``--session`` alone is enough to resume."""
    import io

    from rag.cli.main import main

    def chat(stdin: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        monkeypatch.setattr(sys, "argv", ["rag", "chat", "--llm", "none", "--json", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main()
        captured = capsys.readouterr()
        return int(info.value.code or 0), _json_lines(captured.out), captured.err

    with Engine(index="notes") as engine:
        engine.ingest(docs, embedder="hash")
    code, (first,), err = chat("Where do honey bees live?\n", "--index", "notes", "--session", "bees")
    assert code == 0 and first["session"] == "bees", err
    code, (second,), err = chat("and who rules them?\n", "--session", "bees")
    assert code == 0, err
    assert second["session"] == "bees" and "bees" in second["rewritten_question"]
    code, _, err = chat("", "--index", "default", "--session", "bees")
    assert code == 1 and "run `rag ingest PATH` first" in err  # an index named on purpose is used
