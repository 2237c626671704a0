"""Loaders on real files: PDFs from public test suites, text written here in several encodings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders import SUPPORTED_EXTENSIONS, LoadOptions, decode_text, load
from rag.ingest.loaders.pdf import clean_page_text
from rag.results import CELL_SEPARATOR
from tests.helpers import failure, pdf_bytes

PDF = Path(__file__).parents[1] / "fixtures" / "pdf"


def write(path: Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def assert_offsets_in(doc: LoadedDocument, extracted: str) -> None:
    """Each section's ``offset`` points at its text in ``extracted``, the file's whole text."""
    for section in doc.sections:
        assert extracted[section.offset : section.offset + len(section.text)] == section.text


# --- text and decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "warning"),
    [
        ("utf-8", None),
        ("utf-8-sig", None),
        ("utf-16", "decoded as utf-16"),
        ("utf-32", "decoded as utf-32"),
        ("cp1252", "decoded as cp1252"),
        ("utf-16-le", "decoded as utf_16_le"),  # no byte-order mark
    ],
)
def test_text_in_common_encodings_decodes_correctly(tmp_path: Path, encoding: str, warning: str | None) -> None:
    text = "Le café coûte 3 € — c’est « très » cher.\nNaïve façade, Grüße aus Köln.\n"
    doc = load(write(tmp_path / "note.txt", text, encoding))
    assert doc.kind == "text"
    assert doc.sections[0].text == text
    assert doc.warnings == ([warning] if warning else [])


def test_short_latin1_word_is_not_mojibake(tmp_path: Path) -> None:
    # charset-normalizer alone guesses UTF-16-BE ("捡曩") or cp1250 for inputs like these.
    assert load(write(tmp_path / "a.txt", "café", "latin-1")).sections[0].text == "café"
    french = "Le café coûte trop. Naïve façade, très cher."
    assert load(write(tmp_path / "b.txt", french, "cp1252")).sections[0].text == french


def test_other_legacy_encodings_are_detected(tmp_path: Path) -> None:
    russian = "Привет, как дела? Это текст в кодировке windows-1251, и он довольно длинный.\n"
    doc = load(write(tmp_path / "ru.txt", russian, "cp1251"))
    assert doc.sections[0].text == russian
    assert doc.warnings == ["decoded as cp1251"]


def test_utf8_with_a_stray_byte_keeps_the_rest(tmp_path: Path) -> None:
    data = "Grüße aus Köln, schöne Straße, Äpfel und Öl. ".encode() * 3 + b"\xff end"
    doc = load(write(tmp_path / "mixed.txt", data))
    assert doc.sections[0].text.startswith("Grüße aus Köln")
    assert "\ufffd end" in doc.sections[0].text
    assert doc.warnings == ["decoded as UTF-8 with 1 invalid byte(s) replaced by \ufffd"]


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        bytes(range(1, 32)) * 200,  # control characters, no NUL
        b"text with a NUL\x00 in the middle",
    ],
    ids=["png", "controls", "nul"],
)
def test_binary_named_txt_is_reported(tmp_path: Path, data: bytes) -> None:
    assert failure(write(tmp_path / "image.txt", data)) == "binary file, not text"


def test_empty_and_blank_files_are_reported(tmp_path: Path) -> None:
    assert failure(write(tmp_path / "empty.txt", b"")) == "empty file"
    assert failure(write(tmp_path / "blank.md", b" \n\t\n")) == "empty file"


def test_decode_text_honours_a_declared_encoding() -> None:
    data = "Grüße".encode("cp1252")
    assert decode_text(data, Path("x.html"), declared="cp1252").text == "Grüße"


# --- unreadable files ----------------------------------------------------------------------


def test_broken_symlink_is_reported(tmp_path: Path) -> None:
    link = tmp_path / "gone.txt"
    link.symlink_to(tmp_path / "missing.txt")
    assert failure(link) == "broken symlink"


def as_unprivileged(code: str) -> str:
    """Run Python ``code`` where mode 000 really blocks reading, and return its stdout.

    Root ignores file modes through CAP_DAC_OVERRIDE, so as root the code runs under
    ``setpriv`` with that capability (and CAP_DAC_READ_SEARCH) dropped.
    """
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: mode 000 does not block reading")
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", *command]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.txt", "hidden")
    path.chmod(0)
    code = (
        "from pathlib import Path\n"
        "from rag.errors import DocumentError\n"
        "from rag.ingest.loaders import load\n"
        "try:\n"
        f"    load(Path({str(path)!r}))\n"
        "except DocumentError as e:\n"
        "    print(e.reason)\n"
    )
    try:
        assert as_unprivileged(code) == "permission denied"
    finally:
        path.chmod(0o600)


def test_folder_with_a_text_name_is_reported(tmp_path: Path) -> None:
    (tmp_path / "notes.md").mkdir()
    assert failure(tmp_path / "notes.md") == "is a folder, not a file"


def test_unsupported_extension_is_reported(tmp_path: Path) -> None:
    assert failure(write(tmp_path / "a.pages", "x")) == "unsupported file type '.pages'"
    assert set(SUPPORTED_EXTENSIONS) >= {".txt", ".md", ".markdown", ".pdf", ".html", ".htm"}


def test_extensions_are_case_insensitive(tmp_path: Path) -> None:
    assert load(write(tmp_path / "README.MD", "# Title\n\nBody\n")).kind == "markdown"


# --- Markdown ------------------------------------------------------------------------------

MARKDOWN = """\
---
title: Front matter is metadata
---
Preamble before any heading.

# Guide

Intro to the guide.

## Install ##

```bash
# a comment, not a heading
pip install rag
```

~~~
## also not a heading
~~~

Setext Title
============

Under the setext title.

A sub title
-----------

Under the sub title.

### Deep
Deep text.

# Empty

## Next
Last words.
"""


def test_markdown_sections_carry_heading_paths(tmp_path: Path) -> None:
    doc = load(write(tmp_path / "guide.md", MARKDOWN))
    headings = [s.heading for s in doc.sections]
    assert headings == [
        (),
        ("Guide",),
        ("Guide", "Install"),
        ("Setext Title",),
        ("Setext Title", "A sub title"),
        ("Setext Title", "A sub title", "Deep"),
        ("Empty", "Next"),  # "# Empty" has no text of its own, so no section
    ]
    install = doc.sections[2].text
    assert "# a comment, not a heading" in install and "## also not a heading" in install
    assert "Front matter" not in doc.sections[0].text
    assert_offsets_in(doc, MARKDOWN)


def test_markdown_offsets_are_exact_with_crlf_and_bom(tmp_path: Path) -> None:
    text = MARKDOWN.replace("\n", "\r\n")
    doc = load(write(tmp_path / "crlf.md", text, "utf-8-sig"))
    assert [s.heading for s in doc.sections][:3] == [(), ("Guide",), ("Guide", "Install")]
    assert_offsets_in(doc, text)


def test_markdown_thematic_break_after_blank_line_is_not_a_heading(tmp_path: Path) -> None:
    text = "Para one.\n\n---\n\nPara two.\n- item\n---\n"
    doc = load(write(tmp_path / "hr.md", text))
    assert [s.heading for s in doc.sections] == [()]


# --- HTML ----------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><meta charset="iso-8859-1"><title>Caf\xe9 Guide</title>
<style>body { color: red; }</style>
<script>var markup = "<h1>not a heading</h1>";</script></head>
<body>
<nav>Home</nav>
<h2>Intro &amp; Overview</h2>
<p>Caf&eacute;s   are
   nice.<br>Second&nbsp;line &lt;here&gt;.</p>
<div hidden>hidden div</div><span style="display: none">invisible span</span>
<noscript>enable javascript</noscript><template><p>template text</p></template>
<input type="hidden" name="csrf" value="token123">
<h3>Details</h3>
<ul><li>one</li><li>two <b>bold</b></li></ul>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Bob</td><td>3</td></tr></table>
<pre>  keep
    indentation</pre>
<svg><text>svg label</text></svg>
<h2>Second</h2><p>Last paragraph.</p>
</body></html>
"""


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    doc = load(write(tmp_path / "page.html", HTML, "cp1252"))
    text = "\n\n".join(s.text for s in doc.sections)
    for gone in ("color: red", "not a heading", "hidden div", "invisible span", "javascript",
                 "template text", "token123", "svg label"):  # fmt: skip
        assert gone not in text
    assert "Cafés are nice.\nSecond line <here>." in text
    assert "one\ntwo bold" in text
    assert "Name: Bob | Age: 3" in text  # a table row is a record
    assert "  keep\n    indentation" in text
    assert doc.warnings == ["decoded as cp1252 (declared)"]


def test_html_headings_give_paths_under_the_title(tmp_path: Path) -> None:
    doc = load(write(tmp_path / "page.htm", HTML, "cp1252"))
    assert [s.heading for s in doc.sections] == [
        ("Café Guide",),
        ("Café Guide", "Intro & Overview"),
        ("Café Guide", "Intro & Overview", "Details"),
        ("Café Guide", "Second"),
    ]
    assert doc.sections[1].text.startswith("Intro & Overview\n\nCafés")


def test_html_offsets_are_into_the_visible_text(tmp_path: Path) -> None:
    doc = load(write(tmp_path / "page.html", HTML, "cp1252"))
    last = doc.sections[-1]
    visible_length = last.offset + len(last.text)
    assert visible_length > sum(len(s.text) for s in doc.sections)  # breaks between sections
    # Sections are in order and do not overlap.
    ends = [s.offset + len(s.text) for s in doc.sections]
    assert all(end <= following.offset for end, following in zip(ends, doc.sections[1:], strict=False))


def test_html_with_h1_does_not_prefix_the_title(tmp_path: Path) -> None:
    page = "<title>T</title><h1>Main</h1><p>a</p><h2>Sub</h2><p>b</p>"
    doc = load(write(tmp_path / "p.html", page))
    assert [s.heading for s in doc.sections] == [("Main",), ("Main", "Sub")]


def test_unclosed_hidden_item_hides_only_itself(tmp_path: Path) -> None:
    page = "<ul><li hidden>secret<li>shown one<li>shown two</ul><p>after"
    doc = load(write(tmp_path / "p.html", page))
    assert doc.sections[0].text == "shown one\nshown two\n\nafter"


def test_html_without_visible_text_is_reported(tmp_path: Path) -> None:
    assert failure(write(tmp_path / "s.html", "<script>alert(1)</script>")) == "no visible text"


def test_utf8_page_declaring_latin1_is_read_as_utf8(tmp_path: Path) -> None:
    page = '<meta charset="iso-8859-1"><p>Grüße</p>'
    doc = load(write(tmp_path / "p.html", page))
    assert doc.sections[0].text == "Grüße"
    assert doc.warnings == []


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_pages_are_numbered_sections() -> None:
    doc = load(PDF / "latex_two-column-lorem.pdf")
    assert doc.kind == "pdf"
    assert list(dict.fromkeys(s.page for s in doc.sections)) == [1, 2, 3]
    assert doc.sections[0].text.startswith("Two-Column Document with Lorem Ipsum")
    first = doc.sections[0].text
    assert "adipiscing elit" in first and "adip-\niscing" not in first  # de-hyphenated
    assert "filled" in first and "ﬁ" not in first  # ligature expanded


def text_pdf(pages: Sequence[Sequence[tuple[float, float, str]]]) -> bytes:
    """A PDF of Letter pages, each a list of (x, y, text) set in 10 pt Helvetica."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for page in pages:
        stream = b"".join(
            b"BT /F1 10 Tf %.1f %.1f Td (%s) Tj ET\n" % (x, y, text.encode("latin-1")) for x, y, text in page
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
            % (len(objects))
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return pdf_bytes(objects)


def test_pdf_table_rows_are_records_led_by_title_and_header_on_their_page(tmp_path: Path) -> None:
    prose = [(72, 720, "The harbour office counts crates every week."), (72, 706, "Numbers follow below.")]
    table = [(72, 660, "Crates landed, week 12"), (72, 640, "Quay"), (200, 640, "Crates"), (300, 640, "Inspector")]
    for n in range(1, 41):
        table += [(72, 640 - 14 * n, f"Quay {n}"), (200, 640 - 14 * n, str(n * 13)), (300, 640 - 14 * n, f"Agent {n}")]
    path = tmp_path / "harbour.pdf"
    path.write_bytes(text_pdf([[(72, 720, "Cover page of the harbour report.")], prose + table]))
    doc = load(path)
    assert doc.sections[0].page == 1 and all(s.page == 2 for s in doc.sections[1:])
    assert doc.sections[1].text == "The harbour office counts crates every week.\nNumbers follow below."
    blocks = [s for s in doc.sections if s.heading]
    assert len(blocks) > 1 and blocks[0].heading == ("rows 2-" + blocks[0].heading[0].split("-")[1],)
    for block in blocks:
        lines = block.text.split("\n")
        assert lines[0] == "# Crates landed, week 12"
        assert all(line.startswith("Quay: Quay ") and " | Crates: " in line for line in lines[1:])
    assert "Quay: Quay 13 | Crates: 169 | Inspector: Agent 13" in "\n".join(b.text for b in blocks)
    # Section offsets are into the page's text, sections joined by blank lines.
    page = "\n\n".join(s.text for s in doc.sections[1:])
    assert all(page[s.offset : s.offset + len(s.text)] == s.text for s in doc.sections[1:])


def test_a_pdf_table_going_on_over_a_page_keeps_its_header_and_line_numbers_are_no_table(tmp_path: Path) -> None:
    first = [(72, 700, "Quay"), (200, 700, "Crates"), (300, 700, "Inspector")]
    for n in range(1, 6):
        first += [(72, 700 - 14 * n, f"Quay {n}"), (200, 700 - 14 * n, str(n * 13)), (300, 700 - 14 * n, f"Agent {n}")]
    more = [
        (x, 700 - 14 * (n - 6), text)
        for n in range(6, 11)
        for x, text in ((72, f"Quay {n}"), (200, str(n * 13)), (300, f"Agent {n}"))
    ]
    # A transcript's line numbers beside its text.
    numbered = [(40, 700 - 14 * n, str(n)) for n in range(1, 11)]
    numbered += [(120, 700 - 14 * n, f"MR. SMITH: Line {n} of what was said in court") for n in range(1, 11)]
    path = tmp_path / "harbour.pdf"
    path.write_bytes(text_pdf([first, more, numbered]))
    doc = load(path)
    continued = [s.text for s in doc.sections if s.page == 2]
    assert continued and continued[0].startswith("Quay: Quay 6 | Crates: 78 | Inspector: Agent 6")
    assert [s.heading for s in doc.sections if s.page == 3] == [()]


def test_a_real_pdf_table_is_read_as_records_and_prose_stays_prose() -> None:
    doc = load(PDF / "latex_two-column-lorem.pdf")
    blocks = [s for s in doc.sections if s.heading]
    assert blocks and all(s.page == 3 and s.text.startswith("# Table 1: EU Countries Information\n") for s in blocks)
    rows = "\n".join(s.text for s in blocks)
    assert "Country: Denmark | Population (millions): 5.8 | Area (km2): 42,951 | Capital: Copenhagen" in rows
    assert not any(CELL_SEPARATOR in s.text for s in doc.sections if s.page in (1, 2))
    # Rotated text (the Senate report's side labels) is no table.
    assert not any(s.heading for s in load(PDF / "us-senate_expenditures.pdf").sections)


def test_single_page_pdf() -> None:
    doc = load(PDF / "google-doc_zen-of-python.pdf")
    assert {s.page for s in doc.sections} == {1}  # its prose, and its table of countries as records
    assert "Beautiful is better than ugly." in doc.sections[0].text


def test_pdf_text_comes_right_where_pypdf_reads_noise() -> None:
    """PDFium maps this report's fonts; pypdf's extraction of it is unreadable."""
    from pypdf import PdfReader

    text = load(PDF / "us-senate_expenditures.pdf").sections[0].text
    assert "SMITH, ALVARO R" in text and "LEGISLATIVE CORRESPONDENT" in text
    assert "SMITH" not in (PdfReader(PDF / "us-senate_expenditures.pdf").pages[0].extract_text() or "")


def test_a_pdf_pdfium_cannot_open_is_read_by_pypdf(monkeypatch: pytest.MonkeyPatch) -> None:
    import pypdfium2

    def refuse(*args: object, **kwargs: object) -> None:
        raise pypdfium2.PdfiumError("Failed to load document (PDFium: Data format error).")

    monkeypatch.setattr(pypdfium2, "PdfDocument", refuse)
    doc = load(PDF / "latex_two-column-lorem.pdf")
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert "adipiscing elit" in doc.sections[0].text and "ﬁ" not in doc.sections[0].text


def test_aes_pdf_without_user_password_is_read() -> None:
    doc = load(PDF / "encrypted_aes256_no-user-password.pdf")
    assert [(s.page, s.text) for s in doc.sections] == [
        (1, "Page one of the encrypted sample. The owl flies at midnight."),
        (2, "Page two of the encrypted sample. The river runs backwards."),
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("encrypted_aes256_user-password.pdf", "encrypted PDF (password required)"),
        ("encrypted_libreoffice-writer-password.pdf", "encrypted PDF (password required)"),
        ("encrypted_pdfplumber-password-example.pdf", "encrypted PDF (password required)"),
        ("damaged_qpdf-bad2_no-startxref.pdf", "damaged PDF: no startxref"),
        ("not-a-pdf_qpdf-bad1.pdf", "not a PDF (no PDF header)"),
        ("empty_0-bytes.pdf", "empty file"),
    ],
)
def test_bad_pdfs_give_one_clear_line(name: str, reason: str) -> None:
    assert failure(PDF / "bad" / name) == reason


def test_every_bad_pdf_is_covered() -> None:
    assert len(list((PDF / "bad").iterdir())) == 6


def test_truncated_pdf_is_reported_as_damaged(tmp_path: Path) -> None:
    data = (PDF / "latex_two-column-lorem.pdf").read_bytes()
    reason = failure(write(tmp_path / "cut.pdf", data[: len(data) // 3]))
    assert reason.startswith("damaged PDF")


def test_pdf_without_text_layer_is_reported(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with (tmp_path / "scan.pdf").open("wb") as fh:
        writer.write(fh)
    with pytest.raises(DocumentError) as caught:
        load(tmp_path / "scan.pdf", LoadOptions(ocr="never"))
    assert caught.value.reason == "no extractable text (scanned PDF? OCR is off: --ocr never)"


def test_pages_without_text_are_a_warning(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.add_page(PdfReader(PDF / "google-doc_zen-of-python.pdf").pages[0])
    writer.add_blank_page(width=200, height=200)
    with (tmp_path / "mixed.pdf").open("wb") as fh:
        writer.write(fh)
    doc = load(tmp_path / "mixed.pdf", LoadOptions(ocr="never"))
    assert {s.page for s in doc.sections} == {1}
    assert doc.warnings == ["1 of 2 pages have no text layer (scanned?)"]


def test_aes_pdf_without_cryptography_says_what_to_install() -> None:
    # Make `cryptography` (and pycryptodome) unimportable in a fresh interpreter.
    code = (
        "import sys; sys.modules['cryptography'] = None; sys.modules['Crypto'] = None\n"
        "from pathlib import Path\n"
        "from rag.errors import DocumentError\n"
        "from rag.ingest.loaders import load\n"
        "try:\n"
        f"    load(Path({str(PDF / 'encrypted_aes256_no-user-password.pdf')!r}))\n"
        "except DocumentError as e:\n"
        "    print(e.reason)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "encrypted PDF needs the 'cryptography' package: pip install cryptography"
    assert result.stderr == ""


def test_pypdf_log_noise_does_not_reach_stderr() -> None:
    code = (
        "from pathlib import Path\n"
        "from rag.errors import DocumentError\n"
        "from rag.ingest.loaders import load\n"
        "try:\n"
        f"    load(Path({str(PDF / 'bad' / 'damaged_qpdf-bad2_no-startxref.pdf')!r}))\n"
        "except DocumentError:\n"
        "    pass\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr == ""


def test_page_text_cleanup() -> None:
    assert clean_page_text("infor-\nmation and Schwarz-\nWeiß") == "information and Schwarz-\nWeiß"
    assert clean_page_text("ﬁne x\x00y") == "fine x\ufffdy"


def test_a_long_cell_running_under_the_next_column_does_not_join_the_two(tmp_path: Path) -> None:
    rows = [(72, 700, "Company"), (230, 700, "City"), (330, 700, "Staff")]
    for n in range(1, 8):
        y = 700 - 14 * n
        rows += [(72, y, f"Firm {n}"), (230, y, f"Town {n}"), (330, y, str(n * 10))]
    rows += [(72, 588, "Long Beach Memorial Medical Center Holdings"), (330, 588, "80")]  # no city
    path = tmp_path / "firms.pdf"
    path.write_bytes(text_pdf([rows]))
    text = "\n".join(s.text for s in load(path).sections if s.heading)
    assert "Company: Firm 3 | City: Town 3 | Staff: 30" in text
    assert "Company: Long Beach Memorial Medical Center Holdings | Staff: 80" in text


def test_pdf_group_names_over_the_header_name_the_columns_they_are_centred_over(tmp_path: Path) -> None:
    page = [(72, 720, "Checks, May"), (245, 700, "Pawn"), (405, 700, "Sale")]
    page += [(x, 686, name) for x, name in ((72, "State"), (200, "Handgun"), (280, "Long Gun"), (360, "Handgun"))]
    page += [(440, 686, "Long Gun"), (520, 686, "Totals")]
    for n, state in enumerate(("Alabama", "Alaska", "Arizona", "Arkansas"), start=1):
        y = 686 - 14 * n
        page += [(72, y, state), *((x, y, str(n * 10 + k)) for k, x in enumerate((200, 280, 360, 440, 520)))]
    path = tmp_path / "checks.pdf"
    path.write_bytes(text_pdf([page]))
    text = "\n".join(s.text for s in load(path).sections if s.heading)
    assert (
        "State: Alaska | Pawn Handgun: 20 | Pawn Long Gun: 21 | Sale Handgun: 22 | Sale Long Gun: 23 | Totals: 24"
        in text
    )


def test_a_pdf_column_name_set_beside_its_values_still_names_them(tmp_path: Path) -> None:
    page = [(72, 700, "Company"), (200, 700, "Staff"), (330, 700, "Kind")]
    for n in range(1, 6):
        y = 700 - 14 * n
        page += [(72, y, f"Firm {n}"), (260, y, str(n * 10)), (330, y, "Closure")]  # numbers right of "Staff"
    path = tmp_path / "staff.pdf"
    path.write_bytes(text_pdf([page]))
    text = "\n".join(s.text for s in load(path).sections if s.heading)
    assert "Company: Firm 2 | Staff: 20 | Kind: Closure" in text
    # The same in the last column, its numbers left of its name.
    page = [(72, 700, "Company"), (300, 700, "Staff")]
    page += [(x, 700 - 14 * n, t) for n in range(1, 6) for x, t in ((72, f"Firm {n}"), (240, str(n * 10)))]
    path.write_bytes(text_pdf([page]))
    assert "Company: Firm 2 | Staff: 20" in "\n".join(s.text for s in load(path).sections if s.heading)
