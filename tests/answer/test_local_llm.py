"""``--llm local`` without a model: choosing the model, sharing a running server, and the
one-line errors.  (Serving a real GGUF is tests/answer/test_llm_real.py's.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rag.answer import local_llm, registry
from rag.errors import ProviderConnectionError
from rag.settings import Settings
from tests.conftest import Cli
from tests.openai_server import FakeOpenAI


def test_a_missing_model_file_is_a_one_line_usage_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LOCAL_MODEL", "/nowhere/model.gguf")
    code, _, err = cli("ask", "Where is Etna?", "--llm", "local")
    assert code == 2 and err.count("\n") == 1
    assert "RAG_LOCAL_MODEL: no such file: /nowhere/model.gguf" in err or "llama.cpp's server" in err


def test_status_says_which_model_local_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("RAG_LOCAL_MODEL", str(gguf))
    monkeypatch.setenv("RAG_LLM", "local")
    settings = Settings.load()
    assert local_model_line(settings) == f"{gguf} (RAG_LOCAL_MODEL)"
    assert local_llm.model_file(settings) == gguf


def local_model_line(settings: Settings) -> str:
    return registry.describe(settings)["local_model"]


def test_a_running_server_is_found_and_shared(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """What a second rag process sees: the state file of a live server that answers."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    port = int(fake_openai.base_url.rsplit(":", 1)[1].split("/")[0])
    state = local_llm._state_path(tmp_path, gguf)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"pid": os.getpid(), "port": port, "model": str(gguf), "n_ctx": 4096}))
    fake_openai.api_key = None
    assert local_llm.ensure_server(tmp_path, gguf, n_ctx=2048) == f"http://127.0.0.1:{port}/v1"
    assert not (tmp_path / "llm" / f"{state.stem}.log").exists(), "a second server was started"


def test_a_server_that_cannot_start_is_one_error_with_its_reason(tmp_path: Path) -> None:
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a model")
    state = local_llm._state_path(tmp_path, gguf)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"pid": 2**22 + 17, "port": 9, "model": str(gguf), "n_ctx": 4096}))  # a dead one
    with pytest.raises(ProviderConnectionError, match=r"local model server for broken.gguf (exited|did not start)"):
        local_llm.ensure_server(tmp_path, gguf, n_ctx=512, timeout=120)
    assert not state.exists()


def test_the_local_servers_threads_and_idle_time_are_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[llm]\nlocal_threads = 2\n", encoding="utf-8")
    settings = Settings.load(environ={"RAG_LOCAL_IDLE": "60"}, config_file=config)
    assert (settings.llm.local_threads, settings.llm.local_idle) == (2, 60.0)
    assert Settings.load(environ={}).llm.local_idle == local_llm.IDLE_SECONDS
