"""The page's files, read as files: the rules that keep it safe and offline, checked without a browser.

The browser tests (``test_web.py``) show the page working; these pin the rules every later
edit must keep, and run even where Chromium is missing.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources

STATIC = resources.files("rag.serve") / "static"
SCRIPTS = ("markdown.js", "passage.js", "app.js")
PAGE_FILES = ("index.html", "app.css", *SCRIPTS)


def read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def test_the_page_ships_with_the_package() -> None:
    for name in (*PAGE_FILES, "favicon.svg"):
        assert (STATIC / name).is_file(), name


def test_document_text_never_becomes_html() -> None:
    # Everything from documents and answers goes in through textContent / createTextNode.
    for name in SCRIPTS:
        code = read(name)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code.replace("never innerHTML", "").replace("never as HTML", ""), (name, sink)


def test_nothing_is_loaded_from_elsewhere() -> None:
    # No CDN, no web fonts, no analytics: the page works offline and behind a firewall.
    for name in PAGE_FILES:
        text = read(name)
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
        assert "@import" not in text, name


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_page_fits_a_default_src_self_policy() -> None:
    # CSP default-src 'self' blocks inline scripts, inline styles and event-handler attributes.
    parser = _Tags()
    html = read("index.html")
    parser.feed(html)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert "<style" not in html
    for tag, attrs in parser.tags:
        assert "style" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), tag
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http:", "https:", "//", "data:", "javascript:")), (tag, value)


def test_every_script_is_loaded_in_order() -> None:
    # app.js uses the other two: they come first (all deferred, so they run in this order).
    parser = _Tags()
    parser.feed(read("index.html"))
    sources = [attrs.get("src") for tag, attrs in parser.tags if tag == "script"]
    assert sources == list(SCRIPTS)
    assert all(attrs.get("defer") is not None or "defer" in attrs for tag, attrs in parser.tags if tag == "script")


def test_the_key_is_remembered_only_when_asked() -> None:
    # "Remember on this device" puts the key in localStorage: it starts unticked.
    parser = _Tags()
    parser.feed(read("index.html"))
    boxes = [attrs for tag, attrs in parser.tags if tag == "input" and attrs.get("id") == "key-remember"]
    assert len(boxes) == 1 and "checked" not in boxes[0]
