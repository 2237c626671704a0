"""Read a retrieval benchmark in BEIR's layout, or a SQuAD file as one.

BEIR: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``)
and ``qrels/SPLIT.tsv`` (``query-id``, ``corpus-id``, ``score``, after a header line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rag.errors import UsageError


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    name: str
    corpus: dict[str, Document]
    #: Only the queries the split judges.
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder; a usage error names the first thing missing or malformed."""
    folder = folder.expanduser()
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not path.is_file():
            raise UsageError(f"{folder} is not a BEIR dataset: {path.relative_to(folder)} is missing")
    qrels = _read_qrels(qrels_path)
    corpus = {}
    for row in _read_jsonl(folder / "corpus.jsonl"):
        doc = Document(str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or ""))
        corpus[doc.id] = doc
    queries = {str(r["_id"]): str(r["text"]) for r in _read_jsonl(folder / "queries.jsonl") if str(r["_id"]) in qrels}
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise UsageError(f"{qrels_path}: {len(missing)} judged queries are not in queries.jsonl (e.g. {missing[0]!r})")
    return BeirDataset(folder.resolve().name, corpus, queries, qrels)


def load_squad(path: Path) -> BeirDataset:
    """A SQuAD JSON file as a retrieval set: each answerable question's paragraph is relevant."""
    try:
        articles = json.loads(path.expanduser().read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path} is not a SQuAD JSON file: {exc}") from None
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for a, article in enumerate(articles):
        title = str(article.get("title", "")).replace("_", " ")
        for p, paragraph in enumerate(article["paragraphs"]):
            doc = Document(f"{a}-{p}", title, paragraph["context"])
            corpus[doc.id] = doc
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible"):
                    queries[qa["id"]] = qa["question"]
                    qrels[qa["id"]] = {doc.id: 1}
    return BeirDataset(path.stem, corpus, queries, qrels)


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or "_id" not in row:
                    raise ValueError("each line must be an object with an _id")
            except ValueError as exc:
                raise UsageError(f"{path}:{n}: {exc}") from None
            rows.append(row)
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or (n == 1 and fields[0] == "query-id"):
                continue
            try:
                query, doc, grade = fields
                qrels.setdefault(query, {})[doc] = int(float(grade))
            except ValueError:
                raise UsageError(f"{path}:{n}: expected query-id<TAB>corpus-id<TAB>score") from None
    if not qrels:
        raise UsageError(f"{path} holds no judgements")
    return qrels
