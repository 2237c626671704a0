"""How a manual lays its text out, for the answer's checks that read a chunk sentence by sentence.

Software manuals (Markdown) differ from articles in four ways that split what one sentence
says over several "sentences":

- paragraphs are hard-wrapped: a sentence runs over two or three lines (``unwrapped``);
- code sits in fenced blocks, which are code, not prose (``fences``);
- a default follows its sentence in brackets: "`max_connections`, maximum number of
  connections. (Default 100)" (``with_asides``);
- a sentence ending in a colon leads to what answers: "Or disable timeouts for an individual
  request:" and the code under it; "It takes instances of `httpx.Limits` which define:" and
  each item of the list under it (``led``).

On benchmarks/answers.py's manuals set, the 0.5B Qwen's "The default value of max_connections
in httpx.Limits is 100." and "To disable timeouts ..., you can set the `timeout` parameter to
`None`." were unsupported for want of these.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

_FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*(\S*).*$", re.M)
#: A code span: quoted from a manual as written, never paraphrased.
CODE_SPAN = re.compile(r"`([^`]+)`")


def fences(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks in ``text`` as (start of the opening fence's line, end of the closing one).

    The chunker (``rag.ingest.chunk``) cuts only a block longer than a chunk, into chunks of
    its own: the first starts with the opening fence, which runs to the chunk's end; the last
    has one fence, which closes a block the chunk started in; any between holds no fence, and
    reads as prose here.  For chunks cut anywhere (an index built before that), a bare first
    fence with text before it, followed by one with a language (```` ```python ````) or in an
    odd count, closes a block the chunk started in.
    """
    marks = list(_FENCE.finditer(text))
    blocks: list[tuple[int, int]] = []
    after_text = bool(marks) and bool(text[: marks[0].start()].strip())  # a first line opens
    if after_text and not marks[0].group(2) and (len(marks) % 2 or marks[1].group(2)):
        blocks.append((0, marks[0].end()))
        marks = marks[1:]
    for opening, closing in itertools.zip_longest(marks[::2], marks[1::2]):
        blocks.append((opening.start(), closing.end() if closing is not None else len(text.rstrip())))
    return blocks


# A list item's marker: a bullet ("-", "*", "+", or one a converter wrote: "•", "▪", "◦",
# "‣") or a number ("1.", "2)"), then a space.
_ITEM_MARK = r"(?:[-*+•▪◦‣]|\d+[.)])\s"
#: A list item's marker with the spaces around it, at a line's start.
BULLET = re.compile(rf"^[ \t]*{_ITEM_MARK}\s*")
# A line that starts a block of its own: a list item, a heading, a table row, a quote, a fence.
_BLOCK_START = re.compile(rf"[ \t]*(?:{_ITEM_MARK}|#|\||>|```|~~~)")
_UNDERLINE = re.compile(r"[ \t]*(?:-{3,}|={3,})[ \t]*$")  # a Setext heading's


def unwrapped(text: str) -> str:
    """``text`` with each line break inside a paragraph made a space, outside code: the same
    length, so offsets into it are offsets into ``text``."""
    code = fences(text)
    lines = text.split("\n")
    out = []
    position = 0
    for line, following in itertools.zip_longest(lines, lines[1:]):
        end = position + len(line)
        joined = bool(
            following is not None
            and line.strip()
            and following.strip()
            and not line.lstrip().startswith(("#", "|", "```", "~~~"))
            and not _BLOCK_START.match(following)
            and not _UNDERLINE.match(following)
            and not _UNDERLINE.match(line)
            and not any(a <= end < b for a, b in code)
        )
        out.append(line + (" " if joined else "\n" if following is not None else ""))
        position = end + 1
    return "".join(out)


# A sentence wholly in brackets: "(Default 100)".
_ASIDE = re.compile(r"\([^()]*\)[.!?]?")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def with_asides(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentence ``spans`` of ``text`` with each bracketed aside joined to the sentence before it
    in its paragraph: "`max_connections`, maximum number of connections. (Default 100)"."""
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and _ASIDE.fullmatch(text[s:e]) and not _BLANK_LINE.search(text[merged[-1][1] : s]):
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def led(text: str, spans: Sequence[tuple[int, int]]) -> list[str]:
    """What each sentence of ``spans`` that ends in a colon leads to, with it: the code block
    right under it, or else each item of the list right under it ("It takes ... which define:
    - `max_connections`, maximum number of connections. (Default 100)")."""
    code = fences(text)
    found = []
    for i, (a, b) in enumerate(spans):
        lead = text[a:b]
        if not lead.endswith(":"):
            continue
        block = next(((s, e) for s, e in code if s >= b and not text[b:s].strip()), None)
        if block is not None:
            found.append(f"{lead}\n{text[block[0] : block[1]]}")
            continue
        for s, e in spans[i + 1 :]:
            if not BULLET.match(text[s:e]):
                break
            found.append(f"{lead} {text[s:e]}")
    return found
