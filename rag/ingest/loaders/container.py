"""Opening zip-based files (Office Open XML, EPUB) safely, with one-line reasons.

Office files and e-books are zip archives.  Before any parser sees one, the archive's
directory is checked: a file that is really an OLE container is a password-protected
(or pre-2007 binary) Office file, a damaged directory is a truncated file, and members
that claim more than ``MAX_UNCOMPRESSED`` bytes, or inflate more than ``MAX_RATIO``
times, are a zip bomb and are refused before a byte is inflated.  The worker's memory
limit (``rag.ingest.parse``) is the second line of defence when a header lies.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from rag.errors import DocumentError

#: Sum of the members' declared sizes above which a file is refused.
MAX_UNCOMPRESSED = 1 << 30
#: Declared size over compressed size above which a member is refused (text XML
#: compresses about 10x; deflate's ceiling is about 1000x and only for runs of one byte).
MAX_RATIO = 200
_RATIO_FLOOR = 16 << 20  # small members may have any ratio

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def open_zip(path: Path, data: bytes, what: str) -> zipfile.ZipFile:
    """``data`` as a zip archive; ``what`` names the format in messages (".docx")."""
    if data.startswith(_OLE_MAGIC):
        if "EncryptionInfo".encode("utf-16-le") in data or "EncryptedPackage".encode("utf-16-le") in data:
            raise DocumentError(path, f"password-protected {what} (encrypted Office file)")
        raise DocumentError(path, f"not a {what}: an old binary Office file (.doc/.xls/.ppt) renamed")
    if not data.startswith(b"PK"):
        raise DocumentError(path, f"not a {what} (not a zip archive)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise DocumentError(path, f"damaged {what} (truncated or corrupt zip archive)") from None
    claimed = sum(m.file_size for m in members)
    if claimed > MAX_UNCOMPRESSED:
        raise DocumentError(
            path, f"zip bomb? members claim {_size(claimed)} uncompressed (limit {_size(MAX_UNCOMPRESSED)})"
        )
    for member in members:
        if member.file_size > _RATIO_FLOOR and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise DocumentError(
                path, f"zip bomb? {member.filename} claims {_size(member.file_size)} from {_size(member.compress_size)}"
            )
    return archive


def read_member(path: Path, archive: zipfile.ZipFile, name: str, what: str) -> bytes:
    """One member's bytes; a damaged member is a damaged file."""
    try:
        return archive.read(name)
    except KeyError:
        raise DocumentError(path, f"damaged {what}: {name} is missing") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DocumentError(path, f"damaged {what}: {name} ({type(exc).__name__})") from None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
