"""The page's source pane and answers, in headless Chromium against a real ``rag serve``.

A Markdown file the test writes is drawn as Markdown (from text nodes only: its ``<script>``
stays text, its ``javascript:`` link is no link, its image is never fetched); the sentence
that answers is marked in it, not the whole chunk, with the answer's bold words.  Answers'
``support`` list and the status's ``watch`` list come from other parts of rag: until a
server sends them, the tests add them to the real server's responses on their way to the
page, in exactly the shape the API documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.serve.test_web import (  # noqa: F401  (browser: a fixture, found by name)
    Server,
    Watched,
    _store,
    ask,
    browser,
    drop_files,
    expect,
    screenshot,
    watch,
)
from tests.serve_process import rag_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

pytestmark = pytest.mark.slow

MARKDOWN_DOC = "tides.md"
MARKDOWN = """# Tides of the Severn

The **Severn estuary** has the *second highest* tidal range in the world, up to `15 m` between tides.
See the [survey](https://example.org/severn) and the [local notes](javascript:alert(1)).

## What drives the bore

1. The funnel shape of the estuary.
2. A rising tide meeting the river's flow:
   - spring tides make the largest bores;
   - neap tides make small ones.

> Surfers ride the Severn bore for up to *nine miles* upstream.

| Town | Bore height | Best month |
|:-----|:-----------:|-----------:|
| Minsterworth | 2.0 m | March |
| Newnham | 1.5 m | September |

```
high_water = low_water + 15  # metres
```

<script>window.__md_pwned = true; document.title = 'pwned';</script>
![a photo of the bore](https://example.org/bore.jpg)

The bore was first described in 1607 and it travels at about 13 km/h against the river.
Its roar can be heard a mile away.
"""
BORE_QUESTION = "When was the Severn bore first described?"
BORE_SENTENCE = "The bore was first described in 1607 and it travels at about 13 km/h against the river."


@pytest.fixture(scope="module")
def md_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An offline server over a Markdown file (and test_web's quokka text)."""
    tmp = tmp_path_factory.mktemp("web-md")
    doc = tmp / MARKDOWN_DOC
    doc.write_text(MARKDOWN, encoding="utf-8")
    env = _store(tmp, doc, RAG_LLM="none")
    with rag_server(env) as running:
        yield Server(running.url, env)


@pytest.fixture
def md(browser: Browser, md_server: Server) -> Iterator[Watched]:  # noqa: F811
    watched = watch(browser)
    watched.page.goto(md_server.url)
    expect(watched.page.locator("body")).to_have_attribute("data-ready", "true")
    yield watched
    watched.page.context.close()


def open_first_citation(page: Page, question: str) -> Any:
    turn = ask(page, question)
    turn.locator(".answer-text .cite").first.click()
    expect(page.locator("#source-text mark").first).to_be_visible()
    return turn


def test_markdown_is_drawn_as_markdown_from_text_only(md: Watched, tmp_path: Path) -> None:
    page = md.page
    open_first_citation(page, BORE_QUESTION)
    pane = page.locator("#source-text")
    expect(page.locator("#source-name")).to_have_text(MARKDOWN_DOC)
    # Headings, emphasis, code, lists and quote are elements; their marks are gone.
    expect(pane.locator("h3")).to_have_text("Tides of the Severn")
    expect(pane.locator("h4")).to_have_text("What drives the bore")
    expect(pane.locator("p strong").first).to_have_text("Severn estuary")
    expect(pane.locator("p em").first).to_have_text("second highest")
    expect(pane.locator("p code")).to_have_text("15 m")
    expect(pane.locator("ol > li")).to_have_count(2)
    expect(pane.locator("ol ul > li")).to_have_text(
        ["spring tides make the largest bores;", "neap tides make small ones."]
    )
    expect(pane.locator("blockquote em")).to_have_text("nine miles")
    # A pipe table is indexed as records (column names with every cell), one paragraph each.
    expect(pane.locator("p", has_text="Town: ")).to_have_text(
        [
            "Town: Minsterworth | Bore height: 2.0 m | Best month: March",
            "Town: Newnham | Bore height: 1.5 m | Best month: September",
        ]
    )
    expect(pane.locator("pre code")).to_have_text("high_water = low_water + 15  # metres")
    shown = pane.inner_text()
    assert "# Tides" not in shown and "**" not in shown and "|---" not in shown and "```" not in shown
    # Only an http(s) link is a link, opened apart from the page; the other is text.
    links = pane.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.org/severn")
    assert "noopener" in (links.get_attribute("rel") or "")
    expect(pane.locator(".md-link")).to_have_text("local notes")
    # An image is its alt text, never a request; a <script> is text, never run.
    assert pane.locator("img").count() == 0
    expect(pane.locator(".md-image")).to_have_text("a photo of the bore")
    expect(pane).to_contain_text("<script>window.__md_pwned = true;")
    assert page.locator("#source-text script").count() == 0
    assert page.evaluate("() => window.__md_pwned") is None
    assert page.title() != "pwned"
    screenshot(page, tmp_path, "markdown-source")
    page.locator("#source-text").screenshot(path=str(tmp_path / "markdown-pane.png"))
    assert md.outside == []
    assert md.errors == []


def test_the_sentence_that_answers_is_marked_not_the_chunk(md: Watched, tmp_path: Path) -> None:
    page = md.page
    turn = open_first_citation(page, BORE_QUESTION)
    # The answer's words that answer are bold, as the CLI prints them.
    expect(turn.locator(".answer-text strong.answer-span")).to_have_text("1607")
    mark = page.locator("#source-text mark")
    expect(mark).to_have_text([BORE_SENTENCE])
    expect(mark.locator("strong.answer-span")).to_have_text("1607")
    expect(mark).to_be_in_viewport()
    # The rest of the cited chunk is tinted around it.
    passage = page.locator("#source-text .passage")
    chunk = "".join(passage.all_text_contents())
    assert BORE_SENTENCE in chunk and "Its roar can be heard" in chunk
    screenshot(page, tmp_path, "answering-sentence")
    assert md.errors == []


def test_renderer_keeps_every_character_where_the_offsets_say(md: Watched) -> None:
    # Every text node is a slice of the text at its recorded offset, and marking by offsets
    # changes no text: whatever the Markdown, the passage and sentence land on the right words.
    cases = [
        MARKDOWN,
        "plain *unclosed emphasis and `unclosed code\n\n> quote\nlazy line\n\n- a\n\n  b\n- c",
        "| a | b |\n|---|---|\n| `x|y` | **z** |\n\nSetext\n===\n\n    indented code\n",
        "***both*** __strong__ _em_ snake_case_word ~~gone~~ \\*escaped\\* <https://example.org/x>",
        "[outer [inner] text](http://x.test/a_(b)) ![alt *em*](x.png) 1) one\n2) two\n",
    ]
    for text in cases:
        result = md.page.evaluate(
            """(text) => {
            const r = window.ragMarkdown.markdown(text);
            const wrong = r.pieces.filter((p) => text.slice(p.start, p.start + p.node.data.length) !== p.node.data);
            const before = r.root.textContent;
            window.ragMarkdown.highlight(r, [
              {start: 0, end: Math.floor(text.length / 2), tag: 'span', className: 'passage'},
              {start: 3, end: text.length - 3, tag: 'mark'},
            ]);
            return {wrong: wrong.length, same: r.root.textContent === before,
                    scripts: r.root.querySelectorAll('script, img, iframe').length};
          }""",
            text,
        )
        assert result == {"wrong": 0, "same": True, "scripts": 0}, text


def _with_support(route: Route, answer_text: str, support: list[dict[str, Any]]) -> None:
    """The real server's streamed answer, with `answer_text` and its `support` in the done event."""
    response = route.fetch()
    events = []
    for block in response.text().split("\n\n"):
        if block.startswith("event: done"):
            head, _, data = block.partition("\ndata: ")
            body = json.loads(data)
            body["answer"]["answer"] = answer_text
            body["answer"]["support"] = support
            body["answer"]["spans"] = []
            block = f"{head}\ndata: {json.dumps(body)}"
        events.append(block)
    route.fulfill(response=response, body="\n\n".join(events))


def test_unsupported_sentences_and_attributed_citations_are_shown(md: Watched, tmp_path: Path) -> None:
    page = md.page
    first = "The bore was first described in 1607 [1]."
    second = "It travels upstream against the river at about 13 km/h."
    third = "It is the tallest tidal bore on Earth."
    text = f"{first} {second} {third}"
    at = [text.index(first), text.index(second), text.index(third)]
    support = [
        {"start": at[0], "end": at[0] + len(first), "supported": True, "attributed": False, "citations": [1]},
        {"start": at[1], "end": at[1] + len(second), "supported": True, "attributed": True, "citations": [1]},
        {"start": at[2], "end": at[2] + len(third), "supported": False, "attributed": False, "citations": []},
    ]
    page.route("**/messages", lambda route: _with_support(route, text, support))
    turn = ask(page, BORE_QUESTION)
    answer = turn.locator(".answer-text")
    expect(answer).to_have_text(re.compile(re.escape(third)))
    unsupported = answer.locator(".unsupported")
    expect(unsupported).to_have_text([third])
    expect(unsupported).to_have_attribute("title", "not supported by the cited sources")
    # Set apart visibly: another colour and an underline, not only a class.
    looks = unsupported.evaluate("e => [getComputedStyle(e).color, getComputedStyle(e).textDecorationLine]")
    plain = answer.evaluate("e => getComputedStyle(e).color")
    assert looks[0] != plain and "underline" in looks[1]
    # The model's own [1] is a plain citation; rag's attribution of the second sentence is marked.
    cites = answer.locator(".cite")
    expect(cites).to_have_count(2)
    expect(cites.nth(0)).not_to_have_class(re.compile(r"\battributed\b"))
    expect(cites.nth(1)).to_have_class(re.compile(r"\battributed\b"))
    assert "attributed" in (cites.nth(1).get_attribute("aria-label") or "")
    # Opening the attributed citation marks the sentence it was matched to by its words.
    cites.nth(1).click()
    expect(page.locator("#source-text mark")).to_have_text([BORE_SENTENCE])
    screenshot(page, tmp_path, "support")
    assert md.errors == []


def test_watched_folders_show_their_state_and_last_error(md: Watched, md_server: Server, tmp_path: Path) -> None:
    page = md.page
    watches = [
        {"index": "default", "path": "/srv/notes", "state": "watching", "files": 12, "queued": 0,
         "last_change": 1_790_000_000.0, "last_error": None},
        {"index": "default", "path": "/srv/inbox", "state": "failed", "files": 3, "queued": 2,
         "last_change": None, "last_error": "inbox/broken.pdf: not a PDF file"},
    ]  # fmt: skip

    def status(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        route.fulfill(response=response, json={**body, "watch": watches})

    # Without the field (as today's server), there is no status to show.
    expect(page.locator("#watch-status")).to_be_hidden()
    page.route("**/api/v1/status", status)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    chip = page.locator("#watch-status")
    expect(chip.locator(".long")).to_have_text("Watch: 1 error")
    chip.click()
    items = page.locator("#watch-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0).locator(".watch-path")).to_have_text("/srv/notes")
    expect(items.nth(0).locator(".watch-info")).to_contain_text("watching · 12 files")
    expect(items.nth(1)).to_have_class(re.compile(r"\bfailed\b"))
    expect(items.nth(1).locator(".watch-info")).to_contain_text("2 queued")
    expect(items.nth(1).locator(".watch-error")).to_have_text("inbox/broken.pdf: not a PDF file")
    screenshot(page, tmp_path, "watch-status")
    # A phone's top bar still fits, the chip shortened, with the Key button too.
    page.set_viewport_size({"width": 375, "height": 740})
    page.evaluate("() => document.getElementById('key-button').classList.remove('hidden')")
    expect(chip.locator(".short")).to_have_text("Watch ⚠")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    for button in ("#watch-status", "#open-documents", "#key-button"):
        box = page.locator(button).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, button
    screenshot(page, tmp_path, "watch-status-phone")
    assert md.errors == []


def test_a_failed_first_question_leaves_no_empty_session(md: Watched, md_server: Server, tmp_path: Path) -> None:
    page = md.page

    def sessions() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = page.evaluate("() => fetch('/api/v1/sessions').then(r => r.json())")["sessions"]
        return found

    before = {s["name"] for s in sessions()}
    page.route("**/messages", lambda route: route.abort("connectionreset"))
    turn = page.locator(".turn").nth(0)
    page.locator("#question").fill(BORE_QUESTION)
    page.locator("#question").press("Enter")
    expect(turn.locator(".answer")).to_have_class(re.compile(r"\bfailed\b"))
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#session-list li")).to_have_count(len(before))
    assert {s["name"] for s in sessions()} == before
    screenshot(page, tmp_path, "failed-first-ask")

    # Asked again once the server answers: one session, named by the question's subject.
    page.unroute("**/messages")
    ask(page, BORE_QUESTION)
    expect(page.locator("#session-list li.current")).to_have_count(1)
    current = page.locator("#session-list li.current")
    assert (current.get_attribute("data-session") or "").startswith("severn-bore-first-described")
    expect(current.locator(".session-name")).to_have_text(BORE_QUESTION)
    expect(current.locator(".session-info")).to_contain_text("1 question")
    # The same question again in a new chat gets its own name, not a clash.
    page.locator("#new-session").click()
    ask(page, BORE_QUESTION)
    names = [s["name"] for s in sessions() if s["name"] not in before]
    # (Earlier tests asked it too: the names go on from theirs, base, base-2, base-3...)
    assert len(names) == 2 and all(re.fullmatch(r"severn-bore-first-described(-\d+)?", n) for n in names), names
    assert all(s["turns"] == 1 for s in sessions() if s["name"] in names)
    assert [e for e in md.errors if "ERR_CONNECTION_RESET" not in e] == []


def test_an_upload_kept_under_another_name_says_so(md: Watched, md_server: Server, tmp_path: Path) -> None:
    page = md.page
    page.locator("#open-documents").click()
    drop_files(page, "#dropzone", {"estuary.md": b"# Estuary\n\nThe Severn estuary is muddy.\n"})
    first = page.locator('#uploads li[data-file="estuary.md"]')
    expect(first).to_have_attribute("data-stage", "stored")
    page.locator("#clear-uploads").click()
    # Another file of the same name does not replace the first: the server keeps it as "estuary (2).md".
    drop_files(page, "#dropzone", {"estuary.md": b"# Estuary\n\nThe Dee estuary is sandy.\n"})
    second = page.locator('#uploads li[data-file="estuary.md"]')
    expect(second).to_have_attribute("data-stage", "stored")
    expect(second).to_have_attribute("data-stored", "estuary (2).md")
    expect(second.locator(".upload-reason")).to_have_text("stored as estuary (2).md")
    expect(page.locator("#document-list .document-name", has_text="estuary (2).md")).to_be_visible()
    screenshot(page, tmp_path, "renamed-upload")
    assert md.errors == []
