"""The loaders for Office files, tables, e-books, mail and headed text, on files built here."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from rag.ingest.loaders import FILE_TYPES, kind_named, load
from rag.results import location
from tests.helpers import failure
from tests.office_files import make_docx, make_eml, make_epub, make_pptx, make_xlsx, zip_bomb_docx


def section_with(doc, needle: str):
    found = [s for s in doc.sections if needle in s.text]
    assert found, f"{needle!r} not in any section"
    return found[0]


def assert_offsets_joined(doc) -> None:
    """Each section's ``offset`` points at its text in the sections joined by blank lines."""
    joined = "\n\n".join(s.text for s in doc.sections)
    for s in doc.sections:
        assert joined[s.offset : s.offset + len(s.text)] == s.text


# --- .docx -----------------------------------------------------------------------------------


def test_docx_sections_follow_headings_with_pages_and_tables(tmp_path: Path) -> None:
    doc = load(make_docx(tmp_path / "survey.docx"))
    assert doc.kind == "docx"
    methods = section_with(doc, "twelve transects")
    assert methods.heading == ("Harbour Survey 2024", "Methods")
    assert methods.page == 1
    water = section_with(doc, "Turbidity")
    assert water.heading == ("Harbour Survey 2024", "Results", "Water quality")
    costs = section_with(doc, "Boat hire")
    assert costs.heading == ("Harbour Survey 2024", "Results", "Costs")
    assert costs.page == 2  # after the page break
    assert "Item: Boat hire | Cost: 4,200 EUR" in costs.text  # each row keeps its header
    assert_offsets_joined(doc)
    assert location(str(tmp_path / "survey.docx"), costs.page, " > ".join(costs.heading)).endswith(
        "survey.docx:Harbour Survey 2024 > Results > Costs (page 2)"
    )


def test_docx_without_page_breaks_has_no_pages(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Only", level=1)
    document.add_paragraph("One page of text.")
    document.save(str(tmp_path / "a.docx"))
    assert [s.page for s in load(tmp_path / "a.docx").sections] == [None]


def test_docx_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    path = zip_bomb_docx(tmp_path / "bomb.docx")
    assert path.stat().st_size < 64 * 1024
    assert failure(path).startswith("zip bomb? members claim 3.0 GB uncompressed")


def test_password_protected_docx_is_named_as_such(tmp_path: Path) -> None:
    pytest.importorskip("msoffcrypto", reason="msoffcrypto-tool (test extra) encrypts the .docx")
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = make_docx(tmp_path / "plain.docx")
    with plain.open("rb") as source, (tmp_path / "locked.docx").open("wb") as target:
        OOXMLFile(source).encrypt("secret", target)
    assert failure(tmp_path / "locked.docx") == "password-protected .docx (encrypted Office file)"


def test_truncated_and_fake_office_files(tmp_path: Path) -> None:
    data = make_xlsx(tmp_path / "full.xlsx").read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
    assert failure(tmp_path / "cut.xlsx") == "damaged .xlsx (truncated or corrupt zip archive)"
    (tmp_path / "fake.pptx").write_bytes(b"just text, not a deck")
    assert failure(tmp_path / "fake.pptx") == "not a .pptx (not a zip archive)"


# --- .pptx -----------------------------------------------------------------------------------


def test_pptx_slides_are_pages_with_titles_bodies_notes_and_tables(tmp_path: Path) -> None:
    doc = load(make_pptx(tmp_path / "deck.pptx"))
    assert doc.kind == "pptx"
    assert [s.page for s in doc.sections] == [1, 2, 3, 4]
    launch = section_with(doc, "Falcon launch")
    assert launch.page == 2 and launch.heading == ("Product launch",)
    assert launch.text.startswith("Product launch\n\n")
    assert "Notes: Mention that the backup supplier is in Porto." in section_with(doc, "Porto").text
    assert "Team: Hydrology | People: 17" in section_with(doc, "Hydrology").text
    assert location(str(tmp_path / "deck.pptx"), 2, "Product launch").endswith("deck.pptx:slide 2")


# --- .xlsx, .csv, .tsv ------------------------------------------------------------------------


def test_xlsx_blocks_of_rows_repeat_the_header_and_know_their_rows(tmp_path: Path) -> None:
    doc = load(make_xlsx(tmp_path / "flows.xlsx"))
    assert doc.kind == "xlsx"
    stations = [s for s in doc.sections if s.heading[0] == "Stations"]
    assert len(stations) > 1
    for s in stations:  # every row is a record naming its columns
        assert all(line.startswith("Station: ST-") and "| Flow (m3/s): " in line for line in s.text.split("\n"))
    ranges = [s.heading[1] for s in stations]
    assert ranges[0].startswith("rows 2-")
    assert ranges[-1].endswith("-61")
    # Consecutive blocks cover every row exactly once.
    bounds = [tuple(int(n) for n in r.removeprefix("rows ").split("-")) for r in ranges]
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(bounds))
    guadiana = section_with(doc, "Guadiana")
    first, last = (int(n) for n in guadiana.heading[1].removeprefix("rows ").split("-"))
    assert first <= 38 <= last  # ST-037 is the 37th data row, row 38 in Excel
    assert section_with(doc, "moved upstream").heading == ("Notes", "rows 2")
    where = location(str(tmp_path / "flows.xlsx"), None, " > ".join(guadiana.heading))
    assert where.endswith(f"flows.xlsx:Stations!rows {first}-{last}")
    assert_offsets_joined(doc)


def test_xlsx_title_rows_and_a_two_row_header_travel_with_every_block(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Zones"
    sheet.append(["Half-year results by zone, January–June 2023"])
    sheet.append(["In millions of CHF"])
    sheet.append([])
    sheet.append(["", "Sales", None, "Organic growth", None])
    sheet.append(["Zone", "2023", "2022", "2023", "2022"])
    for i in range(60):
        sheet.append([f"Zone {i:02d}", 9000 + i, 8000 + i, f"{i / 10:.1f}%", "1.0%"])
    sheet.merge_cells("B4:C4")
    sheet.merge_cells("D4:E4")
    book.save(str(tmp_path / "zones.xlsx"))
    doc = load(tmp_path / "zones.xlsx")
    assert len(doc.sections) > 1
    for section in doc.sections:
        lines = section.text.split("\n")
        assert lines[:2] == ["# Half-year results by zone, January–June 2023", "# In millions of CHF"]
        assert all(line.startswith("Zone: Zone ") for line in lines[2:])
    row = section_with(doc, "Zone 07")
    record = "Zone: Zone 07 | Sales 2023: 9007 | Sales 2022: 8007 | Organic growth 2023: 0.7%"
    assert record in row.text
    first = doc.sections[0].heading
    assert first[0] == "Zones" and first[1].startswith("rows 6-")  # the first row below the header
    assert_offsets_joined(doc)


def test_a_word_table_with_a_title_row_and_merged_header_cells(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Survey results.")
    table = document.add_table(rows=5, cols=3)
    title = table.cell(0, 0).merge(table.cell(0, 2))
    title.text = "Mussels per transect, May 2024"
    table.cell(1, 0).text = "Site"
    counts = table.cell(1, 1).merge(table.cell(1, 2))
    counts.text = "Count"
    for c, text in enumerate(["", "North", "South"]):
        table.cell(2, c).text = text
    for r, cells in enumerate([("Berries bank", "50", "12"), ("Leaves bank", "7", "30")], start=3):
        for c, text in enumerate(cells):
            table.cell(r, c).text = text
    document.save(str(tmp_path / "survey.docx"))
    text = load(tmp_path / "survey.docx").sections[0].text
    assert text.split("\n")[2:] == [
        "# Mussels per transect, May 2024",
        "Site: Berries bank | Count North: 50 | Count South: 12",
        "Site: Leaves bank | Count North: 7 | Count South: 30",
    ]


def test_a_long_word_or_slide_table_is_cut_into_blocks_each_led_by_its_title(tmp_path: Path) -> None:
    import docx
    from pptx import Presentation
    from pptx.util import Inches

    rows = [("Mussel counts, May 2024", ""), ("Transect", "Count")] + [(f"T-{n:02d}", str(n * 7)) for n in range(60)]
    document = docx.Document()
    document.add_heading("Counts", level=1)
    table = document.add_table(rows=len(rows), cols=2)
    table.cell(0, 0).merge(table.cell(0, 1))
    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Counts"
    shape = slide.shapes.add_table(len(rows), 2, Inches(1), Inches(1), Inches(6), Inches(6))
    shape.table.cell(0, 0).merge(shape.table.cell(0, 1))
    for r, cells in enumerate(rows):
        for c, text in enumerate(cells):
            if text:
                table.cell(r, c).text = text
                shape.table.cell(r, c).text = text
    document.save(str(tmp_path / "counts.docx"))
    deck.save(str(tmp_path / "counts.pptx"))
    for name in ("counts.docx", "counts.pptx"):
        blocks = [s for s in load(tmp_path / name).sections if "Transect: " in s.text]
        assert len(blocks) > 2, name
        for block in blocks:
            lines = block.text.split("\n")
            assert lines[0] == "# Mussel counts, May 2024"
            assert all(line.startswith("Transect: T-") for line in lines[1:])
        assert "Transect: T-42 | Count: 294" in "\n".join(b.text for b in blocks)


@pytest.mark.parametrize(
    ("rows", "first"),
    [
        # A first row of text whose cells come again below in the same column: a row.
        ("Purple,Violet,Lavender\nGreen,Olive,Lime\nPurple,Plum,Mauve\n", "Column 1: Purple | Column 2: Violet"),
        # Dates and addresses are values, not column names.
        ("2020-03-30,Opening,Gent\n2020-04-02,Meeting,Brugge\n", "Column 1: 2020-03-30 | Column 2: Opening"),
        ("anna@example.org,Anna\nphilip@example.org,Philip\n", "Column 1: anna@example.org | Column 2: Anna"),
        # A header is still a header.
        ("Colour,Shade\nPurple,Violet\nGreen,Olive\n", "Colour: Purple | Shade: Violet"),
    ],
)
def test_a_header_less_table_names_its_columns_by_number(tmp_path: Path, rows: str, first: str) -> None:
    (tmp_path / "t.csv").write_text(rows, encoding="utf-8")
    assert load(tmp_path / "t.csv").sections[0].text.startswith(first)


def test_a_table_whose_first_row_holds_numbers_has_no_header(tmp_path: Path) -> None:
    (tmp_path / "plain.csv").write_text("1,Anna,41\n2,Philip,36\n", encoding="utf-8")
    assert load(tmp_path / "plain.csv").sections[0].text == (
        "Column 1: 1 | Column 2: Anna | Column 3: 41\nColumn 1: 2 | Column 2: Philip | Column 3: 36"
    )
    # A column of text above a table is no title to repeat in every chunk (three rows at most are).
    notes = "".join(f"Note {n}\n" for n in range(5)) + "a,b\n1,2\n"
    (tmp_path / "notes.csv").write_text(notes, encoding="utf-8")
    assert not any(line.startswith("#") for s in load(tmp_path / "notes.csv").sections for line in s.text.split("\n"))


def test_csv_dialect_is_sniffed_and_rows_are_line_numbers(tmp_path: Path) -> None:
    lines = ["city;population;note"] + [f"Town{i};{1000 + i};" for i in range(1, 80)]
    lines[50] = 'Évora;56596;"historic centre,\nUNESCO site"'
    (tmp_path / "towns.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = load(tmp_path / "towns.csv")
    assert doc.kind == "csv"
    evora = section_with(doc, "Évora")
    assert "city: Évora | population: 56596 | note: historic centre, UNESCO site" in evora.text
    assert evora.text.startswith("city: Town")
    first, last = (int(n) for n in evora.heading[0].removeprefix("rows ").split("-"))
    assert first <= 51 <= last
    assert location(str(tmp_path / "towns.csv"), None, evora.heading[0]).endswith(f"towns.csv:rows {first}-{last}")


def test_tsv_is_tab_separated(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text("a\tb\n1,5\t2\n", encoding="utf-8")
    assert load(tmp_path / "t.tsv").sections[0].text == "a: 1,5 | b: 2"


def test_csv_with_mixed_encodings_is_read_line_by_line_with_a_warning(tmp_path: Path) -> None:
    data = b"name,city\n" + "José,Lisboa\n".encode("cp1252") + "Zoë,Köln\n".encode()
    (tmp_path / "mixed.csv").write_bytes(data)
    doc = load(tmp_path / "mixed.csv")
    assert "name: José | city: Lisboa" in doc.sections[0].text and "name: Zoë | city: Köln" in doc.sections[0].text
    assert doc.warnings == ["mixed encodings: 1 line(s) read as cp1252, 1 as UTF-8"]


# --- .epub -----------------------------------------------------------------------------------


def test_epub_chapters_in_spine_order_titled_by_the_table_of_contents(tmp_path: Path) -> None:
    doc = load(make_epub(tmp_path / "keepers.epub"))
    assert doc.kind == "epub"
    assert [s.heading for s in doc.sections] == [("The Lighthouse",), ("The Storm",)]
    storm = section_with(doc, "1881")
    assert location(str(tmp_path / "keepers.epub"), None, "The Storm").endswith("keepers.epub:The Storm")
    assert storm.text.startswith("The Storm")


# --- .eml ------------------------------------------------------------------------------------


def test_eml_heading_body_and_a_loaded_attachment(tmp_path: Path) -> None:
    attachment = make_docx(tmp_path / "survey.docx").read_bytes()
    doc = load(make_eml(tmp_path / "mail.eml", attachment=("survey.docx", attachment)))
    assert doc.kind == "eml"
    first = doc.sections[0]
    assert first.heading[0].startswith("Budget for the boat repair — Ana Silva <ana@example.org>")
    assert "3,400 euros" in first.text and "Attachments: survey.docx" in first.text
    attached = section_with(doc, "twelve transects")
    assert attached.heading[1] == "attachment: survey.docx"
    assert attached.heading[2:] == ("Harbour Survey 2024", "Methods")


def test_eml_html_body_goes_through_the_html_loader(tmp_path: Path) -> None:
    doc = load(make_eml(tmp_path / "mail.eml", html=True))
    assert "3,400 euros" in doc.sections[0].text
    assert "x()" not in doc.sections[0].text


def test_eml_with_a_broken_mime_tree_names_the_defect(tmp_path: Path) -> None:
    (tmp_path / "broken.eml").write_bytes(
        b'Subject: hi\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\nno boundary ever appears\r\n'
    )
    reason = failure(tmp_path / "broken.eml")
    assert reason.startswith("malformed MIME (") and "Boundary" in reason


# --- text formats with headings ----------------------------------------------------------------


def test_rst_headings_by_adornment_order(tmp_path: Path) -> None:
    text = "=====\nGuide\n=====\n\nIntro.\n\nInstall\n-------\n\nRun pip.\n\nUpgrade\n~~~~~~~\n\nRun it again.\n"
    (tmp_path / "g.rst").write_text(text)
    doc = load(tmp_path / "g.rst")
    assert [s.heading for s in doc.sections] == [("Guide",), ("Guide", "Install"), ("Guide", "Install", "Upgrade")]
    for s in doc.sections:
        assert text[s.offset : s.offset + len(s.text)] == s.text


def test_tex_sections(tmp_path: Path) -> None:
    text = (
        "\\documentclass{article}\n\\begin{document}\n\\section{Intro}\nHello.\n% \\section{Old}\n"
        "\\subsection*{The \\emph{main} result}\nIt holds.\n\\section[short]{Proofs}\nQED.\n"
    )
    (tmp_path / "p.tex").write_text(text)
    doc = load(tmp_path / "p.tex")
    assert [s.heading for s in doc.sections] == [(), ("Intro",), ("Intro", "The main result"), ("Proofs",)]
    assert location(str(tmp_path / "p.tex"), None, "Intro > The main result").endswith("p.tex:Intro > The main result")


@pytest.mark.parametrize(("name", "kind"), [("c.json", "json"), ("c.yaml", "yaml"), ("m.py", "code"), ("m.go", "code")])
def test_structured_text_and_code_read_as_text(tmp_path: Path, name: str, kind: str) -> None:
    (tmp_path / name).write_text("key: value  # the answer is 42\n")
    doc = load(tmp_path / name)
    assert doc.kind == kind and "42" in doc.sections[0].text


def test_every_extension_and_kind_is_a_type_filter() -> None:
    for extension, file_type in FILE_TYPES.items():
        assert kind_named(extension.lstrip(".")) == file_type.kind
        assert kind_named(file_type.kind) == file_type.kind
    assert kind_named("md") == "markdown" and kind_named("nope") is None


@pytest.mark.skipif(shutil.which("tesseract") is not None, reason="checks the message shown without Tesseract")
def test_image_without_tesseract_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert "apt-get install tesseract-ocr" in failure(tmp_path / "scan.png")
