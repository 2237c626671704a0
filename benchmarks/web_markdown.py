"""How fast the page draws a source as Markdown and marks a passage (rag/serve/static/markdown.js).

Runs the page's own script in headless Chromium (Debian's, through Playwright) on the
bundled articles repeated to about 450 KB (the size of the largest upload the #23 probe
made), and on pathological input: one 100 KB paragraph of emphasis, code and bracket marks
that never close.  Prints one row per input: characters, text nodes, milliseconds to render
and to mark a passage and attach the result to the page (median of --rounds).

    python benchmarks/web_markdown.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "rag" / "serve" / "static" / "markdown.js"
CHROMIUM = "/usr/bin/chromium"
TARGET = 450_000

MEASURE = """(text) => {
  const started = performance.now();
  const rendered = window.ragMarkdown.markdown(text);
  const drawn = performance.now();
  window.ragMarkdown.highlight(rendered, [
    {start: 1000, end: 9000, tag: 'span', className: 'passage'},
    {start: 2000, end: 2400, tag: 'mark'},
  ]);
  document.body.append(rendered.root);
  document.body.getBoundingClientRect();  // layout included
  const marked = performance.now();
  rendered.root.remove();
  return [text.length, rendered.pieces.length, drawn - started, marked - drawn];
}"""


def inputs() -> list[tuple[str, str]]:
    articles = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "data" / "articles").glob("*.md")))
    copies = max(1, TARGET // len(articles))
    return [
        (f"data/articles x{copies}", "\n\n".join([articles] * copies)),
        ("100 KB of unclosed marks", "a * b _ c ` d [ e ~~ " * 5000),
        ("table, 2,000 rows", "| a | b | c |\n|---|:-:|--:|\n" + "| **x** | `y` | [z](https://e.test) |\n" * 2000),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.set_content("<!doctype html><body></body>")
        page.add_script_tag(path=str(SCRIPT))
        print(f"{'input':<28} {'chars':>9} {'text nodes':>11} {'render ms':>10} {'mark+attach ms':>15}")
        for name, text in inputs():
            runs = [page.evaluate(MEASURE, text) for _ in range(args.rounds)]
            chars, nodes = runs[0][0], runs[0][1]
            render = statistics.median(r[2] for r in runs)
            mark = statistics.median(r[3] for r in runs)
            print(f"{name:<28} {chars:>9,} {nodes:>11,} {render:>10.0f} {mark:>15.0f}")
        browser.close()


if __name__ == "__main__":
    main()
