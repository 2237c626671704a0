"""A manual's layout (wrapped lines, code blocks, bracketed defaults, leads ending in a colon),
and the support check reading a sentence of a manual as one sentence."""

from __future__ import annotations

from pathlib import Path

from rag.answer import support
from rag.answer.layout import fences, led, unwrapped, with_asides
from rag.answer.support import Claim, sentences
from rag.ingest.chunk import chunk_document
from rag.ingest.document import LoadedDocument, Section
from tests.helpers import hit

OPTIONS = (
    "You can size the pool with the `limits` argument. It takes instances of `pool.Limits` which\n"
    "define:\n\n"
    "- `max_idle`, number of idle connections kept, or `None` to always\nkeep. (Defaults 20)\n"
    "- `max_items`, most items kept, or `None` for no limits.\n(Default 100)\n"
)
CODE = (
    "## Turning it off\n\nOr turn the cap off for a single call:\n\n"
    "```python\n# With the top-level API:\nfetch('http://example.com', cap=None)\n```\n"
)


def test_unwrapped_joins_the_lines_of_a_paragraph_only() -> None:
    text = "A sentence that wraps\nonto the next line.\n\n- an item\n- another\n\n```python\nx = 1\ny = 2\n```"
    flat = unwrapped(text)
    assert len(flat) == len(text)  # offsets hold
    assert flat.startswith("A sentence that wraps onto the next line.\n\n- an item\n- another\n\n")
    assert flat.endswith("```python\nx = 1\ny = 2\n```")  # code keeps its lines
    assert unwrapped("Title\n-----\nBody text.") == "Title\n-----\nBody text."  # a Setext heading


def test_code_and_list_items_are_read_with_the_sentence_that_leads_to_them() -> None:
    flat = unwrapped(OPTIONS)
    spans = with_asides(flat, sentences(flat))
    texts = [flat[a:b] for a, b in spans]
    assert "- `max_items`, most items kept, or `None` for no limits. (Default 100)" in texts
    assert led(flat, spans) == [
        "It takes instances of `pool.Limits` which define: "
        "- `max_idle`, number of idle connections kept, or `None` to always keep. (Defaults 20)",
        "It takes instances of `pool.Limits` which define: - `max_items`, most items kept, or `None` for no limits. "
        "(Default 100)",
    ]
    spans = sentences(CODE)
    assert led(CODE, spans) == [
        "Or turn the cap off for a single call:\n```python\n# With the top-level API:\n"
        "fetch('http://example.com', cap=None)\n```"
    ]
    assert [CODE[a:b] for a, b in fences(CODE)] == [CODE[CODE.index("```") :].rstrip()]


def test_the_pieces_of_a_long_code_block_read_as_code() -> None:
    # The chunker cuts a block longer than a chunk into chunks of its own; with a bare fence
    # the first piece's fence read as closing a block, and its log lines as prose.
    log = "\n".join(f"20:54:17.{i:03} - pool - event {i} version='2'" for i in range(30))
    text = f"Turn debug logs on to see this.\n\n```\n{log}\n```\n\nThat is all."
    doc = LoadedDocument(Path("guide.md"), "markdown", [Section(text)])
    chunks = chunk_document(doc, lambda ts: [len(t.split()) for t in ts], max_tokens=60, target_tokens=50, overlap=0.1)
    pieces = [c.text for c in chunks if "pool" in c.text]
    first, last = pieces[0], pieces[-1]
    assert first.startswith("```\n20:54") and fences(first) == [(0, len(first))]
    assert last.endswith("```") and fences(last) == [(0, len(last))]
    assert fences("```\nx = 1\n```\n\nText.") == [(0, 13)]  # a whole block at the start


def supported(sentence: str, text: str) -> bool:
    return support.check(f"{sentence} [1]", [hit(1, text, "guide.md")])[0].supported


def test_a_manual_sentence_is_supported_across_wrapped_lines_asides_and_leads() -> None:
    # Each was unsupported when the check read a line, "(Default 100)" or a colon's lead alone.
    assert supported("The default value of max_items in pool.Limits is 100.", OPTIONS)
    assert supported("pool.Limits keeps 20 idle connections by default.", OPTIONS)
    assert supported("To turn the cap off for a single call, set cap to None.", CODE)
    wrapped = "If the client fails to connect\nwithin the time allowed, a `ConnectTimeout` exception is raised."
    assert supported("A ConnectTimeout exception is raised if the client fails to connect within the time.", wrapped)
    # A number from another item of the list still backs nothing.
    assert not supported("The default value of max_items in pool.Limits is 20.", OPTIONS)


def test_a_negation_stops_at_the_end_of_its_clause() -> None:
    assert Claim.of("It has no limits. (Default 100)").polarity.negated == frozenset({"limit"})
    assert Claim.of("It has no upper limits.").polarity.negated == frozenset({"upper", "limit"})


def test_a_sentence_pointing_back_falls_with_an_unsupported_one_before_it() -> None:
    source = hit(1, "Run `tool add NAME` to add a package. This command installs the package and its dependencies.")
    invented = "To upload a package, use Twine. This command installs the package and its dependencies. [1]"
    assert [s.supported for s in support.check(invented, [source])] == [False, False]
    true = "To add a package, run `tool add NAME`. This command installs the package and its dependencies. [1]"
    assert [s.supported for s in support.check(true, [source])] == [True, True]
    # "It took ... to" points at nothing: the 0.5B Qwen's true "It took French troops years to
    # hunt down ... the Camisards" fell with the unsupported sentence before it
    source = hit(1, "It took French troops years to hunt down the bands of Camisards.")
    dummy = "The Camisards rioted in Paris. It took French troops years to hunt down the bands of Camisards. [1]"
    assert [s.supported for s in support.check(dummy, [source])] == [False, True]


def test_a_code_span_must_be_in_the_source_as_written() -> None:
    source = hit(1, "Run `tool add NAME` to add a package to the project.")
    assert not supported("To upload a package to the project, run `tool upload`.", source.text)
    assert supported("To add a package to the project, run `tool add NAME`.", source.text)
