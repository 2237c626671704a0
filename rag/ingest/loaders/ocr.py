"""Optical character recognition with Tesseract, for scanned PDF pages and images.

Tesseract is run as its command-line program (``tesseract stdin stdout``): it is what
Debian's ``tesseract-ocr`` and Homebrew's ``tesseract`` install, and a subprocess dies
with the parse worker that runs it (``rag.ingest.parse`` kills the worker's whole process
group), so a stuck OCR cannot outlive its time limit.  PDF pages are rendered with
pypdfium2, a self-contained wheel, rather than poppler's ``pdftoppm``: nothing else to
install, and it renders in-process without temporary files.  Pages are rendered at
300 dpi in grayscale, the resolution Tesseract's models are trained for.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Literal

from rag.errors import DocumentError
from rag.ingest.loaders.quality import looks_garbled, quality

OcrMode = Literal["auto", "never", "always"]
OCR_MODES: tuple[OcrMode, ...] = ("auto", "never", "always")
INSTALL_HINT = "install Tesseract to OCR it (apt-get install tesseract-ocr, or brew install tesseract)"
DPI = 300
GIBBERISH = "OCR found only gibberish (a photo? a script Tesseract was not set up for?)"
#: PDFium is not thread-safe: every use of it (text here, rendering for OCR) takes this.
PDFIUM_LOCK = threading.Lock()


_ROTATE = re.compile(r"^Rotate:\s*(\d+)", re.MULTILINE)


class OcrUnavailable(Exception):
    """Tesseract is not installed."""


@cache
def tesseract_path() -> str | None:
    """The tesseract program, or None when it is not installed (``RAG_TESSERACT`` overrides)."""
    configured = os.environ.get("RAG_TESSERACT")
    return shutil.which(configured or "tesseract")


def ocr_image(image: bytes) -> str:
    """Text Tesseract reads in an image file's bytes (PNG, JPEG, TIFF, PNM)."""
    return _tesseract(image).decode("utf-8", "replace")


def read_upright(image: bytes, likely: int = 0) -> tuple[str, int]:
    """The image's text read the right way up, and by how many degrees it was turned for that.

    The image is read as it is first.  Only when that reading is gibberish is the page's
    orientation detected (Tesseract's OSD, ``--psm 0``) and the turned image read again,
    the better reading kept.  OSD costs as much as reading the page (2.0 against 1.9 s
    for a 300 dpi page here) and is unreliable on smaller images (at 100 dpi it found
    "too few characters"), so upright pages, nearly all of them, are not made to pay it.
    ``likely`` is a turn to try first: a stack of pages fed upside down is upside down
    throughout, so the page before's turn saves the next pages two of their three readings.
    """
    if likely:
        turned = ocr_image(rotate(image, likely))
        if not looks_garbled(turned):
            return turned, likely
    text = ocr_image(image)
    if not looks_garbled(text):
        return text, 0
    angle = orientation(image)
    if not angle:
        return text, 0
    turned = ocr_image(rotate(image, angle))
    return (turned, angle) if quality(turned).score > quality(text).score else (text, 0)


def orientation(image: bytes) -> int:
    """Degrees (0, 90, 180, 270) to turn the image clockwise to make its text upright; 0 when unknown.

    Needs Tesseract's ``osd`` model (Debian: tesseract-ocr-osd); without it, or when the
    page has too little text to tell, the page is taken as upright.
    """
    try:
        report = _tesseract(image, "--psm", "0").decode("utf-8", "replace")
    except (RuntimeError, OSError):
        return 0
    found = _ROTATE.search(report)
    return int(found.group(1)) % 360 if found else 0


def rotate(image: bytes, degrees: int) -> bytes:
    """The image turned clockwise, as a PNG."""
    from PIL import Image  # lazily; Pillow comes with python-pptx

    with Image.open(io.BytesIO(image)) as opened:
        out = io.BytesIO()
        opened.rotate(-degrees, expand=True).save(out, "PNG")
    return out.getvalue()


def _tesseract(image: bytes, *options: str) -> bytes:
    program = tesseract_path()
    if program is None:
        raise OcrUnavailable(INSTALL_HINT)
    # One thread: parse workers already run in parallel, and OpenMP threads would fight them.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    command = [program, "stdin", "stdout", *options]
    done = subprocess.run(command, input=image, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(message[-1] if message else f"tesseract exited with status {done.returncode}")
    return done.stdout


def render_pages(path: Path, data: bytes, pages: list[int]) -> Iterator[tuple[int, bytes]]:
    """Pages (1-based) of a PDF as grayscale PGM images at ``DPI``, one at a time.

    One at a time: a 300 dpi page is 8 MB, so a 100-page scan rendered at once would
    need 800 MB before the first page is read.
    """
    import pypdfium2 as pdfium  # lazily: only PDFs need it

    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except Exception as exc:
            raise DocumentError(path, f"damaged PDF: cannot render it for OCR ({exc})") from None
    try:
        for number in pages:
            with PDFIUM_LOCK:
                page = document[number - 1]
                bitmap = page.render(scale=DPI / 72, grayscale=True)
                image = _pgm(bitmap)
                page.close()
            yield number, image
    finally:
        with PDFIUM_LOCK:
            document.close()


def _pgm(bitmap: object) -> bytes:
    """A rendered bitmap as a binary PGM/PPM, which Tesseract reads without any imaging library."""
    width, height, stride = bitmap.width, bitmap.height, bitmap.stride  # type: ignore[attr-defined]
    channels = bitmap.n_channels  # type: ignore[attr-defined]
    buffer = bytes(bitmap.buffer)  # type: ignore[attr-defined]
    row = width * channels
    pixels = buffer if stride == row else b"".join(buffer[y * stride : y * stride + row] for y in range(height))
    if channels == 1:
        return b"P5\n%d %d\n255\n" % (width, height) + pixels
    # pdfium renders BGR(A); PPM wants RGB.
    rgb = bytearray(width * height * 3)
    for c, source in enumerate((2, 1, 0)):
        rgb[c::3] = pixels[source::channels]
    return b"P6\n%d %d\n255\n" % (width, height) + bytes(rgb)


def load_image_text(path: Path, data: bytes, mode: OcrMode) -> str:
    """The text of an image file, or a DocumentError saying why there is none."""
    if mode == "never":
        raise DocumentError(path, "image needs OCR, which is off (--ocr never)")
    try:
        text, _ = read_upright(data)
    except OcrUnavailable:
        raise DocumentError(path, f"image has no text layer: {INSTALL_HINT}") from None
    except (RuntimeError, OSError) as exc:
        raise DocumentError(path, f"OCR failed ({exc})") from None
    if not text.strip():
        raise DocumentError(path, "no text found by OCR")
    if looks_garbled(text):
        raise DocumentError(path, GIBBERISH)
    return text
