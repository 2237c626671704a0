"""Ingest of mixed and PDF-heavy corpora: files/s by type, parsing vs embedding, pool on and off.

Corpora (built in a temporary folder):

- mixed: .docx, .pptx, .xlsx, .csv, .epub, .eml, .txt and .md files written from SciFact
  abstracts with the libraries rag reads them with, plus the real PDFs of
  ``../shared/data/pdf-samples`` (academic, government, misc);
- pdf: those PDFs alone (about 190 pages);
- hostile: one PDF whose content stream takes pypdf minutes (``tests/office_files.stalling_pdf``).

Phases, each on an empty store (empty embedding cache):

1. parse: every file loaded in this process, timed per type (files/s by type);
2. floor: the embedding model alone on the chunks ingest would make;
3. ingest with parsing in-process (before the pool) and with the worker pool (after).

The machine is shared: ratios are against a floor measured in the same run, and the load
average is printed with them.  Usage: python benchmarks/ingest_mixed.py [--docs N] [--json]
Targets: pdf corpus ingest <= 1.1 x its embedding floor; hostile PDF <= limit + 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.office_files builds the Office files

SHARED = Path(os.environ.get("RAG_BENCH_SHARED", ROOT.parent / "shared")) / "data"
SCIFACT = SHARED / "beir-scifact" / "corpus.jsonl"
PDFS = SHARED / "pdf-samples"


def abstracts(limit: int) -> list[tuple[str, str]]:
    out = []
    with SCIFACT.open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            out.append((doc["title"].strip(), doc["text"].strip()))
            if len(out) >= limit:
                break
    return out


def build_mixed(folder: Path, docs: int) -> None:
    """``docs`` files of each generated type, each holding a few abstracts, plus the real PDFs."""
    import docx
    from openpyxl import Workbook
    from pptx import Presentation

    from tests.office_files import make_eml

    texts = abstracts(docs * 4)
    folder.mkdir(parents=True)
    for i in range(docs):
        group = texts[i * 4 : i * 4 + 4]
        document = docx.Document()
        for title, text in group:
            document.add_heading(title, level=1)
            document.add_paragraph(text)
        document.save(str(folder / f"report{i}.docx"))
        deck = Presentation()
        for title, text in group:
            slide = deck.slides.add_slide(deck.slide_layouts[1])
            slide.shapes.title.text = title
            slide.placeholders[1].text = text
        deck.save(str(folder / f"deck{i}.pptx"))
        book = Workbook()
        sheet = book.active
        sheet.append(["title", "abstract"])
        for title, text in group:
            sheet.append([title, text])
        book.save(str(folder / f"table{i}.xlsx"))
        with (folder / f"table{i}.csv").open("w", encoding="utf-8") as fh:
            fh.write(
                "title,abstract\n" + "".join(f'"{t}","{a}"\n' for t, a in ((t, a.replace('"', "'")) for t, a in group))
            )
        (folder / f"notes{i}.md").write_text("".join(f"# {t}\n\n{a}\n\n" for t, a in group), encoding="utf-8")
        (folder / f"plain{i}.txt").write_text("".join(f"{t}\n\n{a}\n\n" for t, a in group), encoding="utf-8")
        mail = make_eml(folder / f"mail{i}.eml")
        mail.write_bytes(
            mail.read_bytes().replace(b"the boat repair will cost 3,400 euros", group[0][1][:200].encode())
        )
        _epub(folder / f"book{i}.epub", group)
    _copy_pdfs(folder / "pdf")


def _epub(path: Path, chapters: list[tuple[str, str]]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr(
            "META-INF/container.xml",
            '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="content.opf"/></rootfiles></container>',
        )
        items = "".join(
            f'<item id="c{i}" href="c{i}.xhtml" media-type="application/xhtml+xml"/>' for i in range(len(chapters))
        )
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        z.writestr(
            "content.opf",
            f'<package xmlns="http://www.idpf.org/2007/opf"><manifest>{items}</manifest><spine>{spine}</spine></package>',
        )
        for i, (title, text) in enumerate(chapters):
            z.writestr(f"c{i}.xhtml", f"<html><body><h1>{title}</h1><p>{text}</p></body></html>")


def _copy_pdfs(folder: Path) -> None:
    for group in ("academic", "government", "misc"):
        shutil.copytree(PDFS / group, folder / group)


def parse_phase(folder: Path) -> dict[str, dict[str, float]]:
    """Load every file in this process; seconds and files per type."""
    from rag.ingest.loaders import kind_of, load

    per: dict[str, dict[str, float]] = defaultdict(lambda: {"files": 0, "seconds": 0.0})
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        kind = kind_of(path)
        if kind is None:
            continue
        started = time.perf_counter()
        load(path)
        per[kind]["files"] += 1
        per[kind]["seconds"] += time.perf_counter() - started
    return dict(per)


def floor_phase(folder: Path) -> dict[str, float]:
    from rag.embed.base import embed_many
    from rag.embed.factory import create
    from rag.ingest.chunk import chunk_document
    from rag.ingest.loaders import kind_of, load
    from rag.settings import Settings

    settings = Settings.load()
    embedder = create("local", settings)
    target = min(settings.ingest.chunk_tokens or embedder.default_chunk_tokens, embedder.max_input_tokens)
    texts, tokens = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and kind_of(p)):
        for draft in chunk_document(
            load(path), embedder.count_tokens, max_tokens=embedder.max_input_tokens,
            target_tokens=target, overlap=settings.ingest.chunk_overlap,
        ):  # fmt: skip
            texts.append(draft.text)
            tokens.append(draft.tokens)
    unique = list(dict.fromkeys(texts))  # ingest embeds identical chunks once
    counts = dict(zip(texts, tokens, strict=True))
    embedder.embed_batch(["warm up"])
    started = time.perf_counter()
    embed_many(embedder, unique, token_counts=[counts[t] for t in unique])
    return {"seconds": time.perf_counter() - started, "chunks": len(unique), "tokens": sum(counts[t] for t in unique)}


def ingest_phase(folder: Path, home: Path, *, pool: bool, timeout: float | None = None) -> dict[str, float]:
    from rag import Engine
    from rag.ingest import pipeline

    os.environ["RAG_HOME"] = str(home)
    if timeout is not None:
        os.environ["RAG_PARSE_TIMEOUT"] = str(timeout)
    pipeline.Ingestor.isolate_parsing = pool
    engine = Engine(index="bench")
    engine.embedder().embed_batch(["warm up"])
    seen: list[pipeline.Ingestor] = []
    original = pipeline.Ingestor.__init__

    def spy(self: pipeline.Ingestor, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(self)

    pipeline.Ingestor.__init__ = spy  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        report = engine.ingest([folder])
        seconds = time.perf_counter() - started
    finally:
        pipeline.Ingestor.__init__ = original  # type: ignore[method-assign]
        os.environ.pop("RAG_PARSE_TIMEOUT", None)
    return {
        "seconds": seconds,
        "parse_seconds": seen[0].parse_seconds if seen else 0.0,
        "files": report.added,
        "failed": len(report.failed),
        "chunks": report.chunks_total,
        "reasons": [p.reason for p in report.failed],  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20, help="generated files of each type")
    parser.add_argument("--only", choices=("mixed", "pdf"), help="one corpus only (the parse table is always made)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ.pop("OPENAI_BASE_URL", None)
    results: dict[str, object] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="rag-bench-mixed-") as tmp:
        base = Path(tmp)
        os.environ["RAG_HOME"] = str(base / "home-floor")
        mixed, pdfs = base / "mixed", base / "pdf"
        build_mixed(mixed, args.docs)
        _copy_pdfs(pdfs)
        results["parse"] = _progress("parse", parse_phase(mixed))
        for name, folder in (("mixed", mixed), ("pdf", pdfs)):
            if args.only and name != args.only:
                continue
            results[f"{name}_floor"] = _progress(f"{name}_floor", floor_phase(folder))
            before = ingest_phase(folder, base / f"home-{name}-before", pool=False)
            results[f"{name}_before"] = _progress(f"{name}_before", before)
            after = ingest_phase(folder, base / f"home-{name}-after", pool=True)
            results[f"{name}_after"] = _progress(f"{name}_after", after)
        from tests.office_files import stalling_pdf

        hostile = base / "hostile"
        hostile.mkdir()
        stalling_pdf(hostile / "stall.pdf")
        shutil.copy(PDFS / "misc" / "google-doc_zen-of-python.pdf", hostile)
        results["hostile"] = _progress("hostile", ingest_phase(hostile, base / "home-hostile", pool=True, timeout=10))
    results["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    report(results)


def _progress(name: str, result: object) -> object:
    """Each phase's result on stderr as it finishes: a long run on a busy machine still says something."""
    print(json.dumps({"phase": name, "load": os.getloadavg()[0], "result": result}, default=str), file=sys.stderr)
    return result


def report(r: dict[str, Any]) -> None:
    print(f"load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f} (2 cores, shared)\n")
    print("| type | files | parse s | files/s |\n| --- | --- | --- | --- |")
    for kind, row in sorted(r["parse"].items()):
        print(
            f"| {kind} | {row['files']:.0f} | {row['seconds']:.2f} | {row['files'] / max(row['seconds'], 1e-9):.1f} |"
        )
    columns = ["corpus", "chunks", "embed floor s", "before: ingest s (parse s)", "after: ingest s (parse s)"]
    print("\n| " + " | ".join([*columns, "before/floor", "after/floor"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("mixed", "pdf"):
        if f"{name}_after" not in r:
            continue
        floor, before, after = r[f"{name}_floor"], r[f"{name}_before"], r[f"{name}_after"]
        print(
            f"| {name} | {after['chunks']} | {floor['seconds']:.1f} "
            f"| {before['seconds']:.1f} ({before['parse_seconds']:.1f}) "
            f"| {after['seconds']:.1f} ({after['parse_seconds']:.1f}) | {before['seconds'] / floor['seconds']:.2f}x "
            f"| {after['seconds'] / floor['seconds']:.2f}x |"
        )
    hostile = r["hostile"]
    print(f"\nhostile PDF (limit 10 s): ingest {hostile['seconds']:.1f} s (target <= 15 s); {hostile['reasons']}")


if __name__ == "__main__":
    main()
