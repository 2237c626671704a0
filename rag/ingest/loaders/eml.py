"""Saved mail (.eml): subject, sender and date as the heading, then the body and attachments.

The body is the text/plain part, or else the text/html part read by the HTML loader.
Attachments are listed in the mail's first section, and each one of a type rag reads is
loaded too, under the heading ``(subject, "attachment: NAME")`` with its own pages.  The
standard library's parser is lenient; a MIME tree so broken that no body can be found is
reported with the defect the parser saw.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.layout import SectionWriter
from rag.ingest.loaders.text import decode_text


def load_eml(path: Path, data: bytes, load_bytes: Callable[[Path, bytes], LoadedDocument]) -> LoadedDocument:
    """``load_bytes`` reads an attachment by its name (the loader table, passed in to avoid a cycle)."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
    except Exception as exc:  # the parser is lenient, but header folding can still raise
        raise DocumentError(path, f"malformed mail ({type(exc).__name__})") from None
    assert isinstance(message, EmailMessage)
    subject = _header(message, "subject") or "(no subject)"
    sender, date = _header(message, "from"), _header(message, "date")
    heading = " — ".join(p for p in (subject, sender, date) if p)
    defects = [type(d).__name__ for part in message.walk() for d in part.defects]

    body, warnings = _body(path, message)
    attachments = [(part.get_filename() or "unnamed", part) for part in _attachments(message)]
    header_lines = [
        f"{name}: {value}" for name in ("Subject", "From", "To", "Date") if (value := _header(message, name))
    ]
    if attachments:
        header_lines.append("Attachments: " + ", ".join(name for name, _ in attachments))
    if body is None and not attachments:
        reason = f"malformed MIME ({', '.join(sorted(set(defects)))})" if defects else "mail without a readable body"
        raise DocumentError(path, reason)

    writer = SectionWriter()
    writer.add("\n".join(header_lines) + ("\n\n" + body if body else ""), heading=(heading,))
    for name, part in attachments:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload.strip():
            continue
        try:
            attached = load_bytes(Path(f"{path}/{name}"), payload)
        except DocumentError as exc:
            if "unsupported file type" not in exc.reason:
                warnings.append(f"attachment {name}: {exc.reason}")
            continue
        for section in attached.sections:
            writer.add(section.text, page=section.page, heading=(heading, f"attachment: {name}", *section.heading))
    if defects:
        warnings.append(f"MIME defects: {', '.join(sorted(set(defects)))}")
    return LoadedDocument(path, "eml", writer.sections, warnings)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header (bad encoded-word) reads as absent
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _body(path: Path, message: EmailMessage) -> tuple[str | None, list[str]]:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return None, []
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return None, []
    if part.get_content_subtype() == "html":
        try:
            html = load_html(path, raw)
        except DocumentError:
            return None, []
        return "\n\n".join(s.text for s in html.sections), html.warnings
    declared = part.get_content_charset()
    try:
        decoded = decode_text(raw, path, declared=declared)
    except DocumentError:
        return None, []
    return decoded.text.strip(), [decoded.warning] if decoded.warning else []


def _attachments(message: EmailMessage) -> list[EmailMessage]:
    try:
        return [p for p in message.iter_attachments() if isinstance(p, EmailMessage)]
    except Exception:  # a malformed multipart
        return []
