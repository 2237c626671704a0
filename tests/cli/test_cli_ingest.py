"""`rag ingest`, `search`, `status`, `config` as a user runs them: real processes, the real model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.embed.local import NAMES
from rag.embed.quantize import default_precision
from tests.conftest import FIXTURES, rag_on_terminal

LOCAL = NAMES[default_precision()[0]]


def rag(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def mixed(docs: Path) -> Path:
    """Good documents plus every kind of bad one."""
    shutil.copy(FIXTURES / "pdf" / "latex_two-column-lorem.pdf", docs / "paper.pdf")
    shutil.copytree(FIXTURES / "pdf" / "bad", docs / "bad")
    (docs / "binary.txt").write_bytes(b"\x00\xff" * 500)
    (docs / "notes.pages").write_bytes(b"PK\x03\x04 not supported")
    (docs / ".hidden.md").write_text("# secret\n", encoding="utf-8")
    return docs


def test_ingest_reports_bad_files_one_line_each_and_indexes_the_rest(mixed: Path) -> None:
    result = rag("ingest", str(mixed), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"files", "chunks", "errors", "seconds", "embedder"}
    assert set(report["files"]) == {"added", "updated", "unchanged", "removed", "skipped", "failed"}
    assert set(report["chunks"]) == {"added", "removed", "total"}
    assert report["files"]["added"] == 4  # 3 text/markdown files and paper.pdf
    assert report["embedder"] == LOCAL  # int8 or fp32 as this CPU chooses
    failed = {Path(e["path"]).name: e["error"] for e in report["errors"]}
    assert report["files"]["failed"] == len(failed) == 7
    assert failed["encrypted_libreoffice-writer-password.pdf"] == "encrypted PDF (password required)"
    assert failed["binary.txt"] == "binary file, not text"
    assert report["unsupported"] == 1 and report["files"]["skipped"] == 1  # .pages counted, hidden listed
    # One line per failed file on stderr, naming it.
    lines = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert len(lines) == 7 and all(any(name in line for name in failed) for line in lines)

    again = rag("ingest", str(mixed), "--json")
    assert json.loads(again.stdout)["files"]["unchanged"] == 4


def test_human_output_and_a_clean_exit_when_all_is_well(docs: Path) -> None:
    result = rag("ingest", str(docs))
    assert result.returncode == 0, result.stderr
    assert "3 added" in result.stdout and "local:all-MiniLM-L6-v2" in result.stdout
    # No progress bar when output is not a terminal.
    assert result.stderr == ""


def test_usage_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    missing = rag("ingest", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    bad_index = rag("ingest", str(tmp_path), "--index", "../escape")
    assert bad_index.returncode == 2 and "invalid index name" in bad_index.stderr
    no_index = rag("search", "anything")
    assert no_index.returncode == 1 and "run `rag ingest PATH` first" in no_index.stderr
    for result in (missing, bad_index, no_index):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_search_json_and_status(docs: Path) -> None:
    assert rag("ingest", str(docs), "--index", "notes").returncode == 0
    result = rag("search", "active volcano in Sicily", "-k", "2", "--index", "notes", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["query"] == "active volcano in Sicily"
    first = data["results"][0]
    assert set(first) >= {"rank", "score", "source", "page", "chunk_id", "text"}
    assert first["rank"] == 1 and first["source"].endswith("volcanoes.txt")

    filtered = json.loads(rag("search", "bees", "--index", "notes", "--type", "txt", "--json").stdout)
    assert filtered["results"] and all(r["source"].endswith(".txt") for r in filtered["results"])

    status = json.loads(rag("status", "--json").stdout)
    (info,) = status["indexes"]
    assert info["name"] == "notes" and info["files"] == 3 and info["chunks"] >= 3
    assert info["embedder"] == LOCAL and info["size_bytes"] > 0 and info["last_ingest"]


def test_config_masks_the_key_and_names_sources(tmp_path: Path) -> None:
    key = "sk-test-DO-NOT-PRINT-1234567890"
    result = rag("config", env={"OPENAI_API_KEY": key, "RAG_TOP_K": "9"})
    assert result.returncode == 0
    assert key not in result.stdout + result.stderr and "1234567890" not in result.stdout
    assert "env RAG_TOP_K" in result.stdout
    data = json.loads(rag("config", "--json", env={"OPENAI_API_KEY": key}).stdout)
    assert key not in json.dumps(data)


def test_version() -> None:
    result = rag("--version")
    assert result.returncode == 0 and result.stdout.startswith("rag ")


def test_progress_bar_on_a_terminal(docs: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = rag_on_terminal(
        "ingest",
        str(docs),
        env={**os.environ, "COLUMNS": "120"},
        timeout=120,
    )
    child.expect("files")  # the progress bar's label, drawn only on a terminal
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_files_indexed_with_a_warning_are_named_on_the_terminal_and_in_json(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    # cp1252 text: indexed, with a warning naming the encoding it was read in.
    (folder / "legacy.txt").write_bytes("Café crème coûte trois euros à la gare du Nord.\n".encode("cp1252") * 5)
    (folder / "plain.txt").write_text("Nothing to warn about here.\n", encoding="utf-8")
    shown = rag("ingest", str(folder), "--index", "warned")
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stderr.splitlines() if line.startswith("warning")]
    assert len(lines) == 1 and "legacy.txt" in lines[0] and "decoded as" in lines[0]
    (folder / "legacy.txt").write_bytes("Crème brûlée à la carte, s'il vous plaît.\n".encode("cp1252") * 5)
    report = json.loads(rag("ingest", str(folder), "--index", "warned", "--json").stdout)
    assert [w["path"] for w in report["warnings"]] == [str(folder / "legacy.txt")]
    assert "decoded as" in report["warnings"][0]["warning"]
