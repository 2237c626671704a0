"""Outlook mail (.msg): read as .eml is, from the Compound File that Outlook saves.

An .msg is an OLE Compound File ([MS-OXMSG]) opened with olefile (BSD): each property of
the message is a stream named ``__substg1.0_IIIITTTT`` (property id, type: ``001F`` is
UTF-16 text, ``001E`` 8-bit text, ``0102`` bytes), and fixed-size ones such as the date
sit in ``__properties_version1.0``.  The heading is subject, sender and date as for .eml;
the body is the plain-text one, else the HTML one through the HTML loader; attachments
of types rag reads are loaded too, under ``(heading, "attachment: NAME")``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.eml import add_attachments
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.layout import SectionWriter

# Property ids ([MS-OXPROPS]).
_SUBJECT, _SENDER_NAME, _SENDER_EMAIL, _SENDER_SMTP = 0x0037, 0x0C1A, 0x0C1F, 0x5D01
_TO, _CC, _BODY, _HTML = 0x0E04, 0x0E03, 0x1000, 0x1013
_SUBMIT_TIME, _DELIVERY_TIME = 0x0039, 0x0E06
_ATTACH_LONG_NAME, _ATTACH_NAME, _ATTACH_DATA = 0x3707, 0x3704, 0x3701
_TIME = 0x0040  # PtypTime: 100-ns intervals since 1601, in the fixed-size property stream
# The fixed-size property stream's header: 32 bytes in the message itself, 8 in an attachment.
_HEADER = {True: 32, False: 8}


def load_msg(path: Path, data: bytes, load_bytes: Callable[[Path, bytes], LoadedDocument]) -> LoadedDocument:
    """``load_bytes`` reads an attachment by its name (the loader table, passed in to avoid a cycle)."""
    import olefile  # lazily: only .msg files need it

    if not data.startswith(olefile.MAGIC):
        raise DocumentError(path, "not an Outlook .msg (not an OLE compound file)")
    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except Exception as exc:  # olefile raises OSError, struct errors... on damaged files
        raise DocumentError(path, f"damaged .msg ({type(exc).__name__})") from None
    with ole:
        try:
            return _read(path, ole, load_bytes)
        except (DocumentError, MemoryError):
            raise
        except Exception as exc:  # a damaged sector chain or directory inside the file
            raise DocumentError(path, f"damaged .msg ({type(exc).__name__})") from None


def _read(path: Path, ole: Any, load_bytes: Callable[[Path, bytes], LoadedDocument]) -> LoadedDocument:
    message = _Storage(ole, [])
    if not ole.exists("__properties_version1.0") and message.text(_SUBJECT) is None:
        raise DocumentError(path, "not an Outlook .msg (an OLE file without message properties)")
    subject = message.text(_SUBJECT) or "(no subject)"
    name, address = message.text(_SENDER_NAME), message.text(_SENDER_SMTP) or message.text(_SENDER_EMAIL)
    sender = f"{name} <{address}>" if name and address and name != address else (name or address or "")
    when = message.time(_SUBMIT_TIME) or message.time(_DELIVERY_TIME)
    date = email.utils.format_datetime(when) if when else ""
    heading = " — ".join(p for p in (subject, sender, date) if p)
    warnings: list[str] = []
    body = message.text(_BODY) or ""
    if not body.strip() and (html := message.raw(_HTML) or (message.text(_HTML) or "").encode()):
        try:
            body = "\n\n".join(s.text for s in load_html(path, html.rstrip(b"\x00")).sections)
        except DocumentError as exc:
            warnings.append(f"the HTML body could not be read ({exc.reason})")
    attachments = [_Storage(ole, [entry]) for entry in _attachment_storages(ole)]
    names = [a.text(_ATTACH_LONG_NAME) or a.text(_ATTACH_NAME) or "unnamed attachment" for a in attachments]
    fields = [("Subject", subject), ("From", sender), ("To", message.text(_TO)), ("Cc", message.text(_CC))]
    lines = [f"{label}: {value}" for label, value in [*fields, ("Date", date)] if value]
    if names:
        lines.append("Attachments: " + ", ".join(names))
    if not body.strip() and not names:
        raise DocumentError(path, "mail without a readable body")
    writer = SectionWriter()
    writer.add("\n".join(lines) + ("\n\n" + body.strip() if body.strip() else ""), heading=(heading,))
    # An attachment with no data is an embedded message or an OLE object: named above, not read.
    payloads = [(name, a.raw(_ATTACH_DATA)) for a, name in zip(attachments, names, strict=True)]
    add_attachments(writer, path, heading, [(n, p) for n, p in payloads if p], load_bytes, warnings)
    return LoadedDocument(path, "msg", writer.sections, warnings)


def _attachment_storages(ole: Any) -> list[str]:
    found = {entry[0] for entry in ole.listdir(streams=False, storages=True) if len(entry) == 1}
    return sorted(name for name in found if name.startswith("__attach_version1.0_#"))


class _Storage:
    """The properties of the message (``prefix`` empty) or of one attachment in it."""

    def __init__(self, ole: Any, prefix: list[str]) -> None:
        self._ole = ole
        self._prefix = prefix

    def raw(self, prop: int, kind: str = "0102") -> bytes | None:
        name = [*self._prefix, f"__substg1.0_{prop:04X}{kind}"]
        if not self._ole.exists("/".join(name)):
            return None
        data: bytes = self._ole.openstream(name).read()
        return data

    def text(self, prop: int) -> str | None:
        unicode = self.raw(prop, "001F")
        if unicode is not None:
            return unicode.decode("utf-16-le", "replace").rstrip("\x00").strip()
        narrow = self.raw(prop, "001E")
        return narrow.decode("cp1252", "replace").rstrip("\x00").strip() if narrow is not None else None

    def time(self, prop: int) -> dt.datetime | None:
        data = self._fixed()
        offset = _HEADER[not self._prefix]
        for start in range(offset, len(data) - 15, 16):
            kind, pid, _, value = struct.unpack_from("<HHIQ", data, start)
            if pid == prop and kind == _TIME and value:
                try:
                    return dt.datetime(1601, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=value // 10)
                except OverflowError:
                    return None
        return None

    def _fixed(self) -> bytes:
        name = [*self._prefix, "__properties_version1.0"]
        return self._ole.openstream(name).read() if self._ole.exists("/".join(name)) else b""
