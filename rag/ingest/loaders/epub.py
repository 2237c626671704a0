"""E-books (.epub): chapters in reading order, each read by the HTML loader.

An EPUB is a zip of XHTML files.  ``META-INF/container.xml`` names the package file, whose
spine gives the reading order; the table of contents (EPUB 3 ``nav`` or EPUB 2 NCX) gives
each chapter's title, which heads the heading path of every section in that chapter.  A
chapter missing from the table of contents is titled by its first heading.  The zip
and XML are read with the standard library, so no e-book package is needed.
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

from rag.errors import DocumentError
from rag.ingest.document import LoadedDocument
from rag.ingest.loaders.container import open_zip, read_member
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.layout import SectionWriter

_HTML_TYPES = {"application/xhtml+xml", "text/html"}


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
        titles = _toc_titles(path, archive, manifest, root)
        writer = SectionWriter()
        warnings: list[str] = []
        for idref in spine:
            if idref not in manifest or manifest[idref][1] not in _HTML_TYPES:
                continue
            href = manifest[idref][0]
            try:
                chapter = load_html(Path(f"{path}/{href}"), read_member(path, archive, href, ".epub"))
            except DocumentError as exc:  # one bad chapter must not lose the others
                warnings.append(f"{href}: {exc.reason}")
                continue
            title = titles.get(href) or next((s.heading[0] for s in chapter.sections if s.heading), "")
            for section in chapter.sections:
                heading = tuple(h for h in section.heading if h != title)
                writer.add(section.text, heading=(title, *heading) if title else heading)
    return LoadedDocument(path, "epub", writer.sections, warnings)


def _package_path(path: Path, archive: zipfile.ZipFile) -> str:
    container = _xml(path, read_member(path, archive, "META-INF/container.xml", ".epub"))
    for element in container.iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            return element.get("full-path", "")
    raise DocumentError(path, "damaged .epub: container.xml names no package file")


def _toc_titles(
    path: Path, archive: zipfile.ZipFile, manifest: dict[str, tuple[str, str, str]], package: ElementTree.Element
) -> dict[str, str]:
    """Chapter file -> title, from the EPUB 3 nav document or else the EPUB 2 NCX."""
    titles: dict[str, str] = {}
    nav = next((href for href, _, props in manifest.values() if "nav" in props.split()), None)
    ncx = next((href for href, media, _ in manifest.values() if media == "application/x-dtbncx+xml"), None)
    try:
        if nav:
            root = _xml(path, archive.read(nav))
            for a in root.iter():
                if _local(a.tag) == "a" and a.get("href"):
                    _remember(titles, nav, a.get("href", ""), "".join(a.itertext()))
        if not titles and ncx:
            root = _xml(path, archive.read(ncx))
            for point in root.iter():
                if _local(point.tag) != "navPoint":
                    continue
                label = next((e for e in point.iter() if _local(e.tag) == "text"), None)
                content = next((e for e in point.iter() if _local(e.tag) == "content"), None)
                if label is not None and content is not None:
                    _remember(titles, ncx, content.get("src", ""), "".join(label.itertext()))
    except (KeyError, DocumentError, zipfile.BadZipFile):
        pass  # no usable table of contents: chapters are titled by their headings
    return titles


def _remember(titles: dict[str, str], toc: str, href: str, label: str) -> None:
    target = posixpath.normpath(posixpath.join(posixpath.dirname(toc), unquote(href.split("#")[0])))
    label = " ".join(label.split())
    if label and target not in titles:
        titles[target] = label


def _xml(path: Path, data: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise DocumentError(path, f"damaged .epub: bad XML ({exc})") from None


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
