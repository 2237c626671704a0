"""Saved mail (.eml): subject, sender and date as the heading, then the body and attachments.

The body is every text part in order (of alternatives, the plain-text one; HTML is read
by the HTML loader), forwarded mails and digest entries included.  Attachments are
listed in the mail's first section, and each one of a type rag reads is loaded too,
under the heading ``(subject, "attachment: NAME")`` with its own pages.  The standard
library's parser is lenient; a MIME tree so broken that no body can be found is
reported with the defect the parser saw.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterable
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

    texts: list[str] = []
    attachments: list[tuple[str, EmailMessage]] = []
    warnings: list[str] = []
    _walk(path, message, texts, attachments, warnings)
    body = "\n\n".join(t for t in texts if t.strip()) or None
    fields = ("Subject", "From", "To", "Date")
    header_lines = [f"{name}: {value}" for name in fields if (value := _header(message, name))]
    if attachments:
        header_lines.append("Attachments: " + ", ".join(name for name, _ in attachments))
    if body is None and not attachments:
        reason = f"malformed MIME ({', '.join(sorted(set(defects)))})" if defects else "mail without a readable body"
        raise DocumentError(path, reason)

    writer = SectionWriter()
    writer.add("\n".join(header_lines) + ("\n\n" + body if body else ""), heading=(heading,))
    payloads = [(name, part.get_payload(decode=True)) for name, part in attachments]
    add_attachments(
        writer, path, heading, [(n, p) for n, p in payloads if isinstance(p, bytes) and p.strip()], load_bytes, warnings
    )
    if defects:
        warnings.append(f"MIME defects: {', '.join(sorted(set(defects)))}")
    return LoadedDocument(path, "eml", writer.sections, warnings)


def add_attachments(
    writer: SectionWriter,
    path: Path,
    heading: str,
    attachments: Iterable[tuple[str, bytes]],
    load_bytes: Callable[[Path, bytes], LoadedDocument],
    warnings: list[str],
) -> None:
    """Each attachment's sections under ``heading > attachment: NAME`` (.eml and .msg alike).

    One that cannot be read is a warning; one of a type rag does not read is only named.
    """
    for name, payload in attachments:
        try:
            attached = load_bytes(Path(f"{path}/{name}"), payload)
        except DocumentError as exc:
            if "unsupported file type" not in exc.reason:
                warnings.append(f"attachment {name}: {exc.reason}")
            continue
        for section in attached.sections:
            writer.add(section.text, page=section.page, heading=(heading, f"attachment: {name}", *section.heading))


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header (bad encoded-word) reads as absent
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _walk(
    path: Path,
    part: EmailMessage,
    texts: list[str],
    attachments: list[tuple[str, EmailMessage]],
    warnings: list[str],
) -> None:
    """Collect the readable text of ``part`` in order, and its attachments."""
    kind = part.get_content_type()
    name = part.get_filename()
    if kind == "message/rfc822" and isinstance(part.get_payload(), list):
        for inner in part.get_payload():
            if isinstance(inner, EmailMessage):  # a forwarded mail or a digest entry
                lines = [f"{h}: {v}" for h in ("Subject", "From", "Date") if (v := _header(inner, h))]
                texts.append("\n".join(lines))
                _walk(path, inner, texts, attachments, warnings)
        return
    if part.is_multipart():
        parts = [p for p in part.iter_parts() if isinstance(p, EmailMessage)]
        if kind == "multipart/alternative" and parts:
            # The same content several ways: plain text is the most faithful to index.
            ranked = sorted(parts, key=lambda p: {"text/plain": 0, "text/html": 1}.get(p.get_content_type(), 2))
            parts = ranked[:1]
        for inner in parts:
            _walk(path, inner, texts, attachments, warnings)
        return
    if name or part.get_content_disposition() == "attachment" or part.get_content_maintype() != "text":
        if name or part.get_content_maintype() != "multipart":
            attachments.append((name or f"unnamed {kind}", part))
        return
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes) or not raw.strip():
        return
    if part.get_content_subtype() == "html":
        try:
            html = load_html(path, raw)
        except DocumentError:
            return
        texts.append("\n\n".join(s.text for s in html.sections))
        warnings.extend(html.warnings)
        return
    try:
        decoded = decode_text(raw, path, declared=part.get_content_charset())
    except DocumentError as exc:
        warnings.append(f"a text part could not be read ({exc.reason})")
        return
    texts.append(decoded.text.strip())
    if decoded.warning:
        warnings.append(decoded.warning)
