"""Split a loaded document into overlapping chunks that fit the embedder's input limit.

How: each section is cut into small units (sentences and lines), all units of the
document are counted in one ``count_tokens`` call, and units are packed greedily up to the
target size.  When a chunk is full it is cut back to the strongest break in its second
half (paragraph, then line, then sentence, then word), and the next chunk starts with
the previous one's tail, from a sentence or word start.  Units longer than the target
(tables, runs of CJK text, a URL) are split at whitespace, or anywhere as a last resort.

Markdown's fenced code blocks (``FENCED_KINDS``) are kept whole: a block that fits in a
chunk (``_CODE_STRETCH``) is one unit, with the sentence ending in ':' that leads to it, so no
chunk starts or ends inside it, and no overlap is taken from it.  A longer block is cut at
line breaks into the fewest pieces that fit, each a chunk of its own: the first holds the
opening fence and no closing one, the last the closing fence and no opening one, any between
no fence at all (chunk text stays an exact slice; ``rag.answer.layout.fences`` reads them).
Every other chunk holds whole blocks only.

The limit is a guarantee, not an aim: every finished chunk is counted again as a whole
(sums of parts can differ from the whole by a token or two), and any chunk over
``max_tokens`` is split again until none is.  No text is dropped except whitespace
between chunks.  Chunks never cross a section, so their page and heading are exact, and
``start``/``end`` are offsets in the document's extracted text (``section.offset`` plus
the offset in the section) with ``section.text[start - offset:end - offset] == text``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag.ingest.document import ChunkDraft, LoadedDocument, Section

CountTokens = Callable[[Sequence[str]], list[int]]

# Strength of a break, strongest first.
PARAGRAPH, LINE, SENTENCE, WORD, ANYWHERE = 4, 3, 2, 1, 0

# A whitespace run holding a newline, or whitespace after a sentence end (optionally after a
# closing quote or bracket), or the point after a CJK full stop.
_BREAK = re.compile(r"\s*\n\s*|(?<=[.!?])\s+|(?<=[.!?][\"'”’»)\]])\s+|(?<=[。！？])\s*")
_SPACE = re.compile(r"\s+")
# A chunk is cut back to a better break only if that keeps it at least this full.
_MIN_FILL = 0.5
# Sections up to this many characters per target token are counted whole before being
# cut into sentences (a word piece is rarely under 3 characters, so most such sections fit).
_WHOLE_CHARS = 6
# Units longer than the target are split into pieces of about this share of it, fine
# enough to pack well and to take overlap from.
_PIECE = 0.25
#: Document kinds whose text holds Markdown's fenced code blocks (only the Markdown loader
#: yields them); every other kind is chunked as prose, fence-like lines and all.
FENCED_KINDS = frozenset({"markdown"})
# A fence as CommonMark (and the Markdown loader) reads one: up to three spaces, then three
# or more backticks or tildes; a block is closed by a fence of its character at least as long.
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# A code block up to this many times the target is kept whole (within ``max_tokens``): cut in
# two, each half misses what the other says.  On the manuals (MiniLM, target 200) blocks of
# 218 and 221 tokens stay whole; with OpenAI's 8,191-token inputs a block stops at 600.
_CODE_STRETCH = 1.5


@dataclass
class _Unit:
    start: int  # in section coordinates
    end: int
    level: int  # strength of the break before this unit
    cost: int = 0  # tokens, without the per-text overhead
    block: int = -1  # the fenced code block it is part of (its fences included), if any
    whole: bool = False  # a whole block, or a piece of a long one: never cut


def chunk_document(
    doc: LoadedDocument,
    count_tokens: CountTokens,
    *,
    max_tokens: int,
    target_tokens: int,
    overlap: float,
) -> list[ChunkDraft]:
    """Chunks of ``doc``, each within ``max_tokens`` as ``count_tokens`` counts them."""
    # Short sections are counted whole first: one that fits is one chunk, and neither its
    # sentences nor (in ``_enforce_limit``) the finished chunk need counting again.  Most
    # files of a folder of notes or passages are one such section.
    bounds = [_trimmed(section.text, 0, len(section.text)) for section in doc.sections]
    short = [
        k
        for k, (section, (start, end)) in enumerate(zip(doc.sections, bounds, strict=True))
        if 0 < end - start <= _WHOLE_CHARS * target_tokens
    ]
    fenced = doc.kind in FENCED_KINDS
    code = [code_blocks(section.text) if fenced else [] for section in doc.sections]
    units = {k: _units(section.text, code[k]) for k, section in enumerate(doc.sections) if k not in short}
    # Code blocks are counted whole too: the sum of a block's lines leaves out the newlines
    # and indents between them, which a BPE counts.
    blocks = [[_Unit(a, b, PARAGRAPH, block=i) for i, (a, b) in enumerate(section_code)] for section_code in code]
    flat = [(doc.sections[k], unit) for k, section_units in units.items() for unit in section_units + blocks[k]]
    # One call for all of it: a counter may be a remote API.
    counts = count_tokens(
        ["", *(doc.sections[k].text[slice(*bounds[k])] for k in short), *(s.text[u.start : u.end] for s, u in flat)]
    )
    overhead = counts[0]  # special tokens every text gets ([CLS] and [SEP] for BERT)
    if max_tokens <= overhead:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text")
    goal = max(min(target_tokens, max_tokens) - overhead, 1)
    whole = {k: n for k, n in zip(short, counts[1 : 1 + len(short)], strict=True) if n - overhead <= goal}
    unit_counts = counts[1 + len(short) :]
    # A short section that does not fit after all (dense text): cut into sentences too.
    extra = {k: _units(doc.sections[k].text, code[k]) for k in short if k not in whole}
    if extra:
        more = [(doc.sections[k], unit) for k, section_units in extra.items() for unit in section_units + blocks[k]]
        unit_counts += count_tokens([s.text[u.start : u.end] for s, u in more])
        units.update(extra)
        flat += more
    for (_, unit), n in zip(flat, unit_counts, strict=True):
        unit.cost = max(n - overhead, 0)

    spans: list[tuple[Section, int, int]] = []
    known: dict[int, int] = {}  # token counts of spans already counted as a whole
    for k, section in enumerate(doc.sections):
        if k in whole:
            known[len(spans)] = whole[k]
            spans.append((section, *bounds[k]))
            continue
        limit = min(max_tokens - overhead, math.ceil(goal * _CODE_STRETCH))
        costs = [b.cost for b in blocks[k]]
        section_units = _whole_blocks(section.text, units[k], costs, limit)
        section_units = _split_long(section.text, section_units, goal, count_tokens, overhead)
        # A block too long to keep whole is cut into chunks of its own, the rest packed.
        for long, run in itertools.groupby(section_units, key=lambda u: u.block if not u.whole else -1):
            run_units = list(run)
            if long >= 0:
                found = _code_pieces(run_units, limit * sum(u.cost for u in run_units) // max(costs[long], 1))
            else:
                found = _pack(section.text, run_units, goal, overlap)
            spans += [(section, start, end) for start, end in found]
    return _enforce_limit(spans, count_tokens, max_tokens, known, fenced)


def code_blocks(text: str) -> list[tuple[int, int]]:
    """Markdown ``text``'s fenced code blocks as (start of the opening fence's line, end of
    the closing fence's line); a block left open runs to the end of ``text``."""
    blocks: list[tuple[int, int]] = []
    fence, opened = "", 0  # the open block's fence and where its line starts
    position = 0
    for raw in text.split("\n"):
        start, position = position, position + len(raw) + 1
        line = raw.rstrip("\r")
        if not fence:
            if opening := _FENCE.match(line):
                fence, opened = opening.group(1), start
        elif (closing := _FENCE.fullmatch(line.rstrip())) and closing.group(1).startswith(fence):
            blocks.append((opened, start + len(line)))
            fence = ""
    if fence:
        blocks.append((opened, len(text)))
    return blocks


def _units(text: str, code: Sequence[tuple[int, int]] = ()) -> list[_Unit]:
    """Sentences and lines of ``text``, without surrounding whitespace; in and around the
    fenced code blocks ``code``, code lines with the breaks ``_fenced`` gives them."""
    units: list[_Unit] = []
    position, level = 0, PARAGRAPH
    for match in _BREAK.finditer(text):
        if match.start() > position:
            units.append(_Unit(position, match.start(), level))
            level = ANYWHERE
        level = max(level, _break_level(text, match))
        position = match.end()
    if position < len(text):
        units.append(_Unit(position, len(text), level))
    units = [_strip(text, u) for u in units if text[u.start : u.end].strip()]
    return _fenced(text, units, code) if code else units


def _fenced(text: str, units: list[_Unit], code: Sequence[tuple[int, int]]) -> list[_Unit]:
    """``units`` marked with their code block, the breaks at a block's edges made paragraph
    breaks and those inside it line breaks (a blank line in code included) or, within a line,
    word breaks: a block is left at its edges, and cut inside only when it must be."""
    block, previous = 0, None
    for unit in units:
        while block < len(code) and code[block][1] <= unit.start:
            block += 1
        start = code[block][0] if block < len(code) else len(text)
        if start <= unit.start:
            unit.block = block
            if not text[start : unit.start].strip():  # the opening fence
                unit.level = max(unit.level, PARAGRAPH)
            elif previous is not None:
                unit.level = LINE if "\n" in text[previous.end : unit.start] else WORD
        elif previous is not None and previous.block >= 0:
            unit.level = max(unit.level, PARAGRAPH)
        previous = unit
    return units


def _whole_blocks(text: str, units: list[_Unit], costs: list[int], limit: int) -> list[_Unit]:
    """``units`` with the lines of each code block that fits in ``limit`` tokens (``costs``,
    counted whole) made one unit, with the sentence ending in ':' that leads to it ("Or
    disable timeouts for an individual request:"), which says what the code is for."""
    merged: list[_Unit] = []
    for block, run in itertools.groupby(units, key=lambda u: u.block):
        lines = list(run)
        cost = costs[block] if block >= 0 else 0
        if block < 0 or cost > limit:
            merged += lines
        elif merged and merged[-1].block < 0 and text[merged[-1].end - 1] == ":" and merged[-1].cost + cost <= limit:
            lead = merged.pop()
            merged.append(_Unit(lead.start, lines[-1].end, lead.level, lead.cost + cost, block, whole=True))
        else:
            merged.append(_Unit(lines[0].start, lines[-1].end, lines[0].level, cost, block, whole=True))
    return merged


def _code_pieces(lines: list[_Unit], limit: int) -> list[tuple[int, int]]:
    """Spans of a long code block's ``lines`` cut into the fewest pieces whose lines' costs
    sum to at most ``limit``, as even as that allows (not full pieces and a last line alone)."""

    def filled_to(cap: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        first, filled = lines[0], 0
        for previous, unit in itertools.pairwise(lines):
            filled += previous.cost
            if filled + unit.cost > cap:
                spans.append((first.start, previous.end))
                first, filled = unit, 0
        return [*spans, (first.start, lines[-1].end)]

    fewest = len(filled_to(limit))
    low, high = 1, limit  # the smallest cap that needs no more pieces
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if len(filled_to(middle)) <= fewest else (middle + 1, high)
    return filled_to(low)


def _break_level(text: str, match: re.Match[str]) -> int:
    newlines = match.group().count("\n")
    if newlines >= 2:
        return PARAGRAPH
    if not newlines:
        return SENTENCE
    # A line that ends mid-sentence and goes on in lower case is hard-wrapped prose (PDFs,
    # 72-column text): breaking there is no better than at any space.
    before = text[match.start() - 1] if match.start() else "."
    after = text[match.end()] if match.end() < len(text) else "A"
    return WORD if after.islower() and before not in ".!?:;" else LINE


def _strip(text: str, unit: _Unit) -> _Unit:
    piece = text[unit.start : unit.end]
    start = unit.start + len(piece) - len(piece.lstrip())
    return replace(unit, start=start, end=unit.start + len(piece.rstrip()))


def _split_long(text: str, units: list[_Unit], goal: int, count_tokens: CountTokens, overhead: int) -> list[_Unit]:
    """Replace units over ``goal`` tokens (but whole code blocks) by pieces of a fraction of
    it, counting in batches."""
    size = max(int(goal * _PIECE), 1)
    while any(u.cost > goal and not u.whole for u in units):
        result: list[_Unit] = []
        new: list[_Unit] = []
        for unit in units:
            if unit.cost <= goal or unit.whole:
                result.append(unit)
                continue
            if unit.end - unit.start <= 1:
                raise ValueError(f"a single character is {unit.cost} tokens, over the limit of {goal}")
            pieces = _cut(text, unit, math.ceil(unit.cost / size))
            result += pieces
            new += pieces
        for piece, n in zip(new, count_tokens([text[p.start : p.end] for p in new]), strict=True):
            piece.cost = max(n - overhead, 0)
        units = result
    return units


def _cut(text: str, unit: _Unit, parts: int) -> list[_Unit]:
    """Cut a unit into about ``parts`` pieces, at whitespace near each cut where there is some."""
    length = unit.end - unit.start
    parts = min(max(parts, 2), length)
    step = length / parts
    spaces = [m.span() for m in _SPACE.finditer(text, unit.start, unit.end)]
    space_starts = [s for s, _ in spaces]
    pieces: list[_Unit] = []
    start, level = unit.start, unit.level
    for k in range(1, parts):
        target = unit.start + round(k * step)
        if target <= start:
            continue
        i = bisect.bisect_left(space_starts, target)
        near = [spaces[j] for j in (i - 1, i) if 0 <= j < len(spaces) and spaces[j][0] > start]
        near = [span for span in near if abs(span[0] - target) <= step / 2]
        if near:
            end, following = min(near, key=lambda span: abs(span[0] - target))
            next_level = WORD
        else:
            end = following = target
            next_level = ANYWHERE
        pieces.append(_Unit(start, end, level))
        start, level = following, next_level
    pieces.append(_Unit(start, unit.end, level))
    return [_strip(text, replace(p, block=unit.block)) for p in pieces if text[p.start : p.end].strip()]


def _pack(text: str, units: list[_Unit], goal: int, overlap: float) -> list[tuple[int, int]]:
    """Group units into chunk spans of about ``goal`` tokens, overlapping by ``overlap``."""
    spans: list[tuple[int, int]] = []
    i = 0
    carry: tuple[int, int] | None = None  # start and tokens of the overlap from the last chunk
    while i < len(units):
        if carry and carry[1] + units[i].cost > goal:
            carry = None
        carried = carry[1] if carry else 0
        total, j = carried, i
        while j < len(units) and (j == i or total + units[j].cost <= goal):
            total += units[j].cost
            j += 1
        if j < len(units):
            j = _best_break(units, i, j, carried, goal)
        spans.append((carry[0] if carry else units[i].start, units[j - 1].end))
        carry = _overlap(text, units, i, j, overlap * (carried + sum(u.cost for u in units[i:j])))
        i = j
    return spans


def _best_break(units: list[_Unit], i: int, j: int, carried: int, goal: int) -> int:
    """The unit to start the next chunk at: the strongest break once the chunk is half full."""
    best, best_level, filled = j, -1, carried
    for k in range(i + 1, j + 1):
        filled += units[k - 1].cost
        if filled >= goal * _MIN_FILL and units[k].level >= best_level:
            best, best_level = k, units[k].level
    return best


def _overlap(text: str, units: list[_Unit], i: int, j: int, budget: float) -> tuple[int, int] | None:
    """Start and tokens of the tail of units ``i:j`` to repeat, preferring a sentence start."""
    if budget < 1:
        return None
    k, tail = j, 0
    # Never the whole chunk: the next one must hold something new besides the overlap.
    while k > i + 1 and tail + units[k - 1].cost <= budget:
        k -= 1
        tail += units[k].cost
    if k < j:
        for s in range(k, j):  # the longest tail that starts a sentence, if there is one
            if units[s].level >= SENTENCE:
                return units[s].start, sum(u.cost for u in units[s:j])
        return units[k].start, tail
    # The last unit alone is longer than the overlap: take its end from a word start (not
    # from a code block's: no chunk starts inside one).
    last = units[j - 1]
    if last.whole:
        return None
    cut = last.end - int((last.end - last.start) * budget / max(last.cost, 1))
    space = _SPACE.search(text, max(cut, last.start), last.end)
    if space is None:
        return None
    return space.end(), int(budget)


def _enforce_limit(
    spans: list[tuple[Section, int, int]],
    count_tokens: CountTokens,
    max_tokens: int,
    known: dict[int, int],
    fenced: bool,
) -> list[ChunkDraft]:
    """Count each chunk as a whole (unless ``known`` has its count, by position), and split
    those over ``max_tokens`` until none is (``fenced``: minding code blocks)."""
    unknown = [k for k in range(len(spans)) if k not in known]
    fresh_counts = iter(count_tokens([spans[k][0].text[spans[k][1] : spans[k][2]] for k in unknown]) if unknown else [])
    counts = [known[k] if k in known else next(fresh_counts) for k in range(len(spans))]
    while any(n > max_tokens for n in counts):
        redo = [k for k, n in enumerate(counts) if n > max_tokens]
        halves = {k: _halve(*spans[k], fenced) for k in redo}
        new_counts = count_tokens([s.text[a:b] for k in redo for s, a, b in halves[k]])
        merged_spans: list[tuple[Section, int, int]] = []
        merged_counts: list[int] = []
        fresh = iter(new_counts)
        for k, (span, n) in enumerate(zip(spans, counts, strict=True)):
            if k in halves:
                merged_spans += halves[k]
                merged_counts += [next(fresh) for _ in halves[k]]
            else:
                merged_spans.append(span)
                merged_counts.append(n)
        spans, counts = merged_spans, merged_counts
    return [
        ChunkDraft(
            text=section.text[start:end],
            page=section.page,
            heading=section.heading,
            start=section.offset + start,
            end=section.offset + end,
            position=position,
            tokens=n,
            ocr=section.ocr,
        )
        for position, ((section, start, end), n) in enumerate(zip(spans, counts, strict=True))
    ]


def _halve(section: Section, start: int, end: int, fenced: bool) -> list[tuple[Section, int, int]]:
    """Split a span in two at the strongest break near its middle."""
    if end - start <= 1:
        raise ValueError(f"a single character is over the token limit: {section.text[start:end]!r}")
    text = section.text
    middle, reach = (end - start) // 2, (end - start) // 4
    blocks = code_blocks(text) if fenced else []
    code = [(max(a, start) - start, min(b, end) - start) for a, b in blocks if a < end and start < b]
    breaks = [(u.level, -abs(u.start - middle), u.start) for u in _units(text[start:end], code)[1:]]
    near = [b for b in breaks if -b[1] <= reach]
    if near:
        cut = start + max(near)[2]
        left, right = (start, cut), (cut, end)
    else:
        space = min(
            _SPACE.finditer(text, start + 1, end - 1),
            key=lambda m: abs(m.start() - start - middle),
            default=None,
        )
        if space is not None:
            left, right = (start, space.start()), (space.end(), end)
        else:
            left, right = (start, start + middle), (start + middle, end)
    return [(section, *_trimmed(text, a, b)) for a, b in (left, right) if text[a:b].strip()]


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    unit = _strip(text, _Unit(start, end, ANYWHERE))
    return unit.start, unit.end
