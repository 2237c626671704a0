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

import os
import shutil
import subprocess
import threading
from functools import cache
from pathlib import Path
from typing import Literal

from rag.errors import DocumentError

OcrMode = Literal["auto", "never", "always"]
OCR_MODES: tuple[OcrMode, ...] = ("auto", "never", "always")
INSTALL_HINT = "install Tesseract to OCR it (apt-get install tesseract-ocr, or brew install tesseract)"
DPI = 300
#: PDFium is not thread-safe: every use of it (text here, rendering for OCR) takes this.
PDFIUM_LOCK = threading.Lock()


class OcrUnavailable(Exception):
    """Tesseract is not installed."""


@cache
def tesseract_path() -> str | None:
    """The tesseract program, or None when it is not installed (``RAG_TESSERACT`` overrides)."""
    configured = os.environ.get("RAG_TESSERACT")
    return shutil.which(configured or "tesseract")


def ocr_image(image: bytes) -> str:
    """Text Tesseract reads in an image file's bytes (PNG, JPEG, TIFF, PNM)."""
    program = tesseract_path()
    if program is None:
        raise OcrUnavailable(INSTALL_HINT)
    # One thread: parse workers already run in parallel, and OpenMP threads would fight them.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    done = subprocess.run([program, "stdin", "stdout"], input=image, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(message[-1] if message else f"tesseract exited with status {done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def render_pages(path: Path, data: bytes, pages: list[int]) -> dict[int, bytes]:
    """Pages (1-based) of a PDF as grayscale PGM images at ``DPI``."""
    import pypdfium2 as pdfium  # lazily: only PDFs need it

    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except Exception as exc:
            raise DocumentError(path, f"damaged PDF: cannot render it for OCR ({exc})") from None
        images: dict[int, bytes] = {}
        try:
            for number in pages:
                page = document[number - 1]
                bitmap = page.render(scale=DPI / 72, grayscale=True)
                images[number] = _pgm(bitmap)
                page.close()
        finally:
            document.close()
    return images


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
        text = ocr_image(data)
    except OcrUnavailable:
        raise DocumentError(path, f"image has no text layer: {INSTALL_HINT}") from None
    except (RuntimeError, OSError) as exc:
        raise DocumentError(path, f"OCR failed ({exc})") from None
    if not text.strip():
        raise DocumentError(path, "no text found by OCR")
    return text
