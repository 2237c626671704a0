"""Loaders for the less common types (.xlsm, OpenDocument), on files built here."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rag.errors import DocumentError
from rag.ingest.loaders import LoadOptions, load
from rag.results import location

_ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"'
)
_MIME = {
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
}


def make_odf(path: Path, body: str) -> Path:
    """An OpenDocument file as LibreOffice lays it out: ``body`` is the ``office:body`` content."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", _MIME[path.suffix], compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/manifest.xml",
            '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
            '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
            "</manifest:manifest>",
        )
        z.writestr(
            "content.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODF_NS} office:version="1.3">'
            f"<office:body>{body}</office:body></office:document-content>",
        )
    return path


def test_odt_sections_follow_headings_with_tables_as_records(tmp_path: Path) -> None:
    odt = make_odf(
        tmp_path / "minutes.odt",
        "<office:text>"
        '<text:h text:outline-level="1">Harbour board</text:h>'
        "<text:p>The board met on<text:s/>Tuesday.<text:line-break/>All members came.</text:p>"
        '<text:h text:outline-level="2">Budget</text:h>'
        "<text:list><text:list-item><text:p>Dredging approved.</text:p></text:list-item></text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>Item</text:p></table:table-cell>"
        "<table:table-cell><text:p>Cost</text:p></table:table-cell></table:table-row>"
        "<table:table-row><table:table-cell><text:p>Crane</text:p></table:table-cell>"
        "<table:table-cell><text:p>9,000 EUR</text:p></table:table-cell></table:table-row></table:table>"
        '<text:h text:outline-level="2">Staff</text:h><text:p>Two pilots retire in May.</text:p>'
        "</office:text>",
    )
    doc = load(odt)
    assert doc.kind == "odt"
    assert [s.heading for s in doc.sections] == [
        ("Harbour board",),
        ("Harbour board", "Budget"),
        ("Harbour board", "Staff"),  # a sibling of Budget, not under it
    ]
    assert doc.sections[0].text == "The board met on Tuesday.\nAll members came."
    assert "Dredging approved." in doc.sections[1].text and "Item: Crane | Cost: 9,000 EUR" in doc.sections[1].text
    assert location(str(odt), None, "Harbour board > Staff").endswith("minutes.odt:Harbour board > Staff")


def test_ods_rows_keep_sheet_and_row_numbers_through_repeats(tmp_path: Path) -> None:
    def row(*cells: str, repeat: int = 1) -> str:
        inner = "".join(f"<table:table-cell><text:p>{c}</text:p></table:table-cell>" for c in cells)
        # LibreOffice pads each row with an empty cell repeated to the sheet's last column.
        inner += '<table:table-cell table:number-columns-repeated="16378"/>'
        return f'<table:table-row table:number-rows-repeated="{repeat}">{inner}</table:table-row>'

    ods = make_odf(
        tmp_path / "tides.ods",
        '<office:spreadsheet><table:table table:name="Tides">'
        + row("Port", "High water")
        + row("", repeat=2)  # rows 2-3 empty
        + row("Sines", "06:12")
        + '<table:table-row table:number-rows-repeated="1048572"><table:table-cell/></table:table-row>'
        + "</table:table></office:spreadsheet>",
    )
    doc = load(ods)
    assert doc.kind == "ods"
    [section] = doc.sections
    assert section.heading[0] == "Tides" and section.heading[-1] == "rows 4"
    assert "Sines" in section.text and "06:12" in section.text and "Port" in section.text


def test_odp_slides_are_pages_with_titles_and_notes(tmp_path: Path) -> None:
    odp = make_odf(
        tmp_path / "talk.odp",
        "<office:presentation>"
        '<draw:page draw:name="p1"><draw:frame presentation:class="title"><draw:text-box>'
        "<text:p>Falcon launch</text:p></draw:text-box></draw:frame>"
        "<draw:frame><draw:text-box><text:p>Planned for 14 March.</text:p></draw:text-box></draw:frame>"
        "<presentation:notes><draw:frame><draw:text-box><text:p>Mention the weather window.</text:p>"
        "</draw:text-box></draw:frame></presentation:notes></draw:page>"
        '<draw:page draw:name="p2"><draw:frame><draw:text-box><text:p>Questions?</text:p></draw:text-box>'
        "</draw:frame></draw:page></office:presentation>",
    )
    doc = load(odp)
    assert [(s.page, s.heading) for s in doc.sections] == [(1, ("Falcon launch",)), (2, ())]
    assert doc.sections[0].text == "Falcon launch\n\nPlanned for 14 March.\n\nNotes: Mention the weather window."
    assert location(str(odp), 2, "").endswith("talk.odp:slide 2")


def test_damaged_odf_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.odt"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("content.xml", "<office:document-content")
    with pytest.raises(DocumentError, match=r"damaged \.odt: bad XML"):
        load(broken)
    (tmp_path / "fake.odt").write_text("not a zip")
    with pytest.raises(DocumentError, match=r"not a \.odt"):
        load(tmp_path / "fake.odt")


def make_xlsm(path: Path) -> Path:
    """A macro-enabled workbook: an openpyxl workbook whose main part has the .xlsm content type."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Since 67"
    for values in (["Year", "Boats"], [1967, 42], [1968, 57]):
        sheet.append(values)
    plain = io.BytesIO()
    book.save(plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w") as target:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "[Content_Types].xml":
                data = data.replace(
                    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                    b"application/vnd.ms-excel.sheet.macroEnabled.main+xml",
                )
                assert b"macroEnabled" in data
            target.writestr(member, data)
    return path


def test_xlsm_is_read_as_a_spreadsheet(tmp_path: Path) -> None:
    doc = load(make_xlsm(tmp_path / "fleet.xlsm"))
    [section] = doc.sections
    assert section.heading == ("Since 67", "rows 2-3")
    assert "1967" in section.text and "42" in section.text
    assert location(str(tmp_path / "fleet.xlsm"), None, "Since 67 > rows 2-3").endswith("fleet.xlsm:Since 67!rows 2-3")


# --- .epub: the table of contents' anchors --------------------------------------------------

_BOOK = (
    "<html xmlns='http://www.w3.org/1999/xhtml'><head><title>The Project Gutenberg eBook of Keepers</title></head>"
    "<body><h1>Keepers</h1><p>A book about lighthouses.</p>"
    "<h2 id='c1'>CHAPTER I.</h2><p>The keeper lit the lamp at dusk.</p>"
    "<h2 id='c2'>CHAPTER II.</h2><p>Fog came in from the west.</p>"
    # Chapter III's anchor is on a paragraph, under Chapter II's heading in the HTML.
    "<p id='c3'>Chapter Three</p><p>The storm of 1881 kept the lamp burning for three days.</p>"
    "</body></html>"
)
_LAST = (
    "<html xmlns='http://www.w3.org/1999/xhtml'><head><title>The Project Gutenberg eBook of Keepers</title></head>"
    "<body><h2>CHAPTER IV. THE RELIEF</h2><p>The relief boat came on Sunday.</p>"
    "<h3>The log</h3><p>The log recorded forty ships.</p></body></html>"
)
# (label, href, children): Part One holds two sibling chapters; Part Two holds the next two.
_TOC: list[tuple[str, str, list[Any]]] = [
    ("Part One", "book.xhtml#c1", [("Chapter I", "book.xhtml#c1", []), ("Chapter II", "book.xhtml#c2", [])]),
    ("Part Two", "book.xhtml#c3", [("Chapter III", "book.xhtml#c3", []), ("Chapter IV", "last.xhtml", [])]),
]


def make_anchored_epub(path: Path, version: int) -> Path:
    """Two XHTML files, one holding three chapters at anchors; an EPUB 3 nav or an EPUB 2 NCX."""

    def nav(entries: list[Any]) -> str:
        items = (f'<li><a href="{href}">{label}</a>{nav(kids) if kids else ""}</li>' for label, href, kids in entries)
        return f"<ol>{''.join(items)}</ol>"

    def ncx(entries: list[Any]) -> str:
        return "".join(
            f'<navPoint id="n{label.replace(" ", "")}"><navLabel><text>{label}</text></navLabel>'
            f'<content src="{href}"/>{ncx(kids)}</navPoint>'
            for label, href, kids in entries
        )

    toc_item = (
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        if version == 3
        else '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        z.writestr(
            "OEBPS/content.opf",
            f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}.0"><manifest>{toc_item}'
            '<item id="b" href="book.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="l" href="last.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="b"/><itemref idref="l"/></spine></package>',
        )
        if version == 3:
            z.writestr(
                "OEBPS/nav.xhtml",
                '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><body>'
                '<nav epub:type="landmarks"><ol><li><a href="last.xhtml">Landmark, not a chapter</a></li></ol></nav>'
                f'<nav epub:type="toc"><h1>Contents</h1>{nav(_TOC)}</nav></body></html>',
            )
        else:
            z.writestr(
                "OEBPS/toc.ncx",
                '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
                f"<navMap>{ncx(_TOC)}</navMap></ncx>",
            )
        z.writestr("OEBPS/book.xhtml", _BOOK)
        z.writestr("OEBPS/last.xhtml", _LAST)
    return path


@pytest.mark.parametrize("version", [3, 2])
def test_epub_passages_are_headed_by_the_toc_entry_whose_anchor_precedes_them(tmp_path: Path, version: int) -> None:
    doc = load(make_anchored_epub(tmp_path / "keepers.epub", version))

    def heading(needle: str) -> tuple[str, ...]:
        [section] = [s for s in doc.sections if needle in s.text]
        return section.heading

    assert heading("about lighthouses") == ("Keepers",)  # before any entry: the file's own heading
    assert heading("lamp at dusk") == ("Part One", "Chapter I")
    assert heading("Fog came") == ("Part One", "Chapter II")  # a sibling of Chapter I, not under it
    assert heading("storm of 1881") == ("Part Two", "Chapter III")  # its anchor, not the file's first entry
    assert heading("relief boat") == ("Part Two", "Chapter IV", "CHAPTER IV. THE RELIEF")
    assert heading("forty ships") == ("Part Two", "Chapter IV", "CHAPTER IV. THE RELIEF", "The log")
    assert not any("Project Gutenberg" in part for s in doc.sections for part in s.heading)


# --- control characters, whatever the loader ---------------------------------------------


def test_control_characters_leave_every_loader_s_text(tmp_path: Path) -> None:
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Tides"
    slide.placeholders[1].text_frame.text = "High water at six\vLow water at noon"  # a soft return
    deck.save(str(tmp_path / "tides.pptx"))
    [section] = load(tmp_path / "tides.pptx").sections
    assert "High water at six\nLow water at noon" in section.text

    words = " ".join(["The keeper wrote daily."] * 10)
    (tmp_path / "notes.md").write_text(f"# Log\n\n\ufeff{words}\x07\u200b\n", encoding="utf-8")
    [section] = load(tmp_path / "notes.md").sections
    assert section.text == f"# Log\n\n{words}"

    made = make_anchored_epub(tmp_path / "made.epub", 3)
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(tmp_path / "keepers.epub", "w") as target:
        for member in source.infolist():  # the last chapter with a BOM and a soft hyphen inside
            data = source.read(member.filename)
            if member.filename == "OEBPS/last.xhtml":
                data = data.replace(b"The relief boat", "\ufeffThe re\u00adlief boat".encode())
            target.writestr(member, data)
    [section] = [s for s in load(tmp_path / "keepers.epub").sections if "came on Sunday" in s.text]
    assert section.text.endswith("The relief boat came on Sunday.")


# --- is it text or gibberish? ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["google-doc_zen-of-python.pdf", "latex_two-column-lorem.pdf", "us-senate_expenditures.pdf"]
)
def test_real_pages_are_not_gibberish(name: str) -> None:
    from rag.ingest.loaders.quality import quality

    doc = load(Path(__file__).parent / "fixtures" / "pdf" / name, LoadOptions(ocr="never"))
    assert doc.sections and not any(quality(s.text).garbled for s in doc.sections)


def test_gibberish_is_told_from_text_in_any_script() -> None:
    from rag.ingest.loaders.quality import quality
    from tests.test_ocr import GARBAGE

    assert quality(GARBAGE).garbled
    assert not quality(GARBAGE[:60]).garbled  # too few words to judge
    korean = "2020년 3월 30일 회의에서 예산안이 승인되었다. " * 5
    russian = "Совет директоров утвердил бюджет на следующий год. " * 5
    german = "Die Dimensionsformel gilt für jeden Simplizialkomplex, wie im Beweis gezeigt wird. " * 3
    assert not any(quality(text).garbled for text in (korean, russian, german))
