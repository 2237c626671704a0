"""PDF: one section per page, numbered from 1, text from PDFium, or from OCR for scanned pages.

pypdf opens the file first: every way a file can fail (encryption, damage, a file that
only has a .pdf name) becomes one DocumentError with a short reason.  The text comes from
PDFium (pypdfium2, which also renders pages for OCR): on ``../shared/data/pdf-samples`` it
reads 1.7 ms a page against pypdf's 26, and it maps fonts that pypdf turns into noise (the
US Senate expenditure report).  pypdf's own extraction is the fallback for a file PDFium
cannot read; there, a page whose extraction fails is skipped with a warning and the rest
is kept.  Page text gets a light cleanup, and section offsets are into the cleaned text.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument, Section
from rag.ingest.loaders.layout import SectionWriter, Table, row_blocks
from rag.ingest.loaders.ocr import (
    GIBBERISH,
    INSTALL_HINT,
    PDFIUM_LOCK,
    OcrMode,
    OcrUnavailable,
    read_upright,
    render_pages,
    tesseract_path,
)
from rag.ingest.loaders.pdf_tables import PageTable, carry_header, find_tables
from rag.ingest.loaders.quality import looks_garbled, quality
from rag.ingest.parse import still_working

if TYPE_CHECKING:
    from pypdf import PageObject

# pypdf logs each oddity it recovers from ("EOF marker not found"); with no handler of its
# own that lands on stderr through logging's last resort, in the middle of progress output.
# A NullHandler stops that, and still lets an application that configures logging see it.
logging.getLogger("pypdf").addHandler(logging.NullHandler())

# Syllable hyphenation at a line end: "infor-\nmation".  Only between lower-case letters,
# so that "Schwarz-\nWeiß" and "Mr-\nBayes" keep their hyphen.
_HYPHENATED = re.compile(r"([^\W\d_])-\n([^\W\d_])")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
# Unmapped glyphs come out as C0 controls (TeX's minus sign as NUL); show them as unknown.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def load_pdf(path: Path, data: bytes, ocr: OcrMode = "auto") -> LoadedDocument:
    """Pages with a text layer are read by pypdf; pages without one are OCR'd per ``ocr``."""
    if b"%PDF-" not in data[:1024]:
        raise DocumentError(path, "not a PDF (no PDF header)")
    pages = _open(path, data)
    texts: dict[int, str] = {}
    warnings: list[str] = []
    if ocr == "always" and tesseract_path() is None:
        warnings.append(f"--ocr always, but Tesseract is missing: read the text layer ({INSTALL_HINT})")
        ocr = "auto"
    failed: list[int] = []
    fast = _pdfium_texts(data, len(pages)) if ocr != "always" else None
    tabled: dict[int, list[Section]] = {}  # pages with tables: their prose and row blocks
    for number, page in enumerate(pages, start=1):
        if ocr == "always":
            break
        try:
            text = fast[number - 1] if fast is not None else page.extract_text() or ""
            if isinstance(text, list):
                tabled[number] = _page_sections(text, number)
                texts[number] = "\n\n".join(s.text for s in tabled[number])
            else:
                texts[number] = clean_page_text(text)
        except MemoryError:  # the parse worker reports it as out of memory
            raise
        except Exception as exc:  # one bad page must not lose the others
            warnings.append(f"page {number}: text extraction failed ({_short(exc)})")
            failed.append(number)
    blank = [n for n in range(1, len(pages) + 1) if n not in failed and not texts.get(n, "").strip()]
    # A text layer that is gibberish (a scanner's OCR of an upside-down page, fonts
    # without a character map) is read again by OCR; the better reading is kept.
    garbled = [n for n in texts if looks_garbled(texts[n])] if ocr == "auto" else []
    scanned: set[int] = set()
    gibberish: list[int] = []
    if (blank or garbled) and ocr != "never" and tesseract_path() is not None:
        read, turned, error = _ocr_pages(path, data, sorted(blank + garbled))
        for n, text in read.items():
            if looks_garbled(text):
                gibberish += [n] if n in blank else []
            elif n in blank or quality(text).score > quality(texts[n]).score:
                texts[n] = text
                scanned.add(n)
        replaced = sorted(scanned & set(garbled))
        turned = [n for n in turned if n in scanned]
        notes = [
            f"OCR read {_pages(sorted(scanned))}" if scanned else "",
            f"{_pages(turned)} turned the right way up for OCR" if turned else "",
            f"the text layer of {_pages(replaced)} was gibberish: OCR read instead" if replaced else "",
            f"OCR failed on {error}" if error else "",
        ]
        warnings += [note for note in notes if note]
    kept = [n for n in garbled if n not in scanned]
    if kept:
        why = INSTALL_HINT if tesseract_path() is None else "OCR read no better"
        warnings.append(f"the text layer of {_pages(kept)} looks like gibberish ({why}): indexed as it is")
    if gibberish:
        warnings.append(f"OCR found only gibberish on {_pages(gibberish)}: not indexed")
    sections = [
        section
        for n in range(1, len(pages) + 1)
        if texts.get(n, "").strip()
        for section in (
            tabled[n] if n in tabled and n not in scanned else [Section(texts[n], page=n, ocr=n in scanned)]
        )
    ]
    unread = [n for n in blank if n not in scanned and n not in gibberish]
    if not sections:
        if gibberish and not unread:
            raise DocumentError(path, GIBBERISH)
        if unread and ocr == "never":
            raise DocumentError(path, "no extractable text (scanned PDF? OCR is off: --ocr never)")
        if unread and tesseract_path() is None:
            raise DocumentError(path, f"no extractable text (scanned PDF?): {INSTALL_HINT}")
        if unread:
            raise DocumentError(path, "no text found, not even by OCR")
        raise DocumentError(path, "damaged PDF: text extraction failed on every page")
    if unread and ocr == "never":
        warnings.append(f"{len(unread)} of {len(pages)} pages have no text layer (scanned?)")
    elif unread and tesseract_path() is None:
        warnings.append(f"{len(unread)} of {len(pages)} pages have no text layer: {INSTALL_HINT}")
    elif unread:
        warnings.append(f"{len(unread)} of {len(pages)} pages have no text, not even by OCR (blank?)")
    return LoadedDocument(path, "pdf", sections, warnings)


def _ocr_pages(path: Path, data: bytes, numbers: list[int]) -> tuple[dict[int, str], list[int], str]:
    """These pages read by OCR, each the right way up; the pages turned for that; the first error."""
    read: dict[int, str] = {}
    turned: list[int] = []
    errors: list[str] = []
    angle = 0  # the turn the page before needed
    for number, image in render_pages(path, data, numbers):
        try:
            raw, angle = read_upright(image, likely=angle)
        except (RuntimeError, OSError, OcrUnavailable) as exc:
            errors.append(f"page {number}: {_short(exc)}")
            continue
        finally:
            still_working()  # the parse time limit is per page read, not per scan
        text = clean_page_text(raw)
        if text.strip():
            read[number] = text
            turned += [number] if angle else []
    return read, turned, errors[0] if errors else ""


def _pages(numbers: list[int]) -> str:
    return (
        f"page {numbers[0]}"
        if len(numbers) == 1
        else f"{len(numbers)} pages ({', '.join(map(str, numbers[:10]))}{', ...' if len(numbers) > 10 else ''})"
    )


def _pdfium_texts(data: bytes, pages: int) -> list[str | list[str | Table]] | None:
    """Each page's text by PDFium, or for a page with tables its text and tables in reading
    order; None when PDFium cannot read the file or counts other pages."""
    import pypdfium2 as pdfium  # lazily: it costs CLI start-up time otherwise

    with PDFIUM_LOCK:  # PDFium is not thread-safe
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            return None
        try:
            if len(document) != pages:  # citations must name the pages pypdf (and viewers) number
                return None
            texts: list[str | list[str | Table]] = []
            last: Table | None = None  # the table before, which one on the next page may continue
            for index in range(pages):
                page = document[index]
                textpage = page.get_textpage()
                text = textpage.get_text_range()
                try:
                    tables = find_tables(textpage, text)
                except MemoryError:
                    raise
                except Exception:  # a table finder's bug must not cost the page its text
                    tables = []
                for k, found in enumerate(tables):
                    last = carry_header(last if k == 0 else None, found.table)
                    tables[k] = PageTable(found.chars, last)
                texts.append(_cut_tables(text, tables) if tables else text)
                textpage.close()
                page.close()
            return texts
        except pdfium.PdfiumError:
            return None
        finally:
            document.close()


def _cut_tables(text: str, tables: list[PageTable]) -> list[str | Table]:
    """The page's text with each table's characters taken out and the table put where its
    first character was; lines left empty by that are dropped."""
    owner = {i: k for k, found in enumerate(tables) for i in found.chars}
    parts: list[str | Table] = []
    prose: list[str] = []
    placed: set[int] = set()
    position = 0
    for line in text.split("\r\n"):
        kept = []
        for i in range(position, position + len(line)):
            k = owner.get(i)
            if k is None:
                kept.append(text[i])
            elif k not in placed:
                placed.add(k)
                parts += ["".join(prose)] if prose else []
                parts.append(tables[k].table)
                prose = []
        if "".join(kept).strip() or not any(i in owner for i in range(position, position + len(line))):
            prose.append("".join(kept) + "\n")
        position += len(line) + 2
    parts += ["".join(prose)] if prose else []
    return parts


def _page_sections(parts: list[str | Table], page: int) -> list[Section]:
    """A page with tables as sections: its prose, and each table in blocks of rows led by the
    table's title (each block a section, so a chunk's rows and header hold for it whole)."""
    writer = SectionWriter()
    for part in parts:
        if isinstance(part, str):
            writer.add(clean_page_text(part), page=page)
            continue
        for block in row_blocks(part):
            writer.add(block.text, page=page, heading=(block.label,))
    return writer.sections


def clean_page_text(text: str) -> str:
    """Undo line-end hyphenation, expand ligatures, and mark unmapped glyphs."""
    # PDFium ends lines with CRLF and marks a hyphen it dropped at a line end with U+FFFE.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe\n", "").replace("\ufffe", "")
    text = _HYPHENATED.sub(_dehyphenate, text.replace("\u00ad\n", "").replace("\u00ad", ""))
    return _CONTROL.sub("\ufffd", text.translate(_LIGATURES))


def _dehyphenate(match: re.Match[str]) -> str:
    before, after = match.group(1), match.group(2)
    return before + after if before.islower() and after.islower() else match.group(0)


def _open(path: Path, data: bytes) -> list[PageObject]:
    from pypdf import PdfReader  # imported here: it costs CLI start-up time otherwise
    from pypdf.errors import DependencyError, EmptyFileError, FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        # pypdf already tried the empty user password; an owner password alone is no lock.
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(path, "encrypted PDF (password required)")
        return list(reader.pages)
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise DocumentError(path, "encrypted PDF (password required)") from None
    except DependencyError:
        raise DocumentError(path, "encrypted PDF needs the 'cryptography' package: pip install cryptography") from None
    except EmptyFileError:
        raise DocumentError(path, "empty file") from None
    except PdfReadError as exc:
        message = str(exc)
        if "startxref" in message:
            raise DocumentError(path, "damaged PDF: no startxref") from None
        raise DocumentError(path, f"damaged PDF: {_short(exc)}") from None
    except MemoryError:  # the parse worker reports it as out of memory
        raise
    except Exception as exc:  # any parser failure is a damaged file to the user
        raise DocumentError(path, f"damaged PDF: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    """An exception as a few words on one line."""
    message = " ".join(str(exc).split())
    if len(message) > 120:
        message = message[:117] + "..."
    return message or type(exc).__name__
