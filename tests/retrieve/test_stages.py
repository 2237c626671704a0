"""The retrieval stage slot: a stage named in ``RAG_RERANK`` sees every search, from
``rag search``, ``ask``, ``rag eval`` and a running server, with more candidates than k,
and decides what the top k are before they are read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import openai
import pytest

from rag.engine import Engine
from rag.errors import ConfigError
from rag.eval.beir import load_beir
from rag.eval.runner import run_eval
from rag.retrieve import stages
from rag.retrieve.search import Retriever
from rag.settings import Settings
from tests.serve_process import rag_cli, rag_server, serve_env, write_docs

FIXTURES = Path(__file__).parents[1] / "fixtures"

# A stage as a user would write one: a module with a builder, here recording what it saw.
STAGE_MODULE = """
import json, os

def build(settings):
    def reverse(candidates):
        with open(os.environ["RAG_TEST_SEEN"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"query": candidates.query, "candidates": len(candidates.ranked),
                                  "k": candidates.k}) + "\\n")
        return list(reversed(candidates.ranked))
    return reverse
"""


@pytest.fixture
def seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``reverse_stage:build`` importable here and in child processes; what it saw goes to the returned file."""
    (tmp_path / "stagemod").mkdir()
    (tmp_path / "stagemod" / "reverse_stage.py").write_text(STAGE_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "stagemod"))
    path = tmp_path / "seen.jsonl"
    monkeypatch.setenv("RAG_TEST_SEEN", str(path))
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_a_registered_stage_reorders_search_from_more_than_k_candidates(docs: Path, seen: Path) -> None:
    from reverse_stage import build

    engine = Engine(index="staged")
    engine.ingest(docs, embedder="hash")
    query = "Stockton Darlington railway"
    pool = Retriever(engine.open_index(), engine.embedder()).rank(query, 100)
    plain = engine.search(query, 3)
    assert [h.chunk_id for h in plain] == [i for i, _ in pool[:3]]
    with stages.register("reverse", build):
        staged = Engine(index="staged", retrieval__rerank="reverse").search(query, 3)
    assert [h.chunk_id for h in staged] == [i for i, _ in reversed(pool)][:3]
    assert all(h.text for h in staged)  # hydrated after the stage
    assert read(seen) == [{"query": query, "candidates": len(pool), "k": 3}]
    assert len(pool) > 3
    # Undone: the name is gone, and naming it is a one-line configuration error.
    with pytest.raises(ConfigError, match="unknown RAG_RERANK stage 'reverse'"):
        Engine(index="staged", retrieval__rerank="reverse").search(query, 3)


def test_ask_and_chat_pass_through_the_stage(docs: Path, seen: Path) -> None:
    engine = Engine(index="staged", retrieval__rerank="reverse_stage:build")
    engine.ingest(docs, embedder="hash")
    engine.ask("Which volcano in Sicily is very active?")
    engine.chat().ask("What did the Stockton and Darlington railway carry?")
    queries = [s["query"] for s in read(seen)]
    assert queries[0] == "Which volcano in Sicily is very active?"
    assert "What did the Stockton and Darlington railway carry?" in queries


def test_rag_search_cli_passes_through_the_stage(
    docs: Path, seen: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("ingest", str(docs), "--embedder", "hash")[0] == 0
    monkeypatch.setenv("RAG_RERANK", "reverse_stage:build")
    code, output, _ = cli("search", "honey bees", "-k", "2", "--json")
    assert code == 0, output
    assert read(seen)[0]["query"] == "honey bees" and read(seen)[0]["k"] == 2


def test_eval_passes_through_the_stage(settings: Settings, seen: Path) -> None:
    dataset = load_beir(FIXTURES / "beir-mini")
    plain = run_eval(dataset, settings, mode="keyword", embedder="hash")
    assert not seen.exists()
    staged = run_eval(
        dataset, settings.with_options(retrieval__rerank="reverse_stage:build"), mode="keyword", embedder="hash"
    )
    assert set(dataset.queries.values()) == {s["query"] for s in read(seen)}
    assert staged.metrics["ndcg@10"] < plain.metrics["ndcg@10"]


def test_an_unloadable_stage_is_a_one_line_config_error(docs: Path) -> None:
    engine = Engine(index="staged", retrieval__rerank="no_such_module_here:build")
    engine.ingest(docs, embedder="hash")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        engine.search("honey bees")


@pytest.mark.slow
def test_the_server_passes_search_ask_and_v1_through_the_stage(tmp_path: Path, seen: Path) -> None:
    path = os.pathsep.join([str(tmp_path / "stagemod"), os.environ.get("PYTHONPATH", "")])
    env = serve_env(
        tmp_path / "home", RAG_LLM="none", RAG_RERANK="reverse_stage:build", RAG_TEST_SEEN=str(seen), PYTHONPATH=path
    )
    ingest = rag_cli(env, "ingest", str(write_docs(tmp_path / "served")))
    assert ingest.returncode == 0, ingest.stderr
    with rag_server(env) as server, server.client() as http:
        hits = http.post("/api/v1/search", json={"query": "honey bees", "k": 2}).json()["results"]
        http.post("/api/v1/ask", json={"question": "Which volcano in Sicily is very active?"}).raise_for_status()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        client.chat.completions.create(model="rag", messages=[{"role": "user", "content": "Who pollinates flowers?"}])
    records = read(seen)
    assert [r["query"] for r in records] == [
        "honey bees",
        "Which volcano in Sicily is very active?",
        "Who pollinates flowers?",
    ]
    assert records[0]["k"] == 2 and records[0]["candidates"] > 2 and len(hits) == 2


def test_rerank_lists_stages_in_order_and_the_mmr_switch_adds_or_drops_mmr(settings: Settings) -> None:
    listed = settings.with_options(retrieval__rerank="reverse_stage:build, mmr")
    assert stages.chosen(listed) == ["reverse_stage:build", "mmr"]
    assert stages.chosen(listed, mmr=False) == ["reverse_stage:build"]
    assert stages.chosen(settings.with_options(retrieval__mmr=True)) == ["mmr"]
    assert stages.chosen(settings.with_options(retrieval__mmr=True), mmr=False) == []
    assert stages.chosen(settings) == [] and stages.build(settings) == []
