"""E-books (.epub): the text in reading order, each passage headed by its place in the table of contents.

An EPUB is a zip of XHTML files.  ``META-INF/container.xml`` names the package file, whose
spine gives the reading order; the table of contents (EPUB 3 ``nav``, else EPUB 2 NCX) is
a tree of entries, each pointing at a file and often an anchor inside it.  A passage is
headed by the path of the last entry whose anchor precedes it in reading order (so one
file holding several chapters is split where each begins), followed by the file's own
headings below that anchor, less those that only repeat the entry's label.  Files'
``<title>`` is not a heading: in e-books it is the book's name on every file.  The zip and
XML are read with the standard library, so no e-book package is needed.
"""

from __future__ import annotations

import html.entities
import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.container import open_zip, read_member
from rag.ingest.loaders.html import cuts, visible_text
from rag.ingest.loaders.layout import SectionWriter

_HTML_TYPES = {"application/xhtml+xml", "text/html"}
_EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
_WORD = re.compile(r"\w+")
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})


def load_epub(path: Path, data: bytes) -> LoadedDocument:
    archive = open_zip(path, data, ".epub")
    with archive:
        package = _package_path(path, archive)
        root = _xml(path, read_member(path, archive, package, ".epub"))
        base = posixpath.dirname(package)
        manifest: dict[str, tuple[str, str, str]] = {}  # id -> (href, media type, properties)
        for item in root.iter():
            if _local(item.tag) == "item" and item.get("id") and item.get("href"):
                href = posixpath.normpath(posixpath.join(base, unquote(item.get("href", ""))))
                manifest[item.get("id", "")] = (href, item.get("media-type", ""), item.get("properties", ""))
        spine = [i.get("idref", "") for i in root.iter() if _local(i.tag) == "itemref"]
        toc = _toc(path, archive, manifest)
        writer = SectionWriter()
        warnings: list[str] = []
        current: tuple[str, ...] = ()  # the TOC path of the last entry passed, in reading order
        for idref in spine:
            if idref not in manifest or manifest[idref][1] not in _HTML_TYPES:
                continue
            href = manifest[idref][0]
            try:
                page = visible_text(Path(f"{path}/{href}"), read_member(path, archive, href, ".epub"))
            except DocumentError as exc:  # one bad chapter must not lose the others
                warnings.append(f"{href}: {exc.reason}")
                continue
            marks = _marks(toc, href, page.anchors)
            here = 0  # where the current entry's anchor is in this file (0: an earlier file)
            for start, end, headings in cuts(page, (offset for offset, _ in marks)):
                while marks and marks[0][0] <= start:
                    here, current = marks.pop(0)
                inner = tuple(t for t, at in headings if at >= here and not any(_same(t, label) for label in current))
                writer.add(page.text[start:end], heading=(*current, *inner))
    return LoadedDocument(path, "epub", writer.sections, warnings)


def _package_path(path: Path, archive: zipfile.ZipFile) -> str:
    container = _xml(path, read_member(path, archive, "META-INF/container.xml", ".epub"))
    for element in container.iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            return element.get("full-path", "")
    raise DocumentError(path, "damaged .epub: container.xml names no package file")


@dataclass(frozen=True)
class _Entry:
    """A table-of-contents entry: the file and anchor it points to, and its path of labels."""

    file: str
    anchor: str
    path: tuple[str, ...]


def _toc(path: Path, archive: zipfile.ZipFile, manifest: dict[str, tuple[str, str, str]]) -> list[_Entry]:
    """The entries of the EPUB 3 nav document, or else of the EPUB 2 NCX, in reading order."""
    nav = next((href for href, _, props in manifest.values() if "nav" in props.split()), None)
    ncx = next((href for href, media, _ in manifest.values() if media == "application/x-dtbncx+xml"), None)
    entries: list[_Entry] = []
    if nav:
        root = _toc_xml(archive, nav)
        navs = [e for e in root.iter() if _local(e.tag) == "nav"] if root is not None else []
        # The toc nav, not the landmarks or page-list navs beside it.
        toc = next((n for n in navs if "toc" in (n.get(_EPUB_TYPE) or "").split()), navs[0] if navs else None)
        top = next((e for e in toc.iter() if _local(e.tag) == "ol"), None) if toc is not None else None
        if top is not None:
            _nav_entries(top, nav, (), entries)
    if not entries and ncx:
        root = _toc_xml(archive, ncx)
        for nav_map in (e for e in root.iter() if _local(e.tag) == "navMap") if root is not None else ():
            _ncx_entries(nav_map, ncx, (), entries)
    return entries  # empty without a usable table of contents: sections keep their own headings


def _toc_xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element | None:
    """A table of contents' XML, HTML's named entities (``&nbsp;``) allowed; None when unreadable."""
    try:
        data = archive.read(name).decode("utf-8", "replace")
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None
    for attempt in (data, _ENTITY.sub(_entity, data)):
        try:
            return ElementTree.fromstring(attempt)
        except ElementTree.ParseError:
            continue
    return None


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    return match.group(0) if name in _XML_ENTITIES else html.entities.html5.get(name + ";", match.group(0))


def _marks(toc: list[_Entry], file: str, anchors: dict[str, int]) -> list[tuple[int, tuple[str, ...]]]:
    """``(offset, TOC path)`` of the entries pointing into ``file``, in the order of their anchors.

    An entry whose anchor is not in the file is left out rather than guessed; of entries
    at one anchor (a part and its first chapter), the last in the TOC, the deepest, wins.
    """
    found = []
    for i, entry in enumerate(toc):
        offset = anchors.get(entry.anchor) if entry.anchor else 0
        if entry.file == file and offset is not None:
            found.append((offset, i, entry.path))
    return [(offset, path) for offset, _, path in sorted(found)]


def _nav_entries(ol: ElementTree.Element, toc: str, parents: tuple[str, ...], out: list[_Entry]) -> None:
    """``<ol><li><a href>label</a><ol>…</ol></li>…``: each ``li`` a sibling, its ``ol`` its children."""
    for li in _children(ol, "li"):
        label_element = next((c for c in li if _local(c.tag) in ("a", "span")), None)
        label = _label(label_element)
        here = (*parents, label) if label else parents
        if label_element is not None and label_element.get("href"):
            _add(out, toc, label_element.get("href", ""), here)
        for child in _children(li, "ol"):
            _nav_entries(child, toc, here, out)


def _ncx_entries(parent: ElementTree.Element, toc: str, parents: tuple[str, ...], out: list[_Entry]) -> None:
    for point in _children(parent, "navPoint"):
        text = next((e for e in point.iter() if _local(e.tag) == "text"), None)
        content = next((e for e in _children(point, "content")), None)
        label = _label(text)
        here = (*parents, label) if label else parents
        if content is not None and content.get("src"):
            _add(out, toc, content.get("src", ""), here)
        _ncx_entries(point, toc, here, out)


def _add(out: list[_Entry], toc: str, href: str, path: tuple[str, ...]) -> None:
    target, _, anchor = href.partition("#")
    file = posixpath.normpath(posixpath.join(posixpath.dirname(toc), unquote(target))) if target else toc
    if path:
        out.append(_Entry(file, unquote(anchor), path))


def _label(element: ElementTree.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [c for c in element if _local(c.tag) == name]


def _same(heading: str, label: str) -> bool:
    """The file's heading only repeats a TOC label ("CHAPTER IV." under "Chapter IV: The Storm")."""
    words = _WORD.findall(heading.lower())
    return bool(words) and _WORD.findall(label.lower())[: len(words)] == words


def _xml(path: Path, data: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise DocumentError(path, f"damaged .epub: bad XML ({exc})") from None


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
