"""The Tantivy keyword index on its own: BM25 with stemming, incremental writes, filters."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag.store.keyword import KeywordIndex, index_terms, keyword_terms, rsj_boost


@dataclass(frozen=True)
class Chunk:
    id: str
    path: str
    text: str
    kind: str = "text"
    page: int | None = None
    heading: str = ""


CHUNKS = [
    Chunk("v0", "/d/volcanoes.txt", "Volcanoes erupt when magma rises through the crust."),
    Chunk("v1", "/d/volcanoes.txt", "Etna is an active volcano on Sicily.", page=None),
    Chunk("b0", "/d/bees.md", "Honey bees live in colonies with one queen.", kind="markdown", heading="Bees"),
    Chunk("p3", "/d/report.pdf", "The survey of quartz crystals, page three.", kind="pdf", page=3),
    Chunk("p9", "/d/report.pdf", "Quartz and feldspar appear on page nine.", kind="pdf", page=9),
]


def _ids(hits: list[tuple[str, float]]) -> list[str]:
    return [i for i, _ in hits]


def test_bm25_with_stemming_ranks_and_scores(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "kw")
    index.add(CHUNKS)
    hits = index.search("volcano eruptions", 5)
    assert set(_ids(hits)) == {"v0", "v1"}
    assert all(score > 0 for _, score in hits)
    assert _ids(index.search("erupting", 5)) == ["v0"]  # erupt / erupting share a stem
    assert _ids(index.search("Bees", 5)) == ["b0"]  # headings are searchable
    assert set(_ids(index.search("the", 5))) == {"v0", "p3"}  # a query of stopwords only keeps them
    assert index.search("", 5) == []


def test_rarer_terms_weigh_more(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "kw")
    index.add(CHUNKS)
    hits = dict(index.search("quartz feldspar", 5))
    assert hits["p9"] > hits["p3"] > 0  # p9 has both words, one of them rare


def test_incremental_add_and_delete_persist_across_reopen(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "kw")
    index.add(CHUNKS[:2])
    assert index.count() == 2
    index.add(CHUNKS[2:])
    index.delete(["v0", "missing"])
    assert _ids(index.search("magma", 5)) == []
    index.close()
    again = KeywordIndex(tmp_path / "kw")
    assert again.ids() == {"v1", "b0", "p3", "p9"}
    assert not again.fresh


def test_a_reader_sees_another_process_commit(tmp_path: Path) -> None:
    reader = KeywordIndex(tmp_path / "kw")
    assert reader.search("geyser", 5) == []
    code = (
        "import sys; from pathlib import Path; from tests.store.test_keyword import Chunk;"
        "from rag.store.keyword import KeywordIndex;"
        "KeywordIndex(Path(sys.argv[1])).add([Chunk('g0', '/d/g.txt', 'A geyser spouts hot water.')])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "kw")], check=True, cwd=Path(__file__).parents[2])
    assert _ids(reader.search("geyser", 5)) == ["g0"]


def test_filters_apply_before_ranking(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "kw")
    # Many strong matches outside the filter must not push the one inside out of the top k.
    index.add([Chunk(f"x{i}", f"/other/{i}.txt", "quartz quartz quartz") for i in range(50)])
    index.add(CHUNKS)
    assert _ids(index.search("quartz", 1, paths=["/d/report.pdf"])) in (["p3"], ["p9"])
    assert set(_ids(index.search("quartz", 5, paths=["/d/report.pdf"]))) == {"p3", "p9"}
    assert _ids(index.search("quartz", 5, pages=(5, None))) == ["p9"]
    assert _ids(index.search("quartz", 5, pages=(None, 3))) == ["p3"]
    assert _ids(index.search("quartz", 5, pages=(4, 8))) == []
    assert _ids(index.search("bees", 5, kinds=["pdf"])) == []
    assert _ids(index.search("bees", 5, kinds=["markdown"])) == ["b0"]
    assert index.search("quartz", 5, paths=[]) == []
    # A filter does not change a chunk's score.
    plain = dict(index.search("quartz", 100))
    filtered = dict(index.search("quartz", 5, paths=["/d/report.pdf"]))
    assert filtered == {i: plain[i] for i in filtered}


def test_an_index_of_another_format_starts_empty(tmp_path: Path) -> None:
    folder = tmp_path / "kw"
    folder.mkdir()
    (folder / "junk.bin").write_bytes(b"old format")
    index = KeywordIndex(folder)
    assert index.fresh and index.count() == 0
    index.add(CHUNKS)
    index.mark_filled()
    index.clear()
    assert index.fresh


def test_keyword_terms_drop_stopwords_but_not_everything() -> None:
    assert keyword_terms("What is the boiling point of water?") == ["boiling", "point", "water"]
    assert keyword_terms("to be or not") == ["not"]
    assert keyword_terms("the") == ["the"]


def test_document_frequencies_count_chunks_holding_a_phrase(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "kw")
    index.add(
        [
            Chunk("a", "/d/a.txt", "The New York subway opened in 1904."),
            Chunk("b", "/d/b.txt", "York is a city in England; new trains run there."),
            Chunk("c", "/d/c.txt", "Subways of New York and Boston."),
        ]
    )
    counts = index.document_frequencies(["New York", "york", "subways", "Paris", "..."])
    assert counts == {"New York": 2, "york": 3, "subways": 2, "Paris": 0}  # stemmed; punctuation alone is no phrase


def test_terms_are_stemmed_as_fts5s_porter_tokenizer_stemmed_them() -> None:
    # rag 0.1's keyword index (SQLite FTS5) is the reference its rankings were measured with.
    text = (
        "PPAR-RXRs bind SNPs in DCs; generalization of the dying cells' responses, "
        "Naïve T cells and a résumé of 12 studies, HIF-1α included"
    )
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61 remove_diacritics 2')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    db.execute("INSERT INTO t VALUES (?)", (text,))
    fts5 = [term for (term,) in db.execute("SELECT term FROM v ORDER BY offset")]
    assert index_terms(text) == fts5


def test_a_plural_without_vowels_finds_its_singular(tmp_path: Path) -> None:
    # Snowball's English stemmer keeps the "s" of "RXRs"; Porter's (FTS5's) drops it.
    index = KeywordIndex(tmp_path / "kw")
    index.add([Chunk("r", "/d/r.txt", "PPAR-RXRs are activated by ligands."), *CHUNKS])
    assert _ids(index.search("What binds RXR?", 5)) == ["r"]
    assert _ids(index.search("snp", 5)) == []
    index.add([Chunk("s", "/d/s.txt", "Two SNPs were found.")])
    assert _ids(index.search("snp", 5)) == ["s"]


def test_a_word_in_most_chunks_adds_almost_nothing(tmp_path: Path) -> None:
    # FTS5's idf, ln((N - n + 0.5) / (n + 0.5)) floored near zero, not Lucene's ln(1 + ...):
    # "cell" is in five of six chunks, so holding it beside "apoptosis" earns next to nothing.
    index = KeywordIndex(tmp_path / "kw")
    index.add(
        [
            Chunk("a", "/d/a.txt", "apoptosis in liver tissue"),
            Chunk("b", "/d/b.txt", "apoptosis in cell tissue"),
            *[Chunk(f"c{i}", f"/d/c{i}.txt", f"cell culture number {i}") for i in range(4)],
        ]
    )
    scores = dict(index.search("cell apoptosis", 10))
    assert scores["b"] == pytest.approx(scores["a"], rel=1e-4)
    assert scores["a"] > 100 * scores["c0"] > 0
    assert rsj_boost(6, 5) < 1e-5 < rsj_boost(6, 2) < 1 < rsj_boost(6, 1) + 1


def test_stems_stay_right_when_the_stem_cache_overflows(monkeypatch: pytest.MonkeyPatch) -> None:
    import Stemmer

    from rag.store import keyword

    porter = Stemmer.Stemmer("porter")
    monkeypatch.setattr(keyword, "_stems", {})
    monkeypatch.setattr(keyword, "_STEMS_MAX", 3)
    assert index_terms("running") == ["run"]
    # Three new words overflow the cache, which drops "running" before it is looked up.
    text = "running connections generalized ponies"
    assert index_terms(text) == porter.stemWords(text.split())
    assert "running" not in keyword._stems and keyword._stems["ponies"] == "poni"
