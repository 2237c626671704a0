"""Hermetic tests: every test gets its own RAG_HOME, no API keys, and no user config.

A tiny deterministic embedder (``hash``) is registered for tests of the pipeline's logic,
where the real model would only add minutes; tests of retrieval quality and the default
setup use the real local model.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.embed import factory
from rag.embed.base import Embedder
from rag.home import Store
from rag.settings import Settings
from tests.openai_server import FakeOpenAI, openai_server
from tests.sample_docs import write_sample_docs
from tests.serve_process import offline_server  # noqa: F401  (a fixture: a real `rag serve` per module)

FIXTURES = Path(__file__).parent / "fixtures"
#: The key the fake OpenAI server expects; distinctive, so tests can show it never leaks.
OPENAI_TEST_KEY = "sk-proj-SECRETkey0123456789abcdefXYZ"


def deliver_ctrl_c() -> None:
    """``preexec_fn`` for a child a test sends Ctrl-C: undo an inherited SIG_IGN.

    A shell starts background jobs (``.ci/run &``) with SIGINT ignored, their children
    inherit that, and Python installs no KeyboardInterrupt handler when it starts with
    SIGINT ignored: the signal would never arrive.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class HashEmbedder(Embedder):
    """Bag of hashed words: texts sharing words get similar vectors.  Counts its calls."""

    dimension = 64
    max_input_tokens = 120
    default_chunk_tokens = 60
    batch_size = 16

    def __init__(self, model: str = "", provider: str = "hash") -> None:
        self.name = f"{provider}:{model or 'v1'}"
        self.calls: list[list[str]] = []

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            out[row, 0] += 1e-3  # empty text still gets a unit vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]

    @property
    def texts_embedded(self) -> int:
        return sum(len(c) for c in self.calls)


factory.register("hash", lambda model, settings: HashEmbedder(model))

_ISOLATED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point RAG_HOME at a temporary folder and drop keys and user settings."""
    for name in list(os.environ):
        if name.startswith("RAG_") or name in _ISOLATED_ENV:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "rag-home"
    monkeypatch.setenv("RAG_HOME", str(home))
    monkeypatch.setenv("RAG_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    # A .env in the developer's checkout must not leak into tests.
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture(autouse=True)
def stores_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every ``Store`` (so every ``Engine``) a test opened and left open.

    Each holds SQLite connections and Chroma's files; left to the garbage collector, the
    suite's process held over a thousand descriptors, more than ``select()`` can watch.
    Stores of module-scoped fixtures are made before this runs, and stay open.
    """
    opened: list[Store] = []
    init = Store.__init__

    def tracked(self: Store, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(Store, "__init__", tracked)
    yield
    for store in opened:
        store.close()


@pytest.fixture
def settings(isolated: Path) -> Settings:
    return Settings.load()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A small folder of text and Markdown files about distinct topics."""
    return write_sample_docs(tmp_path / "docs")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """The fake OpenAI server (tests/openai_server.py), for this test alone."""
    with openai_server(api_key=OPENAI_TEST_KEY) as server:
        yield server


@pytest.fixture
def openai_env(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The fake server configured as rag's OpenAI (no retries, so faults surface at once)."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", str(fake_openai.api_key))
    monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "0")
    return fake_openai


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``rag ARGS`` in-process through its real entry point: (exit status, stdout, stderr)."""
    from rag.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["rag", *args])
        with pytest.raises(SystemExit) as info:
            main()
        captured = capsys.readouterr()
        return int(info.value.code or 0), captured.out, captured.err

    return run


def rag_on_terminal(*args: str, **options: Any) -> Any:
    """``python -m rag ARGS`` on a pseudo-terminal (a ``pexpect.spawn``).

    It watches the terminal with poll(), not select(): by the time a long suite gets here
    the test process may hold more than 1,024 file descriptors, which select() cannot watch
    ("filedescriptor out of range in select()").
    """
    import pexpect

    return pexpect.spawn(sys.executable, ["-m", "rag", *args], encoding="utf-8", use_poll=True, **options)
