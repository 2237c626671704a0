"""OCR: a scanned PDF made here (a text PDF rendered to an image and wrapped back) becomes searchable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from rag.errors import DocumentError
from rag.ingest.loaders import LoadOptions, load
from tests.helpers import pdf_bytes

PDF = Path(__file__).parents[1] / "fixtures" / "pdf" / "google-doc_zen-of-python.pdf"

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Tesseract is not installed (apt-get install tesseract-ocr)"
)


def scan(source: Path, target: Path, dpi: int = 200) -> Path:
    """``source``'s first page as a PDF holding nothing but a picture of it."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(source)
    image = document[0].render(scale=dpi / 72, grayscale=True).to_pil()
    image.save(target, "PDF", resolution=dpi)
    return target


def picture(source: Path, target: Path, dpi: int = 200) -> Path:
    import pypdfium2 as pdfium

    pdfium.PdfDocument(source)[0].render(scale=dpi / 72).to_pil().save(target)
    return target


def test_scanned_pdf_is_read_by_ocr_and_marked(tmp_path: Path) -> None:
    from pypdf import PdfReader

    scanned = scan(PDF, tmp_path / "scan.pdf")
    assert not (PdfReader(scanned).pages[0].extract_text() or "").strip()  # really no text layer
    doc = load(scanned)
    assert [s.page for s in doc.sections] == [1]
    assert doc.sections[0].ocr
    assert "Beautiful is better than ugly" in " ".join(doc.sections[0].text.split())
    assert doc.warnings == ["OCR read page 1"]
    with pytest.raises(DocumentError, match="OCR is off"):
        load(scanned, LoadOptions(ocr="never"))


def test_ocr_always_reads_pages_that_have_text_too(tmp_path: Path) -> None:
    doc = load(PDF, LoadOptions(ocr="always"))
    assert doc.sections and all(s.ocr for s in doc.sections)
    assert "Explicit is better than implicit" in " ".join(doc.sections[0].text.split())


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff"])
def test_images_are_read_by_ocr(tmp_path: Path, suffix: str) -> None:
    doc = load(picture(PDF, tmp_path / f"page{suffix}"))
    assert doc.kind == "image" and doc.sections[0].ocr
    assert "Simple is better than complex" in " ".join(doc.sections[0].text.split())


def test_image_without_text_is_one_clear_line(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("L", (400, 300), color=255).save(tmp_path / "blank.png")
    with pytest.raises(DocumentError) as caught:
        load(tmp_path / "blank.png")
    assert caught.value.reason == "no text found by OCR"


def render(source: Path, dpi: int = 200) -> Any:
    import pypdfium2 as pdfium

    return pdfium.PdfDocument(source)[0].render(scale=dpi / 72, grayscale=True).to_pil()


def test_an_upside_down_scan_is_read_the_right_way_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.ingest.loaders.ocr import tesseract_path

    # Tesseract behind a script that logs each call, to count the orientation detections.
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "tesseract"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {shutil.which("tesseract")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("RAG_TESSERACT", str(wrapper))
    page = render(PDF).rotate(180)
    page.save(tmp_path / "upside-down.pdf", "PDF", resolution=200, save_all=True, append_images=[page])
    tesseract_path.cache_clear()
    try:
        doc = load(tmp_path / "upside-down.pdf")
    finally:
        monkeypatch.undo()
        tesseract_path.cache_clear()
    assert [s.page for s in doc.sections] == [1, 2]
    assert all("Beautiful is better than ugly" in " ".join(s.text.split()) for s in doc.sections)
    assert doc.warnings == ["OCR read 2 pages (1, 2)", "2 pages (1, 2) turned the right way up for OCR"]
    # Page 1: read, orientation, read turned; page 2 is tried turned as page 1 was, and that reads.
    calls = log.read_text().splitlines()
    assert len(calls) == 4 and sum("--psm 0" in call for call in calls) == 1


def test_a_sideways_photo_is_read_the_right_way_up(tmp_path: Path) -> None:
    render(PDF).rotate(90, expand=True).save(tmp_path / "sideways.png")
    doc = load(tmp_path / "sideways.png")
    assert "Explicit is better than implicit" in " ".join(doc.sections[0].text.split())


# What a scanner's OCR made of an upside-down page (Tesseract's reading of this file's
# Zen of Python page turned 180 degrees): the text layer some scanned PDFs carry.
GARBAGE = (
    "SJEWISS OZOZ? ¢ SJEWNSS OZO? z OOO'ELH'L9 cZlLGE6'S 29GS'06L'E8 ,0SL6Z8°ELZ uoneindod po () in "
    "j9SOU} JO BJOW OP S,}9] -- ap! yeouH Hulyuoy auo sue seoedsaweNn ‘eap! pooh e aq Aew } ‘ulejdxea 0} "
    "Aseea SI uol}e}USLUa|dWU! Bu} J] eapl peg e S$} ‘ule|dxe 0} puey si UOI}e}USWA|CdUU! Bu} JI "
    "‘MOU ,JUBU, UY} J8}38q UBYO SI JeAeU UBnoUYY ‘JOABU UCU} J9}}9q SI MON yong a4,NoA ssaj"
)


def pdf_with_text_layer(image: Any, layer: str, target: Path) -> Path:
    """A one-page PDF: ``image`` filling the page, and under it an invisible text layer ``layer``.

    Written by hand (the PDF 1.4 objects a scanner writes), so the text layer is exactly ``layer``.
    """
    import zlib

    width, height = image.size
    lines = [layer[i : i + 90] for i in range(0, len(layer), 90)]
    escaped = (line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines)
    text = "".join(f"({line}) Tj T* " for line in escaped)
    size = f"{width * 72 / 200:.2f} 0 0 {height * 72 / 200:.2f}"
    content = f"q {size} 0 0 cm /Im1 Do Q BT 3 Tr /F1 10 Tf 12 TL 36 700 Td {text}ET"
    stream = content.encode("cp1252", "replace")  # the font's encoding
    pixels = zlib.compress(image.convert("L").tobytes())
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>" % (width * 72 / 200, height * 72 / 200),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (width, height, len(pixels), pixels),
    ]
    target.write_bytes(pdf_bytes(objects))
    return target


def test_a_garbage_text_layer_is_replaced_by_ocr_under_auto(tmp_path: Path) -> None:
    scanned = pdf_with_text_layer(render(PDF), GARBAGE, tmp_path / "scanned.pdf")
    layer = load(scanned, LoadOptions(ocr="never")).sections[0]
    assert "uoneindod" in layer.text and not layer.ocr  # the text layer really is that garbage
    doc = load(scanned)
    [page] = doc.sections
    assert page.ocr and "Beautiful is better than ugly" in " ".join(page.text.split())
    assert "uoneindod" not in page.text
    assert "the text layer of page 1 was gibberish: OCR read instead" in doc.warnings


def test_a_good_text_layer_is_not_ocr_d(tmp_path: Path) -> None:
    layered = pdf_with_text_layer(render(PDF), "Beautiful is better than ugly. " * 10, tmp_path / "good.pdf")
    [page] = load(layered).sections
    assert not page.ocr


def test_a_page_whose_ocr_is_gibberish_is_named_not_indexed(tmp_path: Path) -> None:
    import random

    from PIL import Image, ImageDraw, ImageFont

    # Random strings of letters and symbols, printed clearly: Tesseract reads every mark, but no words.
    rng = random.Random(7)
    alphabet = "bcdfghjklmnpqrstvwxzBCDFGHJKLMNPQRSTVWXZ}{|$#"
    noise = Image.new("L", (1700, 2200), color=255)
    draw = ImageDraw.Draw(noise)
    font = ImageFont.load_default(size=40)
    for row in range(30):
        line = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randrange(3, 9))) for _ in range(6))
        draw.text((60, 60 + row * 70), line, fill=0, font=font)
    page = render(PDF)
    both = tmp_path / "two-pages.pdf"
    page.save(both, "PDF", resolution=200, save_all=True, append_images=[noise])
    doc = load(both)
    assert [s.page for s in doc.sections] == [1]
    assert "OCR found only gibberish on page 2: not indexed" in doc.warnings
    noise.save(tmp_path / "noise.png")
    with pytest.raises(DocumentError, match="OCR found only gibberish"):
        load(tmp_path / "noise.png")


def test_a_scan_longer_than_the_parse_limit_is_read_whole(tmp_path: Path) -> None:
    """The parse limit is per page OCR'd: a scan whose OCR takes longer than the limit, a
    page at a time well within it, is read whole (it was stopped at the limit).  The limit
    and the page count follow one page's OCR time here, so a loaded machine does not make a
    page exceed it (0.1 to 0.25 s a page on an idle 2-core box; a page took over 2 s once
    while the whole suite ran beside it)."""
    import math

    from PIL import Image, ImageDraw, ImageFont

    from rag.ingest.loaders import LoadOptions, load
    from rag.ingest.parse import ParseLimits, ParsePool

    font = ImageFont.load_default(size=60)

    def scan(path: Path, count: int) -> Path:
        pages = []
        for n in range(1, count + 1):
            image = Image.new("L", (1200, 300), 255)
            ImageDraw.Draw(image).text((40, 100), f"Page {n} of the ledger: {n * 7} crates", fill=0, font=font)
            pages.append(image)
        pages[0].save(path, "PDF", resolution=300, save_all=True, append_images=pages[1:])
        return path

    with ParsePool(load, LoadOptions(), workers=1) as pool:
        [one] = list(pool.imap([scan(tmp_path / "one.pdf", 1)]))
    limit = max(1.0, 5 * one.seconds)
    count = math.ceil(2.5 * limit / one.seconds)
    with ParsePool(load, LoadOptions(), limits=ParseLimits(timeout=limit), workers=1) as pool:
        [result] = list(pool.imap([scan(tmp_path / "ledger.pdf", count)]))
    assert result.error is None, result.error
    assert result.document is not None and result.seconds > limit
    texts = [s.text for s in result.document.sections]
    assert len(texts) == count and f"{count * 7} crates" in texts[-1]
