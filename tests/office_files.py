"""Small Office files, e-books and mails built with the libraries that read them, for tests."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from pathlib import Path


def make_docx(path: Path) -> Path:
    """A report: title, two heading levels, a table, and an explicit page break."""
    import docx

    document = docx.Document()
    document.add_heading("Harbour Survey 2024", level=0)
    document.add_paragraph("This report summarises the harbour survey.")
    document.add_heading("Methods", level=1)
    document.add_paragraph("Divers counted mussels along twelve transects in May.")
    document.add_heading("Results", level=1)
    document.add_heading("Water quality", level=2)
    document.add_paragraph("Turbidity was lowest at the northern breakwater.")
    document.add_page_break()
    document.add_heading("Costs", level=2)
    document.add_paragraph("The survey cost less than planned.")
    table = document.add_table(rows=3, cols=2)
    for row, cells in zip(
        table.rows, [("Item", "Cost"), ("Boat hire", "4,200 EUR"), ("Diving gear", "1,150 EUR")], strict=False
    ):
        for cell, text in zip(row.cells, cells, strict=False):
            cell.text = text
    document.save(str(path))
    return path


def make_pptx(path: Path) -> Path:
    """Three slides; the answer to 'when is the launch' is on slide 2, in the speaker notes on 3."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    layout = deck.slide_layouts[1]  # title and content
    contents = [
        ("Quarterly review", "Revenue grew in every region.", ""),
        ("Product launch", "The Falcon launch is planned for 14 March.", ""),
        ("Risks", "Supplier delays remain the main risk.", "Mention that the backup supplier is in Porto."),
    ]
    for title, body, notes in contents:
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    table_slide = deck.slides.add_slide(deck.slide_layouts[5])
    table_slide.shapes.title.text = "Head count"
    shape = table_slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1))
    for (r, c), text in {(0, 0): "Team", (0, 1): "People", (1, 0): "Hydrology", (1, 1): "17"}.items():
        shape.table.cell(r, c).text = text
    deck.save(str(path))
    return path


def make_xlsx(path: Path, rows: int = 60) -> Path:
    """Sheet 'Stations' with a header and ``rows`` data rows; sheet 'Notes' with one note."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Stations"
    sheet.append(["Station", "River", "Flow (m3/s)", "Measured"])
    for i in range(1, rows + 1):
        river = "Tagus" if i != 37 else "Guadiana"
        sheet.append([f"ST-{i:03d}", river, 10.5 + i, f"2024-05-{(i % 28) + 1:02d}"])
    notes = book.create_sheet("Notes")
    notes.append(["Note"])
    notes.append(["Station ST-037 was moved upstream after the 2023 flood."])
    book.save(str(path))
    return path


def make_epub(path: Path) -> Path:
    """An EPUB 3 with a nav document and two chapters."""
    chapters = {
        "ch1.xhtml": ("The Lighthouse", "<p>The keeper lit the lamp every evening at dusk.</p>"),
        "ch2.xhtml": ("The Storm", "<p>In the storm of 1881 the lamp burned for three days without rest.</p>"),
    }
    manifest = "".join(
        f'<item id="c{i}" href="{name}" media-type="application/xhtml+xml"/>' for i, name in enumerate(chapters)
    )
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    nav_items = "".join(f'<li><a href="{name}">{title}</a></li>' for name, (title, _) in chapters.items())
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        z.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Keepers</dc:title></metadata>'
            f'<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
            f"{manifest}</manifest><spine>{spine}</spine></package>",
        )
        z.writestr(
            "OEBPS/nav.xhtml",
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><body>'
            f'<nav epub:type="toc"><ol>{nav_items}</ol></nav></body></html>',
        )
        for name, (title, body) in chapters.items():
            z.writestr(
                f"OEBPS/{name}",
                f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Keepers</title></head>'
                f"<body><h1>{title}</h1>{body}</body></html>",
            )
    return path


def make_eml(path: Path, attachment: tuple[str, bytes] | None = None, html: bool = False) -> Path:
    message = EmailMessage()
    message["Subject"] = "Budget for the boat repair"
    message["From"] = "Ana Silva <ana@example.org>"
    message["To"] = "crew@example.org"
    message["Date"] = "Tue, 05 Mar 2024 10:00:00 +0000"
    text = "Hi all, the boat repair will cost 3,400 euros and take two weeks."
    if html:
        message.set_content("<html><body><p>" + text + "</p><script>x()</script></body></html>", subtype="html")
    else:
        message.set_content(text)
    if attachment:
        name, data = attachment
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    path.write_bytes(bytes(message))
    return path


def zip_bomb_docx(path: Path, claimed: int = 3 << 30) -> Path:
    """A real .docx whose document.xml entry claims ``claimed`` bytes: a few KB on disk."""
    source = io.BytesIO()
    make_docx_minimal(source)
    data = bytearray(source.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("word/document.xml")
    # Patch the uncompressed size in the local header (offset 22) and the central directory.
    data[info.header_offset + 22 : info.header_offset + 26] = claimed.to_bytes(4, "little")
    name = b"word/document.xml"
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = int.from_bytes(data[central + 28 : central + 30], "little")
        if data[central + 46 : central + 46 + name_len] == name:
            data[central + 24 : central + 28] = claimed.to_bytes(4, "little")
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return path


def make_docx_minimal(target: io.BytesIO | Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Nothing to see.")
    document.save(target if isinstance(target, io.BytesIO) else str(target))


def stalling_pdf(path: Path, operators: int = 2_000_000) -> Path:
    """A valid one-page PDF whose content stream inflates to ~66 MB of text operators.

    150 KB on disk; pypdf spends minutes in ``extract_text`` on it (about 150 us per
    operator), which is what a parser loop looks like from outside.
    """
    import zlib

    stream = zlib.compress(b"BT /F1 12 Tf 10 10 Td (a) Tj ET\n" * operators, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    path.write_bytes(out.getvalue())
    return path


def malformed_eml(path: Path) -> Path:
    """A multipart mail whose declared boundary never appears: no body can be found."""
    path.write_bytes(
        b'Subject: hi\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\nno boundary ever appears\r\n'
    )
    return path
