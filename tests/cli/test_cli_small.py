"""Small things found by trying rag as a new user would (issue 14)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from rag.embed import factory
from rag.embed.local import NAMES
from rag.embed.quantize import default_precision
from rag.errors import UsageError
from rag.settings import Settings
from tests.conftest import Cli, HashEmbedder

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [[], ["ask"], ["ingest"], ["search"], ["chat"], ["status"]])
def test_help_shows_no_type_after_flags(cli: Cli, command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0 and "--help" in out
    assert "<bool>" not in out
    if command == ["ask"]:
        assert re.search(r"--top-k\s+-k\s+<int", out)  # options that take a value keep their type


def test_a_bare_embedding_model_name_is_an_openai_model_when_openai_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = Settings.load()
    assert factory.normalize("text-embedding-3-small", settings) == "openai:text-embedding-3-small"
    assert factory.normalize("local", settings) == NAMES[default_precision()[0]]


def test_a_provider_whose_model_name_claims_another_provider_is_refused(settings: Settings) -> None:
    # Recorded as "hash:v1", the index would be reopened with the hash provider's class.
    impostor = factory.register("impostor", lambda model, settings: HashEmbedder(provider="hash"))
    with impostor, pytest.raises(UsageError, match="must start with 'impostor:'"):
        factory.normalize("impostor", settings)
    with factory.register("honest", lambda model, settings: HashEmbedder(provider="honest")):
        assert factory.normalize("honest", settings) == "honest:v1"
    # Undone: the names are unknown again.
    with pytest.raises(UsageError, match="unknown embedder 'honest'"):
        factory.create("honest", settings)


def test_a_bare_embedding_model_name_without_openai_says_how_to_name_it(settings: Settings) -> None:
    with pytest.raises(UsageError, match=re.escape("openai:text-embedding-3-small")):
        factory.normalize("text-embedding-3-small", settings)


def test_ingest_with_a_bare_model_name_fails_with_one_line(cli: Cli, docs: Path) -> None:
    code, _, err = cli("ingest", str(docs), "--embedder", "text-embedding-3-small")
    assert code == 2
    assert "openai:text-embedding-3-small" in err and "Traceback" not in err


def test_distribution_name_is_free_and_the_command_stays_rag() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] != "rag"  # an unrelated 2022 package on PyPI
    assert "rag" in project["scripts"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"`{project['name']}`" in readme


def test_notebook_extra_is_named_in_readme_and_notebook() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(d.startswith("jupyter") for d in extras["notebook"])
    assert any(d.startswith("matplotlib") for d in extras["notebook"])
    assert '".[notebook]"' in (ROOT / "README.md").read_text(encoding="utf-8")
    notebook = json.loads((ROOT / "notebooks" / "quickstart.ipynb").read_text(encoding="utf-8"))
    assert '".[notebook]"' in "".join(notebook["cells"][0]["source"])


def test_readme_names_the_default_fusion() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    diagram = readme[readme.index("## How it works") :].split("```")[1]
    assert "min-max" in diagram and "(RRF)" not in diagram


def _damage(home: Path, index: str = "default") -> Path:
    from rag.store.index import StoreLayout

    path = StoreLayout.from_settings(Settings.load()).index_dir(index) / "index.db"
    assert path.is_file()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database\n" * 200)
    return path


def test_a_damaged_index_names_itself_and_rag_repair_rebuilds_it(cli: Cli, docs: Path, isolated: Path) -> None:
    code, _, err = cli("ingest", str(docs), "--embedder", "hash")
    assert code == 0, err
    _, before, _ = cli("search", "Etna volcano", "--json")
    path = _damage(isolated)

    code, out, err = cli("search", "Etna volcano")
    assert code != 0 and out == ""
    assert "index 'default' is damaged" in err and str(path) in err and "rag repair" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    code, out, err = cli("repair")
    assert code == 0, err
    assert "3 files" in out
    assert Path(f"{path}.damaged").is_file()  # kept, not deleted
    code, after, _ = cli("search", "Etna volcano", "--json")
    assert code == 0
    hits_after = [h["chunk_id"] for h in json.loads(after)["results"]]
    assert hits_after and hits_after == [h["chunk_id"] for h in json.loads(before)["results"]]


def test_rag_repair_names_the_files_it_dropped_as_incomplete(cli: Cli, docs: Path) -> None:
    from rag import Engine

    assert cli("ingest", str(docs), "--embedder", "hash")[0] == 0
    index = Engine().open_index()
    victim = sorted(index.files())[0]
    # As an ingest killed half way leaves a file: one of its vectors never written.
    index._vectors.delete([index.chunks_of(victim)[0].id])
    index.close()
    code, out, err = cli("repair")
    assert code == 0, err
    assert "1 incomplete file dropped" in out and f"dropped docs/{Path(victim).name}: incomplete" in err
    code, out, _ = cli("repair", "--json")
    assert code == 0 and json.loads(out)["dropped"] == []  # the first repair already dropped it
    code, out, _ = cli("ingest", str(docs), "--embedder", "hash", "--json")
    assert json.loads(out)["files"]["added"] == 1  # indexed again


def test_status_lists_the_other_indexes_when_one_is_damaged(cli: Cli, docs: Path, isolated: Path) -> None:
    assert cli("ingest", str(docs), "--embedder", "hash")[0] == 0
    assert cli("ingest", str(docs), "--embedder", "hash", "--index", "notes")[0] == 0
    path = _damage(isolated, "notes")

    code, out, err = cli("status")
    assert code == 1
    assert "default  hash:v1  3 files" in out and "notes  unreadable" in out
    assert "index 'notes' is damaged" in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    code, out, _ = cli("status", "--json")
    assert code == 1
    by_name = {i["name"]: i for i in json.loads(out)["indexes"]}
    assert by_name["default"]["files"] == 3 and by_name["default"]["error"] is None
    assert "is damaged" in by_name["notes"]["error"]


def test_ingest_recovers_a_damaged_index_without_embedding_again(cli: Cli, docs: Path, isolated: Path) -> None:
    assert cli("ingest", str(docs), "--embedder", "hash")[0] == 0
    _damage(isolated)
    code, out, err = cli("ingest", str(docs), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["files"]["unchanged"] == 3 and report["embedded"] == 0
