"""The web page, as a person uses it: headless Chromium against a real ``rag serve`` process.

One server is started per module, on a free loopback port (``--port 0``), over a store that
already holds a real multi-page PDF and a text file with a ``<script>`` in it.  Chromium is
Debian's (``/usr/bin/chromium``), driven by Playwright; nothing is downloaded.  Every test
saves a screenshot in its temporary folder.  Without Chromium or Playwright the tests skip
and say why (``.ci/run`` installs Chromium, so CI always runs them).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need playwright (pip install -e '.[test]')"
)

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, expect  # noqa: E402

from tests.openai_server import FakeOpenAI, openai_server  # noqa: E402
from tests.serve_process import rag_cli, rag_server, serve_env  # noqa: E402

pytestmark = pytest.mark.slow
# Generous waits for a loaded 2-core CI machine; every wait ends as soon as its condition holds.
expect.set_options(timeout=60_000)

ROOT = Path(__file__).resolve().parents[2]
CITED_PDF = ROOT / "tests" / "fixtures" / "pdf" / "latex_two-column-lorem.pdf"
REVIEW_PDF = ROOT / "data" / "pdf" / "bmc-jtmo-2010_dvt-prophylaxis-review.pdf"
UPLOAD_PDF = ROOT / "tests" / "fixtures" / "pdf" / "google-doc_zen-of-python.pdf"
BAD_PDF = ROOT / "tests" / "fixtures" / "pdf" / "bad" / "not-a-pdf_qpdf-bad1.pdf"

# A question whose answer is in the table on page 3 (of 3) of the two-column PDF, and that row.
PDF_QUESTION = "What is the capital of Belgium?"
PDF_PAGE = 3
PDF_PASSAGE = "Country: Belgium | Population (millions): 11.5"  # the table row, as a record
# One whose passage is a part of its page (the table above is a whole page).
REVIEW_QUESTION = "What is the risk of bleeding with heparin prophylaxis?"
REVIEW_PASSAGE = "The risks of heparin include bleeding"

SCRIPT_DOC = "quokka.txt"
SCRIPT_TEXT = (
    "The quokka is a small marsupial that lives on Rottnest Island near Perth. "
    "<script>window.__rag_pwned = true; document.title = 'pwned';</script> "
    "Quokkas are nocturnal and eat grasses and leaves.\n"
)
SCRIPT_QUESTION = "Where does the quokka live?"
OFF_CORPUS = "What is the boiling point of liquid nitrogen in a pressure cooker on Mars?"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Server:
    """A running ``rag serve`` and the environment it was started with (for ``rag`` commands)."""

    url: str
    env: dict[str, str]


def _rag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = rag_cli(env, *args)
    assert result.returncode == 0, result.stderr
    return result


def _store(tmp: Path, *files: Path, **extra: str) -> dict[str, str]:
    """A store holding ``files`` and the quokka text (indexed by ``rag ingest``), and its environment."""
    docs = tmp / "docs"
    docs.mkdir()
    for file in files:
        shutil.copy(file, docs / file.name)
    (docs / SCRIPT_DOC).write_text(SCRIPT_TEXT, encoding="utf-8")
    env = serve_env(tmp / "home", **extra)
    _rag(env, "ingest", str(docs), "--embedder", "local")
    return env


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An offline server over two real PDFs and a text file with a <script> in it."""
    env = _store(tmp_path_factory.mktemp("web"), CITED_PDF, REVIEW_PDF, RAG_LLM="none")
    with rag_server(env) as running:
        yield Server(running.url, env)


@dataclass
class Watched:
    """A page with what it printed to the console and every request it made."""

    page: Page
    errors: list[str]
    requests: list[str]
    outside: list[str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def watch(browser: Browser, width: int = 1280, height: int = 800) -> Watched:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watched = Watched(page, [], [], [])

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    def guard(route: Route, request: Request) -> None:
        # Nothing may leave the machine: anything not on loopback is recorded and refused.
        watched.requests.append(request.url)
        host = urlsplit(request.url).hostname or ""
        if request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            watched.outside.append(request.url)
            route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    context.route("**/*", guard)
    return watched


@pytest.fixture
def web(browser: Browser, web_server: Server, tmp_path: Path) -> Iterator[Watched]:
    watched = watch(browser)
    watched.page.goto(web_server.url)
    expect(watched.page.locator("body")).to_have_attribute("data-ready", "true")
    yield watched
    watched.page.context.close()


def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def ask(page: Page, question: str) -> Any:
    """Type a question, press Enter, and wait for the answer to finish; returns the turn."""
    box = page.locator("#question")
    box.fill(question)
    turns = page.locator(".turn")
    before = turns.count()
    box.press("Enter")
    turn = turns.nth(before)
    expect(turn.locator(".answer")).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(turn.locator(".answer-meta .badge").first).to_be_visible()
    return turn


def api(web_server: Server, path: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(web_server.url.rstrip("/") + "/api/v1" + path, timeout=60) as response:
        return json.load(response)


# --- the tests ----------------------------------------------------------------------------


def test_page_loads_clean_and_stays_on_localhost(web: Watched, tmp_path: Path) -> None:
    page = web.page
    expect(page.locator("#index-select")).to_have_value("default")
    expect(page.locator("#question")).to_be_focused()
    page.locator("#open-documents").click()
    expect(page.locator("#document-list .document-name")).to_have_text(
        sorted([CITED_PDF.name, REVIEW_PDF.name, SCRIPT_DOC])
    )
    screenshot(page, tmp_path, "loaded")
    csp = page.evaluate("() => fetch('/').then(r => r.headers.get('content-security-policy'))")
    assert csp and "default-src 'self'" in csp
    assert web.errors == []
    assert web.outside == []
    assert any(url.endswith("/app.js") for url in web.requests)


def test_upload_pdf_shows_its_stages(web: Watched, web_server: Server, tmp_path: Path) -> None:
    page = web.page
    page.locator("#open-documents").click()
    # Record every stage each upload row goes through, as the page shows them.
    page.evaluate(
        """() => {
        window.__stages = {};
        new MutationObserver(() => {
          for (const row of document.querySelectorAll('#uploads li')) {
            const seen = (window.__stages[row.dataset.file] ||= []);
            const stage = row.dataset.stage;
            if (stage && seen[seen.length - 1] !== stage) seen.push(stage);
          }
        }).observe(document.getElementById('uploads'),
                   {subtree: true, childList: true, attributes: true, characterData: true});
      }"""
    )
    page.locator("#file-input").set_input_files([str(UPLOAD_PDF), str(BAD_PDF)])
    good = page.locator(f'#uploads li[data-file="{UPLOAD_PDF.name}"]')
    bad = page.locator(f'#uploads li[data-file="{BAD_PDF.name}"]')
    expect(good).to_have_attribute("data-stage", "stored")
    expect(bad).to_have_attribute("data-stage", "failed")
    expect(bad.locator(".upload-reason")).not_to_be_empty()
    expect(page.locator("#document-list .document-name", has_text=UPLOAD_PDF.name)).to_be_visible()
    screenshot(page, tmp_path, "uploaded")
    stages = page.evaluate("() => window.__stages")
    assert stages[UPLOAD_PDF.name][-1] == "stored"
    assert "embedded" in stages[UPLOAD_PDF.name], stages
    assert stages[UPLOAD_PDF.name].index("embedded") < stages[UPLOAD_PDF.name].index("stored")
    assert web.errors == []
    documents = api(web_server, "/documents?index=default")["documents"]
    assert any(d["source"].endswith(UPLOAD_PDF.name) for d in documents)


OTTERS = (
    "# Sea otters\n\nSea otters float on their backs and use stones as tools to crack open the shells of "
    "clams and sea urchins. They keep a favourite stone in a pouch of loose skin under the forelimb.\n"
)


def drop_files(page: Page, selector: str, files: dict[str, bytes]) -> None:
    """Drop files on an element, as a drag from the desktop does (a real DataTransfer and drop event)."""
    encoded = {name: base64.b64encode(data).decode() for name, data in files.items()}
    page.locator(selector).evaluate(
        """(target, files) => {
        const transfer = new DataTransfer();
        for (const [name, b64] of Object.entries(files)) {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], name));
        }
        for (const type of ['dragenter', 'dragover', 'drop']) {
          target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
      }""",
        encoded,
    )


def test_new_index_drop_ask_and_delete(web: Watched, web_server: Server, tmp_path: Path) -> None:
    page = web.page
    page.locator("#index-select").select_option(label="New index…")
    page.locator("#index-name").fill("team-notes")
    page.locator("#index-name").press("Enter")
    expect(page.locator("#index-select")).to_have_value("team-notes")
    expect(page.locator("#documents-view")).to_be_visible()
    expect(page.locator("#documents-empty")).to_be_visible()

    drop_files(page, "#dropzone", {"otters.md": OTTERS.encode(), "notes.xyz": b"not a document"})
    expect(page.locator('#uploads li[data-file="otters.md"]')).to_have_attribute("data-stage", "stored")
    refused = page.locator('#uploads li[data-file="notes.xyz"]')
    expect(refused).to_have_attribute("data-stage", "failed")
    expect(refused.locator(".upload-reason")).to_contain_text("unsupported")
    expect(page.locator("#document-list .document-name")).to_have_text(["otters.md"])
    screenshot(page, tmp_path, "dropped")
    page.locator("#clear-uploads").click()
    expect(page.locator("#uploads li")).to_have_count(0)

    turn = ask(page, "What do sea otters use to crack open shells?")
    expect(turn.locator(".answer .sources")).to_contain_text("otters.md")

    delete = page.locator("#document-list li", has_text="otters.md").get_by_role("button")
    delete.click()
    expect(delete).to_have_text("Really delete?")
    delete.click()
    expect(page.locator("#document-list li")).to_have_count(0)
    assert api(web_server, "/documents?index=team-notes")["documents"] == []
    screenshot(page, tmp_path, "deleted")

    # Sessions belong to their index: the default index does not list this one.
    otters = '#session-list li[data-session="sea-otters-use-crack-open-shells"]'
    page.locator("#index-select").select_option("default")
    expect(page.locator(otters)).to_have_count(0)
    page.locator("#index-select").select_option("team-notes")
    expect(page.locator(otters)).to_have_count(1)
    expect(page.locator(otters).locator(".session-name")).to_have_text("What do sea otters use to crack open shells?")
    assert web.errors == []


def test_answer_streams_in_pieces_and_citation_opens_the_passage(web: Watched, tmp_path: Path) -> None:
    page = web.page
    page.evaluate(
        """() => {
        window.__lengths = [];
        new MutationObserver(() => {
          const answers = document.querySelectorAll('.answer.streaming .answer-text');
          if (answers.length) window.__lengths.push(answers[answers.length - 1].textContent.length);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
      }"""
    )
    turn = ask(page, PDF_QUESTION)
    lengths = [n for n in page.evaluate("() => window.__lengths") if n]
    assert len(set(lengths)) >= 2, f"the answer arrived in one piece: {lengths}"
    answer = turn.locator(".answer")
    expect(answer).not_to_have_class(re.compile(r"\brefused\b"))
    expect(answer.locator(".badge.extractive")).to_be_visible()
    screenshot(page, tmp_path, "answered")

    turn.locator(".answer-text .cite", has_text="[1]").first.click()
    expect(page.locator("#source")).to_be_visible()
    expect(page.locator("#source-name")).to_have_text(CITED_PDF.name)
    expect(page.locator("#source-page")).to_have_text(f"page {PDF_PAGE}")
    mark = page.locator("#source-text mark")
    expect(mark).to_contain_text(PDF_PASSAGE)
    expect(mark).to_be_in_viewport()
    href = page.locator("#source-open").get_attribute("href") or ""
    assert href.endswith(f"#page={PDF_PAGE}") and "/file" in href
    screenshot(page, tmp_path, "source")
    # The link serves the original PDF.
    kind = page.evaluate("(u) => fetch(u).then(r => r.headers.get('content-type'))", href.split("#")[0])
    assert kind.startswith("application/pdf")

    # A passage inside a longer page: only the passage is marked, the rest of the page is around it.
    turn = ask(page, REVIEW_QUESTION)
    turn.locator(".answer-text .cite", has_text="[1]").first.click()
    expect(page.locator("#source-name")).to_have_text(REVIEW_PDF.name)
    expect(mark).to_contain_text(REVIEW_PASSAGE)
    expect(mark).to_be_in_viewport()
    marked = mark.text_content() or ""
    page_text = page.locator("#source-text").text_content() or ""
    assert marked in page_text and len(page_text) > len(marked) + 100
    screenshot(page, tmp_path, "source-passage")
    assert web.errors == []
    assert web.outside == []


def test_off_corpus_question_is_refused_without_citations(web: Watched, tmp_path: Path) -> None:
    turn = ask(web.page, OFF_CORPUS)
    answer = turn.locator(".answer")
    expect(answer).to_have_class(re.compile(r"\brefused\b"))
    expect(answer.locator(".badge.refusal")).to_be_visible()
    expect(answer.locator(".cite")).to_have_count(0)
    expect(answer.locator(".sources")).to_have_count(0)
    # A refusal looks different from an answer.
    refused_bg = answer.evaluate("e => getComputedStyle(e).backgroundColor")
    screenshot(web.page, tmp_path, "refused")
    turn2 = ask(web.page, PDF_QUESTION)
    answer_bg = turn2.locator(".answer").evaluate("e => getComputedStyle(e).backgroundColor")
    assert refused_bg != answer_bg
    assert web.errors == []


def test_session_survives_a_reload(web: Watched, web_server: Server, tmp_path: Path) -> None:
    page = web.page
    ask(page, SCRIPT_QUESTION)
    current = page.locator("#session-list li.current")
    expect(current).to_have_count(1)
    name = current.get_attribute("data-session") or ""
    assert name.startswith("quokka-live")  # the subject, readable, for `rag chat --session NAME`
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator(f'#session-list li[data-session="{name}"]')).to_have_class(re.compile(r"\bcurrent\b"))
    expect(page.locator(".turn .question")).to_have_text([SCRIPT_QUESTION])
    expect(page.locator(".turn .answer .cite").first).to_be_visible()
    screenshot(page, tmp_path, "reloaded")
    # The same session is the one `rag chat --session` sees, and the other way round.
    shown = _rag(web_server.env, "history", "show", name)
    assert SCRIPT_QUESTION in shown.stdout
    chat = subprocess.run(
        [sys.executable, "-m", "rag", "chat", "--session", name, "--llm", "none"],
        input="And what do quokkas eat?\n",
        capture_output=True,
        text=True,
        env=web_server.env,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr
    page.reload()
    expect(page.locator(".turn .question")).to_have_text([SCRIPT_QUESTION, "And what do quokkas eat?"])
    expect(page.locator(f'#session-list li[data-session="{name}"] .session-info')).to_contain_text("2 questions")

    # Deleting it from the sidebar deletes it for the terminal too.
    page.locator(f'#session-list li[data-session="{name}"] .session-delete').click()
    expect(page.locator(f'#session-list li[data-session="{name}"]')).to_have_count(0)
    expect(page.locator(".turn")).to_have_count(0)
    assert rag_cli(web_server.env, "history", "show", name).returncode != 0
    assert web.errors == []


def test_script_in_a_document_shows_as_text(web: Watched, tmp_path: Path) -> None:
    page = web.page
    turn = ask(page, SCRIPT_QUESTION)
    turn.locator(".answer-text .cite").first.focus()  # by keyboard this time
    page.keyboard.press("Enter")
    source = page.locator("#source-text")
    expect(source).to_contain_text("<script>window.__rag_pwned = true;")
    assert page.locator("#source-text script, #messages script").count() == 0
    assert page.evaluate("() => window.__rag_pwned") is None
    assert page.title() != "pwned"
    screenshot(page, tmp_path, "script-as-text")
    assert web.errors == []


def test_phone_width(browser: Browser, web_server: Server, tmp_path: Path) -> None:
    watched = watch(browser, width=375, height=740)
    page = watched.page
    try:
        page.goto(web_server.url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        # Nothing runs off the side of a phone screen.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        turn = ask(page, PDF_QUESTION)
        screenshot(page, tmp_path, "phone-answer")
        turn.locator(".answer-text .cite").first.click()
        expect(page.locator("#source-text mark").first).to_be_in_viewport()
        # The source covers the messages, never the composer: the next question can be typed.
        expect(page.locator("#question")).to_be_in_viewport()
        on_top = (
            "(id) => { const r = document.getElementById(id).getBoundingClientRect();"
            " return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).id; }"
        )
        assert page.evaluate(on_top, "question") == "question"
        assert page.evaluate(on_top, "send") == "send"
        side = page.locator("#side").bounding_box()
        composer = page.locator("#ask-form").bounding_box()
        assert side and composer and side["y"] + side["height"] <= composer["y"] + 1
        screenshot(page, tmp_path, "phone-source")
        page.keyboard.press("Escape")
        expect(page.locator("#side")).to_be_hidden()
        # The drawer opens over a backdrop that dims the chat; a tap on it closes the drawer.
        page.locator("#toggle-sessions").click()
        expect(page.locator("#session-list li").first).to_be_in_viewport()
        drawer = page.locator("#sessions").bounding_box()
        assert drawer is not None and drawer["x"] >= 0 and drawer["x"] + drawer["width"] <= 375
        backdrop = page.locator("#drawer-backdrop")
        expect(backdrop).to_be_visible()
        assert backdrop.evaluate("e => getComputedStyle(e).backgroundColor") not in ("transparent", "rgba(0, 0, 0, 0)")
        x = drawer["x"] + drawer["width"] + 20
        assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).id", [x, 300]) == "drawer-backdrop"
        screenshot(page, tmp_path, "phone-sessions")
        page.mouse.click(x, 300)
        expect(page.locator("#sessions")).not_to_be_in_viewport()
        expect(backdrop).to_be_hidden()
        expect(page.locator("#toggle-sessions")).to_have_attribute("aria-expanded", "false")
        assert watched.errors == []
    finally:
        page.context.close()


# --- with an LLM (the fake OpenAI server), and with a key ---------------------------------

LLM_REPLY = "Quokkas live on Rottnest Island, near Perth [1]. " + "They are small marsupials that eat leaves. " * 6


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, FakeOpenAI]]:
    """A server whose answers come from the fake OpenAI server, slowly enough to be stopped."""
    with openai_server(delta_delay=0.05) as fake:
        fake.default_reply = LLM_REPLY
        key = fake.api_key or "sk-any"
        env = _store(tmp_path_factory.mktemp("web-llm"), OPENAI_API_KEY=key, OPENAI_BASE_URL=fake.base_url)
        env["RAG_LLM"] = "openai"
        with rag_server(env) as running:
            yield Server(running.url, env), fake


@pytest.fixture
def llm_web(browser: Browser, llm_server: tuple[Server, FakeOpenAI]) -> Iterator[tuple[Watched, FakeOpenAI]]:
    """The page of the LLM-backed server, loaded; the fake model's reply and pace are put back after."""
    server, fake = llm_server
    watched = watch(browser)
    try:
        watched.page.goto(server.url)
        expect(watched.page.locator("body")).to_have_attribute("data-ready", "true")
        yield watched, fake
    finally:
        fake.delta_delay, fake.default_reply = 0.05, LLM_REPLY
        watched.page.context.close()


def test_llm_answer_is_labelled_and_stop_cancels(llm_web: tuple[Watched, FakeOpenAI], tmp_path: Path) -> None:
    watched, fake = llm_web
    page = watched.page
    turn = ask(page, SCRIPT_QUESTION)
    answer = turn.locator(".answer")
    expect(answer.locator(".badge.llm")).to_be_visible()
    expect(answer.locator(".badge.extractive")).to_have_count(0)
    # The model's own citation (rag may attribute the sentences it left uncited: drawn apart).
    expect(answer.locator(".answer-text .cite:not(.attributed)")).to_have_text(["[1]"])
    expect(answer.locator(".usage")).to_contain_text("tokens")  # what the LLM call spent
    screenshot(page, tmp_path, "llm-answer")

    # Stop: Esc once the first words are in; the partial answer stays, marked as stopped.
    fake.delta_delay = 0.5
    page.locator("#question").fill("And what do they eat?")
    page.locator("#question").press("Enter")
    streaming = page.locator(".answer.streaming .answer-text")
    expect(streaming).not_to_be_empty()
    expect(page.locator("#stop")).to_be_visible()
    page.keyboard.press("Escape")
    stopped = page.locator(".turn").nth(1).locator(".answer")
    expect(stopped.locator(".badge.stopped")).to_be_visible()
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#send")).to_be_enabled()
    partial = stopped.locator(".answer-text").text_content() or ""
    assert partial and len(partial) < len(LLM_REPLY)
    screenshot(page, tmp_path, "stopped")
    assert watched.errors == []
    assert watched.outside == []


def test_a_model_answer_no_source_backs_gives_way_to_quotes_or_is_badged_apart_from_a_plain_refusal(
    llm_web: tuple[Watched, FakeOpenAI], tmp_path: Path
) -> None:
    watched, fake = llm_web
    fake.default_reply = "Captain Ahab first described quokkas in 1742 [1]."
    # Nothing to quote either (no source names Ahab or 1742): a refusal, badged as the model's.
    answer = ask(watched.page, "Which quokka did Captain Ahab describe in 1742?").locator(".answer")
    expect(answer).to_have_class(re.compile(r"\brefused\b"))
    badge = answer.locator(".badge.refusal")
    expect(badge).to_have_text("Not backed")
    assert "no sentence of its answer in the sources" in (badge.get_attribute("title") or "")
    expect(answer.locator(".answer-text")).not_to_contain_text("Ahab")  # held back, never shown
    screenshot(watched.page, tmp_path, "not-backed")
    # The documents answer the question: quotes of them stand in for the model's answer.
    quoted = ask(watched.page, SCRIPT_QUESTION).locator(".answer")
    expect(quoted).not_to_have_class(re.compile(r"\brefused\b"))
    badge = quoted.locator(".badge.extractive")
    expect(badge).to_have_text("Quotes instead")
    assert "these are quotes of the sources instead" in (badge.get_attribute("title") or "")
    expect(quoted.locator(".answer-text")).to_contain_text("Rottnest")
    expect(quoted.locator(".answer-text")).not_to_contain_text("Ahab")
    expect(quoted.locator(".answer-text .cite")).not_to_have_count(0)
    screenshot(watched.page, tmp_path, "quotes-instead")
    assert watched.errors == []


KEY = "web-test-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that wants a key; its store is empty (the page must still load and work)."""
    env = serve_env(tmp_path_factory.mktemp("web-key") / "home", RAG_API_KEY=KEY)
    with rag_server(env) as running:
        yield Server(running.url, env)


def test_key_is_asked_once(browser: Browser, keyed_server: Server, tmp_path: Path) -> None:
    watched = watch(browser)
    page = watched.page
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization")) if "/api/v1/" in r.url else None)
    try:
        page.goto(keyed_server.url)
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        screenshot(page, tmp_path, "key-asked")
        page.locator("#key-input").fill("wrong-key")
        page.locator("#key-input").press("Enter")
        expect(page.locator("#key-error")).to_have_text("That key was not accepted.")
        page.locator("#key-input").fill(KEY)
        page.locator("#key-input").press("Enter")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(dialog).to_be_hidden()
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(dialog).to_be_hidden()
        assert sent[-1] == f"Bearer {KEY}"
        screenshot(page, tmp_path, "key-remembered")
        # Kept for this tab only, unless asked: another tab asks again; "Remember" keeps it.
        assert page.evaluate("() => localStorage.getItem('rag.apiKey')") is None
        other = page.context.new_page()
        other.goto(keyed_server.url)
        expect(other.locator("#key-dialog")).to_be_visible()
        expect(other.locator("#key-remember")).not_to_be_checked()
        other.locator("#key-input").fill(KEY)
        other.locator("#key-remember").check()
        other.locator("#key-input").press("Enter")
        expect(other.locator("body")).to_have_attribute("data-ready", "true")
        assert other.evaluate("() => localStorage.getItem('rag.apiKey')") == KEY
        other.close()
        third = page.context.new_page()
        third.goto(keyed_server.url)
        expect(third.locator("body")).to_have_attribute("data-ready", "true")
        expect(third.locator("#key-dialog")).to_be_hidden()
        third.close()

        # With a key, uploads (XMLHttpRequest) and the original file (a plain link cannot send
        # the header, so the page fetches it) carry it too.
        page.locator("#open-documents").click()
        drop_files(page, "#dropzone", {SCRIPT_DOC: SCRIPT_TEXT.encode()})
        expect(page.locator(f'#uploads li[data-file="{SCRIPT_DOC}"]')).to_have_attribute("data-stage", "stored")
        ask(page, SCRIPT_QUESTION).locator(".answer-text .cite").first.click()
        expect(page.locator("#source-text mark")).to_contain_text("Rottnest Island")
        with page.expect_popup() as opened:
            page.locator("#source-open").click()
        original = opened.value
        original.wait_for_url(re.compile(r"^blob:"))
        expect(original.locator("body")).to_contain_text("<script>window.__rag_pwned")
        screenshot(page, tmp_path, "key-used")
        # The browser logs each 401 as a failed resource load; nothing else may be logged.
        assert all("401" in e for e in watched.errors), watched.errors
    finally:
        page.context.close()


def test_original_opens_in_a_new_tab_with_a_key(browser: Browser, keyed_server: Server, tmp_path: Path) -> None:
    watched = watch(browser)
    page = watched.page
    try:
        page.goto(keyed_server.url)
        page.locator("#key-input").fill(KEY)
        page.locator("#key-input").press("Enter")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        page.locator("#open-documents").click()
        drop_files(page, "#dropzone", {SCRIPT_DOC: SCRIPT_TEXT.encode()})  # stored, or unchanged
        expect(page.locator(f'#uploads li[data-file="{SCRIPT_DOC}"]')).to_have_class(re.compile(r"\bdone\b"))
        ask(page, SCRIPT_QUESTION).locator(".answer-text .cite").first.click()
        link = page.locator("#source-open")
        expect(link).to_be_visible()
        # A middle click (or the link's "open in new tab") would send no key: the page opens it.
        with page.context.expect_page() as tab:
            link.click(button="middle")
        tab.value.wait_for_url(re.compile(r"^blob:"), timeout=20_000)
        assert link.get_attribute("href") is None
        expect(tab.value.locator("body")).to_contain_text("<script>window.__rag_pwned")
        screenshot(tab.value, tmp_path, "original-in-tab")
        tab.value.close()
        # By keyboard too.
        with page.context.expect_page() as tab:
            link.press("Enter")
        tab.value.wait_for_url(re.compile(r"^blob:"))
        tab.value.close()
        assert all("401" in e for e in watched.errors), watched.errors
    finally:
        page.context.close()
