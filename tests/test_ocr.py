"""OCR: a scanned PDF made here (a text PDF rendered to an image and wrapped back) becomes searchable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.errors import DocumentError
from rag.ingest.loaders import LoadOptions, load

PDF = Path(__file__).parent / "fixtures" / "pdf" / "google-doc_zen-of-python.pdf"

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
