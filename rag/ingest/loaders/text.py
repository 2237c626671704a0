"""Plain text files, and the byte-reading and decoding every text-based format shares.

Decoding never guesses silently: UTF-8 and byte-order marks are trusted, anything else is
detected with charset-normalizer and accepted only when the guess is confident, and the
document then carries a warning naming the encoding used.
"""

from __future__ import annotations

import codecs
import errno
import re
from dataclasses import dataclass
from pathlib import Path

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument, Section

BINARY = "binary file, not text"

# UTF-32 first: its little-endian mark starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, newline, vertical tab, form feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# charset-normalizer's "mess" score above which a guess is not trusted.
_MAX_CHAOS = 0.15


@dataclass(frozen=True)
class Decoded:
    text: str
    #: Set when the text was not plain UTF-8, for ``LoadedDocument.warnings``.
    warning: str | None = None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a DocumentError saying in a few words why they can't be read."""
    try:
        return path.read_bytes()
    except PermissionError:
        reason = "permission denied"
    except IsADirectoryError:
        reason = "is a folder, not a file"
    except FileNotFoundError:
        reason = "broken symlink" if path.is_symlink() else "file not found (deleted while ingesting?)"
    except OSError as exc:
        reason = "symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)).lower()
    raise DocumentError(path, reason)


def decode_text(data: bytes, path: Path, declared: str | None = None) -> Decoded:
    """Decode a text file's bytes; ``declared`` is an encoding the file names (HTML meta)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                raise DocumentError(path, f"invalid {encoding.upper()} text after a byte-order mark") from None
            note = None if encoding == "utf-8-sig" else f"decoded as {encoding}"
            return Decoded(_text_or_error(text, path), note)
    # UTF-8 before a declared encoding: non-ASCII text that is valid UTF-8 is UTF-8 in
    # practice, and pages that declare Latin-1 but are UTF-8 are common.
    try:
        return Decoded(_text_or_error(data.decode("utf-8"), path))
    except UnicodeDecodeError:
        pass
    if declared and _codec(declared) not in ("utf-8", None):
        try:
            return Decoded(_text_or_error(data.decode(declared), path), f"decoded as {declared} (declared)")
        except UnicodeDecodeError:
            pass  # a wrong declaration is common; detect instead
    if b"\x00" not in data:
        mostly_utf8 = _mostly_utf8(data)
        if mostly_utf8 is not None:
            return mostly_utf8
    return _detected(data, path)


def _mostly_utf8(data: bytes) -> Decoded | None:
    """UTF-8 with a few stray bytes (a truncated write, one pasted Latin-1 byte)."""
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = len(text) - len(text.encode("ascii", "ignore")) - bad
    if good >= 10 * bad:
        return Decoded(text, f"decoded as UTF-8 with {bad} invalid byte(s) replaced by \ufffd")
    return None


def _detected(data: bytes, path: Path) -> Decoded:
    from charset_normalizer import from_bytes

    try:
        matches = list(from_bytes(data))
    except Exception:  # a detector bug must not stop the ingest
        matches = []
    has_nul = b"\x00" in data
    # UTF-16/32 without a mark are plausible only when NULs say so (ASCII's high bytes).
    matches = [m for m in matches if m.chaos <= _MAX_CHAOS and m.encoding.startswith(("utf_16", "utf_32")) == has_nul]
    if not matches:
        if has_nul or _control_share(data.decode("latin-1")) > 0.02:
            raise DocumentError(path, BINARY)
        raise DocumentError(path, "unknown text encoding (not UTF-8, and detection was not confident)")
    best = matches[0]
    ties = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    # The detector ranks equally likely Western code pages arbitrarily (cp1250 for French
    # text gives "coűte"); cp1252 is by far the most common of them, so it wins ties.
    encoding = "cp1252" if any("cp1252" in m.could_be_from_charset for m in ties) else best.encoding
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        encoding, text = best.encoding, str(best)
    return Decoded(_text_or_error(text, path), f"decoded as {encoding}")


def _text_or_error(text: str, path: Path) -> str:
    if "\x00" in text or _control_share(text[:1_000_000]) > 0.02:
        raise DocumentError(path, BINARY)
    return text


def _control_share(text: str) -> float:
    return len(_CONTROL.findall(text)) / max(len(text), 1)


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def load_text(path: Path, data: bytes) -> LoadedDocument:
    decoded = decode_text(data, path)
    warnings = [decoded.warning] if decoded.warning else []
    return LoadedDocument(path, "text", [Section(decoded.text)], warnings)


def load_plain_text(path: Path, data: bytes) -> LoadedDocument:
    """A ``.txt`` file: its text, with tables aligned in columns read as records
    (``plain_tables``; the extracted text is then the file with each table replaced in place)."""
    from rag.ingest.loaders.layout import splice_tables
    from rag.ingest.loaders.plain_tables import text_tables

    document = load_text(path, data)
    document.sections = splice_tables(document.sections, text_tables(document.sections[0].text))
    return document


def decode_lines(data: bytes, path: Path) -> tuple[list[str], list[str]]:
    """Lines of a text file (ends kept) and warnings, decoding each line on its own when needed.

    Files glued together from several exports (a CSV with UTF-8 rows after cp1252 ones)
    are common: when some lines are valid non-ASCII UTF-8 and others are not, the others
    are read as cp1252 (what Windows tools write) instead of failing the file.
    """
    try:
        return data.decode("utf-8").splitlines(keepends=True), []
    except UnicodeDecodeError:
        pass
    raw = data.splitlines(keepends=True)
    if b"\x00" not in data and not data.startswith(tuple(bom for bom, _ in _BOMS)):
        utf8 = legacy = 0
        lines: list[str] = []
        for line in raw:
            try:
                text = line.decode("utf-8")
                utf8 += not line.isascii()
            except UnicodeDecodeError:
                text = line.decode("cp1252", errors="replace")
                legacy += 1
            lines.append(text)
        if utf8 and legacy:
            warning = f"mixed encodings: {legacy} line(s) read as cp1252, {utf8} as UTF-8"
            return [_text_or_error(line, path) for line in lines], [warning]
    decoded = decode_text(data, path)
    return decoded.text.splitlines(keepends=True), [decoded.warning] if decoded.warning else []
