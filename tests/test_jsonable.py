"""The JSON shapes the API, the CLI's ``--json`` and the web page read, pinned key by key and
in order (``rag.jsonable`` builds them from the dataclasses' fields), and the helper itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.chat.sessions import ChatTurn, Session, SessionInfo
from rag.eval.runner import EvalResult
from rag.jsonable import Jsonable, json_hook, rounded
from rag.results import Answer, Citation, Document, FileProblem, Hit, IngestReport, Span, Support, Unsupported
from rag.serve.jobs import FileState, Job
from rag.serve.state import DocumentInfo
from rag.store.records import ChunkRecord, FileRecord
from rag.usage import Usage
from rag.watch import Folder

USAGE = Usage(model="m", requests=2, prompt_tokens=10, completion_tokens=5, cost_usd=0.00123, estimated=True)
HIT = Hit(1, 0.123456789, "a-0", "/x/a.pdf", 3, "H > I", "t", start=1, end=5, relevance=0.987654321, ocr=True)
CITATION = Citation(
    n=1, source="/x/a.pdf", page=3, chunk_id="a-0", score=1 / 3, text="tt", heading="H", attributed=True
)

USAGE_JSON = {
    "model": "m",
    "requests": 2,
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "cost_usd": 0.00123,
    "estimated": True,
}
HIT_JSON = {
    "rank": 1,
    "score": 0.123457,
    "relevance": 0.987654,
    "source": "/x/a.pdf",
    "page": 3,
    "chunk_id": "a-0",
    "heading": "H > I",
    "start": 1,
    "end": 5,
    "text": "t",
    "ocr": True,
}
CITATION_JSON = {
    "n": 1,
    "source": "/x/a.pdf",
    "page": 3,
    "chunk_id": "a-0",
    "score": 0.333333,
    "heading": "H",
    "location": "/x/a.pdf:3",
    "attributed": True,
}


def same(data: Any, expected: Any) -> None:
    """Equal, and with the keys in the same order (clients and tests read the bytes)."""
    assert json.dumps(data) == json.dumps(expected)


def test_search_and_ask_json_keep_their_keys_and_order() -> None:
    bare = Hit(2, 0.5, "a-1", "a.md", None, "", "u")
    answer = Answer(
        question="q",
        text="ans",
        refused=False,
        citations=[CITATION],
        model="m",
        answerer="extractive",
        usage=USAGE,
        context=[HIT, bare],
        removed_citations=1,
        rewritten_question="qq",
        seconds=0.5,
        spans=[Span(0, 3, "abc")],
        support=[Support(start=0, end=4, supported=True, citations=(1, 2))],
    )
    same(HIT.to_dict(), HIT_JSON)
    same(
        answer.to_dict(include_context=True),
        {
            "question": "q",
            "answer": "ans",
            "refused": False,
            "citations": [CITATION_JSON],
            "model": "m",
            "answerer": "extractive",
            "usage": USAGE_JSON,
            "seconds": 0.5,
            "removed_citations": 1,
            "spans": [{"start": 0, "end": 3, "text": "abc"}],
            "support": [{"start": 0, "end": 4, "supported": True, "attributed": False, "citations": [1, 2]}],
            "rewritten_question": "qq",
            "context": [
                HIT_JSON,
                {**HIT_JSON, "rank": 2, "score": 0.5, "relevance": None, "source": "a.md", "page": None}
                | {"chunk_id": "a-1", "heading": "", "start": 0, "end": 0, "text": "u", "ocr": False},
            ],
        },
    )
    plain = Answer(question="q", text="no", refused=True, citations=[], model="m").to_dict()
    assert "rewritten_question" not in plain and "context" not in plain


def test_ingest_report_json_keeps_its_summary_shape() -> None:
    report = IngestReport(
        index="i",
        embedder="e",
        added=1,
        skipped=[FileProblem("p", "why")],
        failed=[FileProblem("f", "bad")],
        unsupported=[Unsupported("z.xyz", "xyz")],
        warnings=[FileProblem("w.pdf", "page 2 not indexed")],
        seconds=1.23456,
        usage=USAGE,
        interrupted="ctrl-c",
    )
    same(
        report.to_dict(),
        {
            "index": "i",
            "files": {"added": 1, "updated": 0, "unchanged": 0, "removed": 0, "skipped": 1, "failed": 1},
            "chunks": {"added": 0, "removed": 0, "total": 0},
            "errors": [{"path": "f", "error": "bad"}],
            "skipped": [{"path": "p", "error": "why"}],
            "unsupported": 1,
            "unsupported_files": [{"path": "z.xyz", "type": "xyz"}],
            "warnings": [{"path": "w.pdf", "warning": "page 2 not indexed"}],
            "embedded": 0,
            "from_cache": 0,
            "repaired": 0,
            "seconds": 1.235,
            "embedder": "e",
            "usage": USAGE_JSON,
            "interrupted": "ctrl-c",
        },
    )


def test_session_job_document_eval_and_folder_json_keep_their_shapes() -> None:
    turn = ChatTurn("q", "a", search_query="sq", citations=[CITATION], context=[HIT], model="m", created=2.0)
    session = Session(SessionInfo("n", "i", 2, 1.0, 2.0, "t"), [turn, ChatTurn("q", "a")])
    turn_json = {"question": "q", "answer": "a", "refused": False, "citations": [CITATION_JSON]}
    turn_json |= {"answerer": "llm", "model": "m", "created": 2.0, "spans": [], "support": []}
    turn_json |= {"rewritten_question": "sq"}
    bare_json = {"question": "q", "answer": "a", "refused": False, "citations": []}
    bare_json |= {"answerer": "llm", "model": "", "created": 0.0, "spans": [], "support": []}
    same(
        session.to_dict(),
        {"name": "n", "index": "i", "turns": [turn_json, bare_json], "created": 1.0, "updated": 2.0, "title": "t"},
    )
    files = [FileState("f", Path("/p"), "failed", "r", 3, Path("/s")), FileState("g", None)]
    job = Job("j1", "i", files, state="done", report={"a": 1}, resumed=True)
    same(
        job.to_dict(),
        {
            "job": "j1",
            "index": "i",
            "state": "done",
            "files": [
                {"name": "f", "state": "failed", "chunks": 3, "reason": "r"},
                {"name": "g", "state": "queued", "chunks": 0},
            ],
            "report": {"a": 1},
            "resumed": True,
        },
    )
    assert Job.from_record(json.loads(json.dumps(job.to_record()))).to_record() == job.to_record()
    document = Document("abc", "/x/a.pdf", "pdf", 3, 4, 100, 1.5, ("w",))
    same(
        document.to_dict(),
        {"id": "abc", "source": "/x/a.pdf", "kind": "pdf", "pages": 3, "chunks": 4, "size": 100}
        | {"ingested_at": 1.5, "warnings": ["w"]},
    )
    same(
        DocumentInfo(**vars(document), uploaded=True, shown="a.pdf").to_dict(),
        {"id": "abc", "source": "a.pdf", "name": "a.pdf", "kind": "pdf", "pages": 3, "chunks": 4}
        | {"uploaded": True, "ingested_at": 1.5},
    )
    result = EvalResult("d", "hybrid", 3, {"ndcg": 0.123456}, {"p50": 1.23456}, index="x")
    same(
        result.to_dict(),
        {"dataset": "d", "mode": "hybrid", "queries": 3, "metrics": {"ndcg": 0.1235}, "latency_ms": {"p50": 1.23}},
    )
    same(
        Folder("i", "/p", "watching", 2, 1, 3.0).to_dict(),
        {"index": "i", "path": "/p", "state": "watching", "files": 2, "queued": 1, "last_change": 3.0}
        | {"last_error": None},
    )


def test_records_map_to_documents_and_hits_in_one_place() -> None:
    record = FileRecord("/x/a.pdf", "h", "sig", "pdf", 100, 7, 3, 4, 1.5, ("w",))
    document = record.document()
    assert (document.source, document.kind, document.pages, document.chunks, document.size) == (
        "/x/a.pdf",
        "pdf",
        3,
        4,
        100,
    )
    assert (document.ingested_at, document.warnings) == (1.5, ("w",))
    assert document.id == record.document().id and len(document.id) == 16
    chunk = ChunkRecord("a-0", "/x/a.pdf", "pdf+ocr", 0, 3, "H", 1, 5, 2, "t")
    hit = chunk.hit(rank=1, score=0.5, relevance=0.25)
    assert hit == Hit(1, 0.5, "a-0", "/x/a.pdf", 3, "H", "t", start=1, end=5, relevance=0.25, ocr=True)


def test_jsonable_follows_fields_hooks_and_order() -> None:
    @dataclass
    class Inner(Jsonable):
        values: tuple[int, ...] = (1, 2)

    @dataclass
    class Outer(Jsonable):
        json_order = ("note", "ratio", "inner", "doubled")

        ratio: float = field(default=2 / 3, metadata=json_hook(convert=rounded(2), key="r"))
        note: str | None = field(default=None, metadata=json_hook(omit_none=True))
        inner: list[Inner] = field(default_factory=lambda: [Inner()])
        hidden: str = "not in the JSON"

        @property
        def doubled(self) -> float:
            return self.ratio * 2

    same(Outer().to_dict(), {"r": 0.67, "inner": [{"values": [1, 2]}], "doubled": 4 / 3})
    same(Outer(note="n").to_dict(), {"note": "n", "r": 0.67, "inner": [{"values": [1, 2]}], "doubled": 4 / 3})
