"""How the server names things to clients: upload names, file paths, citations, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ProviderError, StoreError
from rag.results import Answer, Citation
from rag.serve.messages import STORE_FAILED, public_message, without_paths
from rag.serve.sources import Sources
from rag.serve.state import citations_json, safe_filename


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("отчёт.md", "отчёт.md"),
        ("договор.md", "договор.md"),
        ("e\u0301tude.md", "\u00e9tude.md"),  # NFD from macOS becomes NFC
        ("../../etc/passwd.txt", "passwd.txt"),
        ("C:\\Users\\me\\报告.pdf", "报告.pdf"),
        ("\u202egpj.md", "gpj.md"),  # a right-to-left override cannot disguise the name
        ("line\nbreak.txt", "line_break.txt"),
        ("  .hidden.md", "hidden.md"),
        ('what?<is>"this".txt', "what_is_this_.txt"),
    ],
)
def test_upload_names_keep_every_script(given: str, kept: str) -> None:
    assert safe_filename(given) == kept


def test_long_names_fit_a_file_system() -> None:
    name = safe_filename("отчёт" * 100 + ".md")
    assert name.endswith(".md") and len(name.encode()) <= 201


def test_clients_see_paths_under_the_index_folder(tmp_path: Path) -> None:
    docs, uploads = tmp_path / "docs", tmp_path / "home" / "uploads" / "default"
    (docs / "sub").mkdir(parents=True)
    uploads.mkdir(parents=True)
    sources = Sources.of([str(docs / "a.md"), str(docs / "sub" / "b.md"), str(uploads / "c.md")], uploads)
    assert sources.root == docs
    assert [sources.show(str(p)) for p in (docs / "a.md", docs / "sub" / "b.md", uploads / "c.md")] == [
        "a.md",
        "sub/b.md",
        "c.md",
    ]


def test_two_citations_of_one_file_read_differently() -> None:
    citations = [
        Citation(1, "/srv/docs/notes.md", None, "abc-0", 0.9, heading="Costs"),
        Citation(2, "/srv/docs/notes.md", None, "abc-3", 0.8, heading="Risks"),
        Citation(3, "/srv/docs/plain.txt", None, "def-0", 0.7),
        Citation(4, "/srv/docs/plain.txt", None, "def-4", 0.6),
        Citation(5, "/srv/docs/report.pdf", 3, "ghi-2", 0.5),
    ]
    answer = Answer("q", "a [1][2][3][4][5]", False, citations, "none")
    shown = citations_json(answer, Sources(Path("/srv/docs"), Path("/srv/home/uploads/default")))
    assert [c["location"] for c in shown] == [
        "notes.md § Costs",
        "notes.md § Risks",
        "plain.txt (passage 1)",
        "plain.txt (passage 5)",
        "report.pdf:3",
    ]
    assert [c["source"] for c in shown] == ["notes.md", "notes.md", "plain.txt", "plain.txt", "report.pdf"]


def test_errors_reach_clients_without_server_paths() -> None:
    chroma = StoreError("Chroma at /home/u/.rag/chroma: Error executing plan: Internal error: Error finding id")
    assert public_message(chroma) == STORE_FAILED
    provider = ProviderError("model server at http://127.0.0.1:8080/v1 refused: see /var/log/llm/x.log")
    assert public_message(provider) == "model server at http://127.0.0.1:8080/v1 refused: see x.log"
    assert public_message(KeyError("/etc/secret")).startswith("unexpected server error")
    assert without_paths("locked (/home/u/.rag/indexes/x/lock)\nnow") == "locked (lock) now"
