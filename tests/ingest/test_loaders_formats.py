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
        # Labels as Project Gutenberg writes them, with HTML's &nbsp; (not an XML entity).
        items = (
            f'<li><a href="{href}">{label.replace(" ", "&nbsp;")}</a>{nav(kids) if kids else ""}</li>'
            for label, href, kids in entries
        )
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

    doc = load(Path(__file__).parents[1] / "fixtures" / "pdf" / name, LoadOptions(ocr="never"))
    assert doc.sections and not any(quality(s.text).garbled for s in doc.sections)


def test_gibberish_is_told_from_text_in_any_script() -> None:
    from rag.ingest.loaders.quality import looks_garbled, quality
    from tests.ingest.test_ocr import GARBAGE

    assert quality(GARBAGE).garbled
    assert not quality(GARBAGE[:60]).garbled  # too few words to judge
    korean = "2020년 3월 30일 회의에서 예산안이 승인되었다. " * 5
    russian = "Совет директоров утвердил бюджет на следующий год. " * 5
    german = "Die Dimensionsformel gilt für jeden Simplizialkomplex, wie im Beweis gezeigt wird. " * 3
    assert not any(quality(text).garbled for text in (korean, russian, german))
    for text in (GARBAGE, GARBAGE[:60], korean, russian, german, "The keeper wrote daily. " * 10):
        assert looks_garbled(text) == quality(text).garbled  # the fast path agrees


# --- .msg (Outlook) ----------------------------------------------------------------------------


def write_cfb(path: Path, streams: dict[str, bytes]) -> Path:
    """An OLE Compound File (version 3, 512-byte sectors) holding ``streams`` ("storage/stream" names).

    Each stream is padded with NULs to the 4,096-byte mini-stream cutoff, so that every one
    lives in regular sectors and no mini stream is needed (.msg strings may end in NULs).
    """
    import struct

    sector, free, end, fat_mark = 512, 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
    entries: list[dict[str, Any]] = [{"name": "Root Entry", "type": 5, "kids": [], "data": b""}]
    index = {"": 0}
    for full, data in streams.items():
        parts = full.split("/")
        for depth in range(len(parts)):
            key, parent = "/".join(parts[: depth + 1]), "/".join(parts[:depth])
            if key not in index:
                leaf = depth == len(parts) - 1
                index[key] = len(entries)
                entries.append(
                    {"name": parts[depth], "type": 2 if leaf else 1, "kids": [], "data": data if leaf else b""}
                )
                entries[index[parent]]["kids"].append(index[key])
    body = bytearray()
    fat: list[int] = []
    for entry in entries:
        entry["start"], entry["size"] = (end if entry["type"] == 5 else 0), 0
        if entry["type"] == 2:
            data = entry["data"].ljust(4096, b"\0")
            count = -(-len(data) // sector)
            entry["start"], entry["size"] = len(fat), len(data)
            fat += [*range(len(fat) + 1, len(fat) + count), end]
            body += data.ljust(count * sector, b"\0")
    for entry in entries:  # each storage's children as a chain of right siblings
        kids = entry["kids"]
        entry["child"] = kids[0] if kids else free
        for i, this in enumerate(kids):
            entries[this]["right"] = kids[i + 1] if i + 1 < len(kids) else free
    directory = b""
    for entry in entries:
        name = entry["name"].encode("utf-16-le")
        directory += struct.pack(
            "<64sHBBIII16sIQQIII", name, len(name) + 2, entry["type"], 1, free, entry.get("right", free),
            entry["child"], b"", 0, 0, 0, entry["start"], entry["size"], 0,
        )  # fmt: skip
    empty = struct.pack("<64sHBBIII16sIQQIII", b"", 0, 0, 0, free, free, free, b"", 0, 0, 0, 0, 0, 0)
    directory += empty * (-len(entries) % 4)
    first_directory = len(fat)
    count = len(directory) // sector
    fat += [*range(len(fat) + 1, len(fat) + count), end]
    body += directory
    fat_sectors = 1
    while len(fat) + fat_sectors > 128 * fat_sectors:
        fat_sectors += 1
    first_fat = len(fat)
    fat += [fat_mark] * fat_sectors
    fat += [free] * (128 * fat_sectors - len(fat))
    body += struct.pack(f"<{len(fat)}I", *fat)
    difat = [*range(first_fat, first_fat + fat_sectors)] + [free] * (109 - fat_sectors)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII", bytes.fromhex("D0CF11E0A1B11AE1"), b"", 0x3E, 3, 0xFFFE, 9, 6, b"", 0,
        fat_sectors, first_directory, 0, 4096, end, 0, end, 0,
    ) + struct.pack("<109I", *difat)  # fmt: skip
    path.write_bytes(header + bytes(body))
    return path


def make_msg(path: Path, body: str | None = "The crane arrives on Friday.", html: bytes | None = None) -> Path:
    """An Outlook message as [MS-OXMSG] lays it out, with a CSV attachment."""
    import struct

    def text(value: str) -> bytes:
        return value.encode("utf-16-le")

    sent = (1_709_632_800 + 11_644_473_600) * 10_000_000  # 2024-03-05 10:00 UTC as a FILETIME
    streams = {
        "__substg1.0_0037001F": text("Crane delivery"),
        "__substg1.0_0C1A001F": text("Ana Costa"),
        "__substg1.0_5D01001F": text("ana@example.org"),
        "__substg1.0_0E04001F": text("Harbour office"),
        "__properties_version1.0": bytes(32) + struct.pack("<HHIQ", 0x0040, 0x0039, 6, sent),
        "__attach_version1.0_#00000000/__substg1.0_3707001F": text("tides.csv"),
        "__attach_version1.0_#00000000/__substg1.0_37010102": b"port,high water\n"
        + b"".join(b"Port%d,06:%02d\n" % (i, i % 60) for i in range(400)),
        "__attach_version1.0_#00000000/__properties_version1.0": bytes(8),
    }
    if body is not None:
        streams["__substg1.0_1000001F"] = text(body)
    if html is not None:
        streams["__substg1.0_10130102"] = html
    return write_cfb(path, streams)


def test_msg_heading_body_and_a_loaded_attachment(tmp_path: Path) -> None:
    doc = load(make_msg(tmp_path / "crane.msg"))
    assert doc.kind == "msg"
    heading = "Crane delivery — Ana Costa <ana@example.org> — Tue, 05 Mar 2024 10:00:00 +0000"
    first = doc.sections[0]
    assert first.heading == (heading,)
    assert first.text.startswith("Subject: Crane delivery\nFrom: Ana Costa <ana@example.org>\nTo: Harbour office")
    assert "Attachments: tides.csv" in first.text and first.text.endswith("The crane arrives on Friday.")
    rows = [s for s in doc.sections if s.heading[:2] == (heading, "attachment: tides.csv")]
    assert rows and "Port7" in rows[0].text
    assert location(str(tmp_path / "crane.msg"), None, heading).endswith(f"crane.msg:{heading}")


def test_msg_with_only_an_html_body(tmp_path: Path) -> None:
    html = b"<html><body><p>The crane arrives on <b>Friday</b>.</p></body></html>"
    doc = load(make_msg(tmp_path / "crane.msg", body=None, html=html))
    assert doc.sections[0].text.endswith("The crane arrives on Friday.")


def test_bad_msg_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "fake.msg").write_bytes(b"From: someone\n\nnot an OLE file")
    with pytest.raises(DocumentError, match=r"not an Outlook \.msg \(not an OLE compound file\)"):
        load(tmp_path / "fake.msg")
    write_cfb(tmp_path / "other.msg", {"WordDocument": b"x"})
    with pytest.raises(DocumentError, match="without message properties"):
        load(tmp_path / "other.msg")
    data = make_msg(tmp_path / "cut.msg").read_bytes()
    (tmp_path / "cut.msg").write_bytes(data[:1500])
    with pytest.raises(DocumentError, match=r"damaged \.msg"):
        load(tmp_path / "cut.msg")
