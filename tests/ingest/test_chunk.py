"""The chunker: exact spans, the hard token limit under hostile input, overlap, structure.

Counters used: whitespace words (simple and predictable), the default over-estimate, and
OpenAI's cl100k BPE from ``rag.tokens`` (a real tokenizer whose count of a whole text is
not the sum of its parts' counts).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import pytest

from rag.ingest.chunk import CountTokens, chunk_document, code_blocks
from rag.ingest.document import ChunkDraft, LoadedDocument, Section
from rag.ingest.loaders import load
from rag.tokens import count_tokens_batch, estimate_tokens

PDF = Path(__file__).parents[1] / "fixtures" / "pdf"


def words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def estimate(texts: Sequence[str]) -> list[int]:
    return [estimate_tokens(t) for t in texts]


def bpe(texts: Sequence[str]) -> list[int]:
    return count_tokens_batch(texts, "text-embedding-3-small")


def with_specials(texts: Sequence[str]) -> list[int]:
    """Like a BERT tokenizer: every text also gets [CLS] and [SEP]."""
    return [n + 2 for n in words(texts)]


COUNTERS = {"words": words, "estimate": estimate, "bpe": bpe, "specials": with_specials}


def doc_of(*texts: str, kind: str = "text") -> LoadedDocument:
    return LoadedDocument(Path("doc.txt"), kind, [Section(t) for t in texts])


def check(doc: LoadedDocument, chunks: list[ChunkDraft], count: CountTokens, max_tokens: int) -> None:
    """The invariants every chunking must keep."""
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert [c.tokens for c in chunks] == count([c.text for c in chunks])
    assert all(c.tokens <= max_tokens for c in chunks)
    for section in doc.sections:
        mine = [c for c in chunks if c.page == section.page and c.heading == section.heading]
        covered = bytearray(len(section.text))
        for c in mine:
            local = (c.start - section.offset, c.end - section.offset)
            assert section.text[local[0] : local[1]] == c.text
            assert c.text == c.text.strip() and c.text
            covered[local[0] : local[1]] = b"\1" * (local[1] - local[0])
        lost = [i for i, ch in enumerate(section.text) if not covered[i] and not ch.isspace()]
        assert not lost, f"text dropped at {lost[:5]}"


def prose(sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocabulary = ["the", "a", "model", "reads", "every", "page", "of", "text", "keeps", "its", "place"]
    out = []
    for i in range(sentences):
        out.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 18))).capitalize() + ".")
        out.append("\n\n" if i % 5 == 4 else " ")
    return "".join(out)


# --- the hard limit ------------------------------------------------------------------------

rng = random.Random(7)
HOSTILE = {
    "one huge word": "x" * 10_000,
    "random huge word": "".join(rng.choice("abcdefghij0123456789") for _ in range(10_000)),
    "page of numbers": " ".join(str(rng.randint(0, 10**9)) for _ in range(3_000)),
    "table lines": "\n".join(" ".join(f"{rng.random():.4f}" for _ in range(9)) for _ in range(300)),
    "cjk without spaces": "这是一个没有空格的中文句子" * 600,
    "cjk with full stops": "这是一个中文句子。" * 600,
    "long urls": " ".join("https://example.com/" + "seg-ment/%20?q=1&" * 60 for _ in range(10)),
    "punctuation": "!?." * 3_000,
    "emoji": "🙂" * 3_000,
    "mixed": ("word " * 60 + "\n\n" + "y" * 2_000 + "\n" + "字" * 400 + ". ") * 4,
}


@pytest.mark.parametrize("counter", list(COUNTERS))
@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize(("max_tokens", "target"), [(256, 200), (64, 64), (12, 10)])
def test_no_chunk_exceeds_the_limit_and_nothing_is_lost(name: str, counter: str, max_tokens: int, target: int) -> None:
    doc = doc_of(HOSTILE[name])
    count = COUNTERS[counter]
    chunks = chunk_document(doc, count, max_tokens=max_tokens, target_tokens=target, overlap=0.15)
    check(doc, chunks, count, max_tokens)


@pytest.mark.parametrize("counter", list(COUNTERS))
def test_prose_chunks_aim_for_the_target(counter: str) -> None:
    doc = doc_of(prose(300))
    count = COUNTERS[counter]
    chunks = chunk_document(doc, count, max_tokens=120, target_tokens=100, overlap=0.15)
    check(doc, chunks, count, 120)
    sizes = [c.tokens for c in chunks[:-1]]
    assert sum(sizes) / len(sizes) > 60


def test_target_above_the_limit_is_capped() -> None:
    doc = doc_of(prose(100))
    chunks = chunk_document(doc, words, max_tokens=50, target_tokens=500, overlap=0.1)
    check(doc, chunks, words, 50)


def test_impossible_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="no room"):
        chunk_document(doc_of("text"), with_specials, max_tokens=2, target_tokens=2, overlap=0)


# --- where chunks break, and overlap -------------------------------------------------------


def test_breaks_prefer_paragraphs() -> None:
    paragraphs = [" ".join([f"p{p}w{i}" for i in range(30)]) + "." for p in range(6)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_document(doc_of(text), words, max_tokens=100, target_tokens=80, overlap=0)
    # 30-word paragraphs, 80-word target: two paragraphs a chunk, never a split paragraph.
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 2]) for i in (0, 2, 4)]


def test_breaks_prefer_sentence_ends_to_wrapped_lines() -> None:
    sentence = "this sentence is wrapped across\nlines the way a pdf page or\nan old text file wraps it."
    text = " ".join(sentence.capitalize() for _ in range(12))
    chunks = chunk_document(doc_of(text), words, max_tokens=60, target_tokens=50, overlap=0)
    assert all(c.text.endswith("wraps it.") for c in chunks)


def test_chunks_overlap_from_a_sentence_start() -> None:
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(60))
    chunks = chunk_document(doc_of(text), words, max_tokens=60, target_tokens=50, overlap=0.2)
    assert len(chunks) > 5
    for before, after in pairwise(chunks):
        assert after.start < before.end, "consecutive chunks should overlap"
        assert after.text.startswith("Sentence number")
        assert before.text.endswith(after.text[: before.end - after.start])
        shared = words([text[after.start : before.end]])[0]
        assert 0 < shared <= 0.2 * before.tokens + 7


def test_overlap_inside_one_long_sentence_starts_at_a_word() -> None:
    text = " ".join(f"w{i}" for i in range(400))  # no sentence ends at all
    chunks = chunk_document(doc_of(text), words, max_tokens=50, target_tokens=40, overlap=0.25)
    check(doc_of(text), chunks, words, 50)
    for before, after in pairwise(chunks):
        assert after.start < before.end
        assert text[after.start - 1] == " " and re.match(r"w\d+", after.text)


def test_no_overlap_when_asked_for_none() -> None:
    doc = doc_of(prose(100))
    chunks = chunk_document(doc, words, max_tokens=60, target_tokens=50, overlap=0)
    assert all(a.end <= b.start for a, b in pairwise(chunks))


# --- structure survives --------------------------------------------------------------------


def test_chunks_never_span_sections_and_keep_page_and_heading() -> None:
    sections = [
        Section(prose(20, seed=1), page=1, offset=0),
        Section(prose(3, seed=2), page=2, heading=("Intro",), offset=0),
        Section(prose(20, seed=3), page=3, heading=("Intro", "Details"), offset=0),
    ]
    doc = LoadedDocument(Path("x.pdf"), "pdf", sections)
    chunks = chunk_document(doc, words, max_tokens=60, target_tokens=50, overlap=0.15)
    check(doc, chunks, words, 60)
    assert {c.page for c in chunks} == {1, 2, 3}
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)  # type: ignore[type-var]
    assert {c.heading for c in chunks if c.page == 3} == {("Intro", "Details")}


def test_real_pdf_chunks_keep_page_numbers() -> None:
    doc = load(PDF / "latex_two-column-lorem.pdf")
    chunks = chunk_document(doc, bpe, max_tokens=256, target_tokens=200, overlap=0.15)
    check(doc, chunks, bpe, 256)
    assert {c.page for c in chunks} == {1, 2, 3}
    for c in chunks:
        # PDF offsets are into the page's text: its sections (prose, and each block of a table's
        # records) joined as the page's text is shown.
        page_text = "\n\n".join(s.text for s in doc.sections if s.page == c.page)
        assert page_text[c.start : c.end] == c.text


def test_markdown_chunks_keep_heading_paths_and_file_offsets(tmp_path: Path) -> None:
    intro = prose(30, seed=4)
    text = f"# Guide\n\n{intro}\n## Install\n\n```\n# not a heading\n```\n\n{prose(8, seed=5)}"
    (tmp_path / "guide.md").write_text(text, encoding="utf-8")
    doc = load(tmp_path / "guide.md")
    chunks = chunk_document(doc, words, max_tokens=80, target_tokens=60, overlap=0.15)
    check(doc, chunks, words, 80)
    assert all(text[c.start : c.end] == c.text for c in chunks)  # offsets into the decoded file
    assert chunks[0].heading == ("Guide",) and chunks[0].text.startswith("# Guide")
    assert chunks[-1].heading == ("Guide", "Install")


def test_spans_skip_leading_and_trailing_whitespace() -> None:
    doc = LoadedDocument(Path("a.txt"), "text", [Section("\n\n   Hello there.   \n\n", offset=100)])
    (chunk,) = chunk_document(doc, words, max_tokens=10, target_tokens=10, overlap=0.1)
    assert (chunk.text, chunk.start, chunk.end, chunk.tokens) == ("Hello there.", 105, 117, 2)


def test_blank_sections_give_no_chunks() -> None:
    assert chunk_document(doc_of("", "  \n "), words, max_tokens=10, target_tokens=10, overlap=0.1) == []


def test_calls_the_counter_a_constant_number_of_times() -> None:
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> list[int]:
        calls.append(len(texts))
        return words(texts)

    chunk_document(doc_of(prose(2_000)), counting, max_tokens=120, target_tokens=100, overlap=0.15)
    assert len(calls) == 2  # all units at once, then all chunks at once


def test_a_short_section_is_counted_once_and_kept_whole() -> None:
    calls: list[list[str]] = []

    def counting(texts: Sequence[str]) -> list[int]:
        calls.append(list(texts))
        return words(texts)

    text = "\n  First sentence here. Second one follows! A third?\n\n"
    (chunk,) = chunk_document(doc_of(text), counting, max_tokens=120, target_tokens=100, overlap=0.15)
    assert chunk.text == text.strip() and text[chunk.start : chunk.end] == chunk.text
    assert calls == [["", text.strip()]]  # not its sentences, and not the finished chunk again


# --- Markdown code blocks --------------------------------------------------------------------


def markdown_of(text: str) -> LoadedDocument:
    return LoadedDocument(Path("doc.md"), "markdown", [Section(text)])


def code(lines: int, seed: int = 0, fence: str = "```python") -> str:
    """A fenced block of ``lines`` lines of four words each."""
    rng = random.Random(seed)
    body = "\n".join(f"    call{rng.randint(0, 99)}(x) = y{i} + z" for i in range(lines))
    return f"{fence}\n{body}\n{fence[:3]}"


def cut_inside(chunks: list[ChunkDraft], text: str) -> list[tuple[int, int]]:
    """Chunk edges strictly inside a fenced block of ``text``."""
    blocks = code_blocks(text)
    edges = [edge for c in chunks for edge in (c.start, c.end)]
    return [(edge, b) for edge in edges for a, b in blocks if a < edge < b]


def test_code_blocks_follow_commonmark_fences() -> None:
    text = "a\n```python\nx\n~~~\n``\n````\ntext\n   ~~~~ \ny\n~~~\n    ```\nz\n~~~~\nb\n```\nopen to the end"
    assert [text[a:b] for a, b in code_blocks(text)] == [
        "```python\nx\n~~~\n``\n````",  # closed by a longer fence of its character only
        "   ~~~~ \ny\n~~~\n    ```\nz\n~~~~",  # indented up to three spaces
        "```\nopen to the end",  # left open: to the end
    ]


@pytest.mark.parametrize("counter", ["words", "bpe"])
def test_a_code_block_that_fits_is_never_cut(counter: str) -> None:
    count = COUNTERS[counter]
    parts = []
    for k in range(12):
        parts.append(prose(3 + k % 4, seed=k))
        parts.append(code(2 + (k * 3) % 5, seed=k))
    text = "\n\n".join(parts)
    assert max(count([text[a:b] for a, b in code_blocks(text)])) <= 80  # each fits in a chunk
    doc = markdown_of(text)
    chunks = chunk_document(doc, count, max_tokens=80, target_tokens=60, overlap=0.15)
    check(doc, chunks, count, 80)
    assert len(chunks) > 10
    assert cut_inside(chunks, text) == []
    for a, b in code_blocks(text):  # each block whole in a chunk
        assert any(c.start <= a and b <= c.end for c in chunks)


def test_a_lead_ending_in_a_colon_stays_with_its_block() -> None:
    lead = "Or turn the limit off for one call:"
    text = f"{prose(9, seed=1)}\n\n{lead}\n\n{code(6)}\n\n{prose(9, seed=2)}"
    chunks = chunk_document(markdown_of(text), words, max_tokens=80, target_tokens=60, overlap=0.15)
    (holder,) = [c for c in chunks if "```" in c.text]
    assert holder.text.endswith(f"{lead}\n\n{code(6)}")
    assert not any(c.text.endswith(lead) for c in chunks)  # no chunk ends with the lead alone


@pytest.mark.parametrize("counter", ["words", "bpe", "specials"])
def test_a_long_block_is_cut_at_line_ends_into_chunks_of_its_own(counter: str) -> None:
    count = COUNTERS[counter]
    block = code(40, fence="```console")
    text = f"{prose(6, seed=3)}\n\nExample:\n\n{block}\n\n{prose(6, seed=4)}"
    doc = markdown_of(text)
    chunks = chunk_document(doc, count, max_tokens=60, target_tokens=50, overlap=0.15)
    check(doc, chunks, count, 60)
    ((a, b),) = code_blocks(text)
    pieces = [c for c in chunks if a <= c.start and c.end <= b]
    assert (pieces[0].start, pieces[-1].end) == (a, b)
    for before, after in pairwise(pieces):  # cut at line ends, with no overlap
        assert "\n" in text[before.end : after.start] and not text[before.end : after.start].strip()
    assert pieces[0].text.startswith("```console") and pieces[-1].text.endswith("```")
    assert not any("```" in c.text for c in pieces[1:-1])
    # No other chunk shares a line with it, and the fewest pieces that fit, about even.
    assert all(c.end <= a or b <= c.start for c in chunks if c not in pieces)
    fewest = math.ceil(count([block])[0] / 60)
    assert fewest <= len(pieces) <= fewest + 1
    assert max(c.tokens for c in pieces) < 2 * min(c.tokens for c in pieces)


def test_fences_matter_only_in_markdown() -> None:
    # In plain text, fence lines are lines like any other: the same cuts as with words there.
    text = "\n\n".join(f"{prose(4, seed=k)}\n\n{code(9, seed=k)}" for k in range(6))
    masked = text.replace("```python", "XXXpython").replace("```", "XXX")
    plain = [LoadedDocument(Path("doc.txt"), "text", [Section(t)]) for t in (text, masked)]
    spans = [
        [(c.start, c.end) for c in chunk_document(d, words, max_tokens=60, target_tokens=50, overlap=0.15)]
        for d in plain
    ]
    assert spans[0] == spans[1]
    assert cut_inside(chunk_document(plain[0], words, max_tokens=60, target_tokens=50, overlap=0.15), text)


HOSTILE_MARKDOWN = {
    "unclosed fence": f"{prose(5)}\n\n```\n" + "\n".join(f"line {i} of output" for i in range(200)),
    "fences only": "```\n```\n" * 300,
    "one huge code line": f"Intro:\n\n```\n{'x' * 5_000}\n```\nAfter.",
    "code of long lines": "```\n" + "\n".join(" ".join(["tok"] * 90) for _ in range(20)) + "\n```",
    "tilde and backtick": "~~~\n```\nnot closed by this\n~~~\n" * 40 + prose(30),
    "blank lines in code": "```\n" + "\n\n".join(f"step {i} done" for i in range(300)) + "\n```",
}


@pytest.mark.parametrize("counter", list(COUNTERS))
@pytest.mark.parametrize("name", list(HOSTILE_MARKDOWN))
@pytest.mark.parametrize(("max_tokens", "target"), [(256, 200), (12, 10)])
def test_hostile_markdown_keeps_the_limit_and_loses_nothing(
    name: str, counter: str, max_tokens: int, target: int
) -> None:
    doc = markdown_of(HOSTILE_MARKDOWN[name])
    count = COUNTERS[counter]
    chunks = chunk_document(doc, count, max_tokens=max_tokens, target_tokens=target, overlap=0.15)
    check(doc, chunks, count, max_tokens)
