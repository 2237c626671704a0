"""Tables in text formats (Markdown pipe tables, HTML tables, aligned plain text) read as
records with column names, on files the tests write: offsets exact, prose and code left alone,
and a row found by its label offline with the cell under the asked column marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.engine import Engine
from rag.ingest.chunk import chunk_document
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders import load

MARKDOWN = """---
title: Tides
---
# Tides of the Severn

The **Severn estuary** has the second highest tidal range in the world.

## Bore heights

| Town | Bore *height* | Best month |
|:-----|:-------------:|-----------:|
| Minsterworth | 2.0 m | March |
| Newnham | `1.5 m` | [September](https://example.org/sep) |
|  |  |  |
Framilode | 1.2 m \\| 1.4 m
| [Gloucester][glos] | ~~0.5 m~~ | <https://example.org/glos> |

The bore travels at about 13 km/h against the river.

```
| not | a table |
|-----|---------|
| code | stays |
```
"""


def _extracted(doc: LoadedDocument) -> str:
    """The loader's text: its sections at their offsets (the gaps are the file's own text)."""
    size = max(s.offset + len(s.text) for s in doc.sections)
    chars = [" "] * size
    for s in doc.sections:
        chars[s.offset : s.offset + len(s.text)] = s.text
    return "".join(chars)


def test_a_markdown_pipe_table_becomes_records_under_its_heading(tmp_path: Path) -> None:
    (tmp_path / "tides.md").write_text(MARKDOWN, encoding="utf-8")
    doc = load(tmp_path / "tides.md")
    [table] = [s for s in doc.sections if "Town:" in s.text]
    assert table.heading == ("Tides of the Severn", "Bore heights")
    assert table.text.split("\n\n")[1:5] == [  # the empty row is left out
        "Town: Minsterworth | Bore height: 2.0 m | Best month: March",
        "Town: Newnham | Bore height: 1.5 m | Best month: September",
        "Town: Framilode | Bore height: 1.2 m|1.4 m",  # an escaped pipe is no cell separator
        "Town: Gloucester | Bore height: 0.5 m | Best month: https://example.org/glos",
    ]
    assert "|:---" not in table.text and "| not | a table |\n|-----|" in table.text  # code stays code
    # Text before the table keeps the file's offsets; every section points at its text.
    first = doc.sections[0]
    assert MARKDOWN[first.offset : first.offset + len(first.text)] == first.text
    chunks = chunk_document(
        doc, lambda texts: [len(t.split()) for t in texts], max_tokens=40, target_tokens=30, overlap=0.1
    )
    text = _extracted(doc)
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_a_long_markdown_table_is_cut_into_blocks_that_each_know_their_heading(tmp_path: Path) -> None:
    rows = "".join(f"| {n} | {n * n} |\n" for n in range(1, 61))
    source = f"# Squares\n\nIntro.\n\n| Number | Square |\n|---|---|\n{rows}\nOutro after the table.\n"
    (tmp_path / "squares.md").write_text(source, encoding="utf-8")
    doc = load(tmp_path / "squares.md")
    blocks = [s for s in doc.sections if s.text.startswith("Number: ")]
    assert len(blocks) > 1 and all(s.heading == ("Squares",) for s in blocks)
    assert "Number: 13 | Square: 169" in "\n".join(s.text for s in blocks)
    assert doc.sections[-1].text == "Outro after the table."
    text = _extracted(doc)
    assert all(text[s.offset : s.offset + len(s.text)] == s.text for s in doc.sections)


@pytest.mark.parametrize(
    "source",
    [
        "A sentence with a | pipe in it.\nAnother | one.\n",  # no delimiter row
        "| a | b |\n|---|\n| 1 | 2 |\n",  # the delimiter's cells do not match the header's
        "    | a | b |\n    |---|---|\n    | 1 | 2 |\n",  # indented code
        "~~~\n| a | b |\n|---|---|\n~~~\n",  # fenced code
    ],
)
def test_markdown_that_is_no_pipe_table_stays_as_written(tmp_path: Path, source: str) -> None:
    (tmp_path / "notes.md").write_text(source, encoding="utf-8")
    doc = load(tmp_path / "notes.md")
    assert [s.text for s in doc.sections] == [source]


HTML_PAGE = """<html><head><title>Tides</title></head><body><h1>Tides</h1><p>Intro.</p>
<h2>Bore heights</h2>
<table><caption>Measured in 2023</caption>
<thead><tr><th>Town</th><th>Bore height</th><th>Best<br>month</th></tr></thead>
<tbody><tr><td>Minsterworth</td><td>2.0 m</td><td>March</td></tr>
<tr><td id="newnham">Newnham</td><td><b>1.5</b> m</td><td>September</td></tr></tbody>
</table>
<p>After the table.</p>
<table role="presentation"><tr><td>Left column</td><td>Right column</td></tr><tr><td>a</td><td>b</td></tr></table>
<table><tr><td>Too long</td><td>LONG</td></tr><tr><td>x</td><td>y</td></tr></table>
</body></html>""".replace("LONG", "word " * 80)


def test_an_html_table_becomes_records_and_a_layout_table_stays_cells(tmp_path: Path) -> None:
    from rag.ingest.loaders.html import visible_text

    (tmp_path / "tides.html").write_text(HTML_PAGE, encoding="utf-8")
    doc = load(tmp_path / "tides.html")
    [section] = [s for s in doc.sections if s.heading == ("Tides", "Bore heights")]
    assert section.text.splitlines()[2:5] == [
        "# Measured in 2023",  # the caption is the table's title
        "Town: Minsterworth | Bore height: 2.0 m | Best month: March",
        "Town: Newnham | Bore height: 1.5 m | Best month: September",
    ]
    assert "Left column | Right column\na | b" in section.text  # role="presentation": laid out
    assert "Too long | word word" in section.text  # prose in a cell: laid out
    page = visible_text(tmp_path / "tides.html", HTML_PAGE.encode())
    assert page.text[page.anchors["newnham"] :].startswith("# Measured in 2023")  # an anchor inside: the table
    assert all(page.text[s.offset : s.offset + len(s.text)] == s.text for s in doc.sections)


def test_a_table_in_an_html_mail_body_becomes_records(tmp_path: Path) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "Crane quotes"
    message["From"] = "ana@example.org"
    body = (
        "<p>The quotes:</p><table><tr><th>Supplier</th><th>Price</th></tr><tr><td>Liebherr</td><td>9,000 EUR</td></tr>"
    )
    message.set_content(body + "<tr><td>Demag</td><td>8,400 EUR</td></tr></table>", subtype="html")
    (tmp_path / "quotes.eml").write_bytes(bytes(message))
    text = "\n".join(s.text for s in load(tmp_path / "quotes.eml").sections)
    assert "Supplier: Demag | Price: 8,400 EUR" in text


TEXT_REPORT = """Harbour report, spring 2024

Tonnage landed by quay
  North quay      1200      2023-04-01
  South quay       840      2023-04-02
  Fish dock       2310      2023-04-03

Crane hire
Crane        Rate     Operator
---------    ------   ----------
Liebherr     90 EUR   Ana Costa
Demag        75 EUR   Rui Pinto
Small jib             Rui Pinto

The harbour master  thanks the crews.  Two spaces  after a full stop
are old  typewriter habit,  and they do  not make  a table  of this
paragraph  even when  a line  or two  happen to  line up.

    total = 0              # the sum so far
    count = 1              # rows read
    names = []             # who came
"""


def test_aligned_plain_text_tables_become_records_and_prose_and_code_stay(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text(TEXT_REPORT, encoding="utf-8")
    doc = load(tmp_path / "report.txt")
    text = _extracted(doc)
    assert all(text[s.offset : s.offset + len(s.text)] == s.text for s in doc.sections)
    lines = text.splitlines()
    # Header-less (the first row holds numbers): columns by number, the line above its title.
    assert lines[2:6] == [
        "# Tonnage landed by quay",
        "Column 1: North quay | Column 2: 1200 | Column 3: 2023-04-01",
        "Column 1: South quay | Column 2: 840 | Column 3: 2023-04-02",
        "Column 1: Fish dock | Column 2: 2310 | Column 3: 2023-04-03",
    ]
    # Under a rule of dashes: the rule says where the columns are, an empty cell is left out.
    assert lines[7:11] == [
        "# Crane hire",
        "Crane: Liebherr | Rate: 90 EUR | Operator: Ana Costa",
        "Crane: Demag | Rate: 75 EUR | Operator: Rui Pinto",
        "Crane: Small jib | Operator: Rui Pinto",
    ]
    assert text.endswith(TEXT_REPORT[TEXT_REPORT.index("The harbour master") :].rstrip())  # prose, code: as written
    assert TEXT_REPORT.startswith(doc.sections[0].text[: len("Harbour report, spring 2024")])


@pytest.mark.parametrize(
    "source",
    [
        "Name          Role\nAna Costa     harbour master\nRui Pinto     crane operator\n",  # words only
        "1.  Introduction ............    1\n2.  Cranes ..................    4\n3.  Tonnage .................    9\n",
        "a\t1\t2\nb\t3\t4\nc\t5\t6\n",  # tabs: alignment unknown
        "North  12\nSouth  840\n",  # two rows
    ],
)
def test_text_that_is_no_table_stays_as_written(tmp_path: Path, source: str) -> None:
    (tmp_path / "notes.txt").write_text(source, encoding="utf-8")
    assert [s.text for s in load(tmp_path / "notes.txt").sections] == [source]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    folder = tmp_path_factory.mktemp("texttables")
    (folder / "tides.md").write_text(MARKDOWN, encoding="utf-8")
    rows = "".join(f"| {n} | {n * n} | {n**3} |\n" for n in range(1, 41))
    (folder / "powers.md").write_text(
        f"# Powers\n\nSquares and cubes of small numbers.\n\n| Number | Square | Cube |\n|--:|--:|--:|\n{rows}",
        encoding="utf-8",
    )
    (folder / "report.txt").write_text(TEXT_REPORT, encoding="utf-8")
    engine = Engine(
        index="texttables", store=tmp_path_factory.mktemp("store"), embedding__embedder="local", llm__llm="none"
    )
    engine.ingest([folder])
    return engine


@pytest.mark.slow
def test_a_markdown_row_is_found_by_its_label_and_the_asked_cell_is_marked(engine: Engine) -> None:
    answer = engine.ask("What is the cube of 13?")
    assert not answer.refused, answer.text
    assert answer.text.startswith("Number: 13 | Square: 169 | Cube: 2197"), answer.text
    assert [s.text for s in answer.spans][:1] == ["2197"]
    assert answer.citations[0].location.endswith("powers.md")
    answer = engine.ask("What is the best month for the bore at Newnham?")
    assert not answer.refused, answer.text
    assert "Town: Newnham | Bore height: 1.5 m | Best month: September" in answer.text, answer.text
    assert [s.text for s in answer.spans][:1] == ["September"]


@pytest.mark.slow
def test_a_plain_text_row_is_found_by_its_label(engine: Engine) -> None:
    answer = engine.ask("What is the rate of the Demag crane?")
    assert not answer.refused, answer.text
    assert answer.text.startswith("Crane: Demag | Rate: 75 EUR | Operator: Rui Pinto"), answer.text
    assert [s.text for s in answer.spans][:1] == ["75 EUR"]
    assert answer.citations[0].location.endswith("report.txt")


def test_a_table_across_a_section_end_is_left_as_written() -> None:
    from rag.ingest.document import Section
    from rag.ingest.loaders.layout import Table, splice_tables

    table = Table([], ["A", "B"], [(2, ["1", "2"])])
    sections = [Section("intro\n| A | B |", offset=0), Section("| 1 | 2 |", offset=16)]
    assert splice_tables(sections, [(6, 25, table)]) == sections
    inside = splice_tables(sections, [(6, 15, table)])  # inside the first: replaced in place
    assert [s.text for s in inside] == ["intro\nA: 1 | B: 2", "| 1 | 2 |"] and inside[1].offset == 18
