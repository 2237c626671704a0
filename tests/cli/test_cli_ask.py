"""``rag ask`` end to end through the CLI, on the ``hash`` test embedder (no model, no key)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import prompts
from tests.conftest import Cli
from tests.openai_server import openai_server


@pytest.fixture
def indexed(docs: Path, cli: Cli) -> Path:
    code, _, err = cli("ingest", str(docs), "--embedder", "hash")
    assert code == 0, err
    return docs


QUESTION = "Which volcano in Sicily is one of the most active in Europe?"


def test_json_has_the_documented_shape(indexed: Path, cli: Cli) -> None:
    code, out, err = cli("ask", QUESTION, "--llm", "none", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"question", "answer", "refused", "citations", "model", "usage"} <= set(data)
    assert data["question"] == QUESTION and data["refused"] is False and data["model"] == "extractive"
    assert "Etna" in data["answer"]
    citation = data["citations"][0]
    assert set(citation) == {"n", "source", "page", "chunk_id", "score", "heading", "location", "attributed"}
    assert citation["source"].endswith("volcanoes.txt") and f"[{citation['n']}]" in data["answer"]
    assert "context" not in data


def test_json_with_show_context_includes_the_context(indexed: Path, cli: Cli) -> None:
    code, out, _ = cli("ask", QUESTION, "--llm", "none", "--json", "--show-context", "-k", "2")
    data = json.loads(out)
    assert code == 0 and len(data["context"]) == 2 and "text" in data["context"][0]


def test_extractive_answer_says_no_llm_and_lists_cited_sources(indexed: Path, cli: Cli) -> None:
    code, out, err = cli("ask", QUESTION)  # auto without a key: extractive
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"({prompts.EXTRACTIVE_LABEL})"
    assert "Mount Etna" in lines[1]
    sources = out[out.index("Sources") :]
    assert "volcanoes.txt" in sources and "bees.md" not in sources


def test_show_context_prints_what_was_given(indexed: Path, cli: Cli) -> None:
    code, out, err = cli("ask", QUESTION, "--llm", "none", "--show-context", "-k", "3")
    assert code == 0
    assert "context" in err and "[1]" in err and "[3]" in err and "Mount Etna" in err
    assert "context" not in out  # stdout stays the answer


def test_declines_below_the_min_score(indexed: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_MIN_SCORE", "0.99")
    code, out, _ = cli("ask", QUESTION, "--llm", "none", "--json")
    data = json.loads(out)
    assert code == 0 and data["refused"] is True and data["answer"] == prompts.REFUSAL
    assert data["citations"] == []


def test_no_index_says_to_ingest_first(cli: Cli) -> None:
    code, out, err = cli("ask", QUESTION)
    assert code == 1 and out == ""
    assert err.startswith("error: no index 'default'") and "run `rag ingest PATH` first" in err
    assert err.count("\n") == 1


def test_empty_index_declines_and_says_to_ingest(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "empty").mkdir()
    assert cli("ingest", str(tmp_path / "empty"), "--embedder", "hash")[0] == 0
    code, out, _ = cli("ask", QUESTION, "--json")
    data = json.loads(out)
    assert code == 0 and data["refused"] is True and "run `rag ingest PATH` first" in data["answer"]
    code, out, _ = cli("ask", QUESTION)
    assert code == 0 and "run `rag ingest PATH` first" in out


def test_unknown_llm_is_a_usage_error(indexed: Path, cli: Cli) -> None:
    code, _, err = cli("ask", QUESTION, "--llm", "claude")
    assert code == 2 and "use auto, openai, local or none" in err


def test_llm_json_reports_usage_and_no_stream_prints_once(
    indexed: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    with openai_server() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", str(server.api_key))
        server.reply("Mount Etna [1].", "Mount Etna [1].")
        code, out, err = cli("ask", QUESTION, "--json")
        assert code == 0, err
        data = json.loads(out)
        assert (data["answerer"], data["model"], data["answer"]) == ("llm", "gpt-4o-mini", "Mount Etna [1].")
        usage_keys = {"requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"}
        assert usage_keys <= set(data["usage"])
        assert server.requests_to("/chat/completions")[0].body.get("stream") is not True

        code, out, _ = cli("ask", QUESTION, "--no-stream")
        assert code == 0 and out.count("Mount Etna [1].") == 1 and "Sources" in out
