"""The words that answer: a span within a quoted sentence, found without a model.

``answer_span`` looks for what the question asks for, in this order:

- a date for "when" / "what year" questions, a number for "how many" / "how much";
- an identifier (``PoolTimeout``, ``HTTP/2``, ``max_connections``, a `code` span) for a
  question that asks which class, exception, option... or names identifiers itself;
- a name (a run of capitalised words) for "who" and "which" / "what <noun>" questions.

Candidates that repeat the question's own words are skipped: the answer is what the
sentence adds.  Of the rest, the one nearest the words the sentence shares with the
question is taken: the answer sits beside what the question repeats.  (On the gold
sentences of SQuAD v2 part A that took span F1 from 0.547 to 0.633 and the share of
wholly wrong marks from 36% to 27%, alike on both halves of its paragraphs: for "How many
men were in Robert's army?" the first number was the year 1081, the nearest is 30,000.)

A table row ("Number: 13 | Square: 169") is marked in the cell under the column the
question names (``record_span``), never in another row.

When nothing fits, there is no span (the whole sentence stands); a wrong bold is worse
than none.  benchmarks/squad_answerability.py reports how often the span matches SQuAD's
gold answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rag.answer.focus import stem
from rag.results import CELL_SEPARATOR, Span
from rag.text import FUNCTION_WORDS

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    "hundred|hundreds|thousand|thousands|million|millions|billion|billions|dozen|dozens|half"
)
# A date: "4 July 1776", "July 4, 1776", "1776", "the 1970s", "10th century", "1000 BC".
_DATE = re.compile(
    rf"\b(?:\d{{1,2}}\s+(?:{_MONTHS})(?:\s+\d{{3,4}})?|(?:{_MONTHS})(?:\s+\d{{1,2}}(?:st|nd|rd|th)?,?)?(?:\s+\d{{3,4}})?"
    rf"|\d{{1,4}}(?:st|nd|rd|th)\s+(?i:century|centuries|millennium)|\d{{3,4}}s?(?:\s*(?:BC|BCE|AD|CE))?)\b"
)
# A quantity: digits with separators and an optional scale word, or number words in a row.
_QUANTITY = re.compile(
    rf"(?:[$£€]\s?)?\b\d[\d,.]*(?:\s*(?:%|percent|per cent))?(?:\s+(?i:{_NUMBER_WORDS}))?\b%?"
    rf"|\b(?i:(?:{_NUMBER_WORDS})(?:[\s-]+(?:{_NUMBER_WORDS}))*)\b"
)
# An identifier: `code`, or a word with inner capitals, digits, dots, slashes or underscores.
_CODE = re.compile(r"`([^`\n]+)`")
_IDENTIFIER = re.compile(
    r"\b(?:[A-Za-z]+(?:[./_:-][A-Za-z0-9]+)+|[A-Za-z]*[a-z][A-Z][A-Za-z0-9]*|[A-Za-z]+\d[A-Za-z0-9]*|[A-Z]{2,}\d*)\b"
    r"(?:\(\))?"
)
# A name: capitalised words in a row, allowing "of", "the", "de"... inside.
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:(?:of|the|de|da|von|van|and|la|le|du)\s+)*[A-Z][\w'’-]*)*")

# "When" asks for a date only as the question's word, not as a conjunction ("raised when ...").
_WHEN = re.compile(
    r"^\W*(?:(?:and|but|so|since|until|by|from)\s+)?when\b"
    r"|\b(?:what|which) (?:year|century|decade|date|month|day|era|period)\b",
    re.I,
)
_HOW_MANY = re.compile(
    r"\bhow (?:many|much|long|far|old|large|big|tall|high|deep|wide|often)\b"
    r"|\bwhat (?:percentage|percent|number|amount|proportion|share|fraction)\b",
    re.I,
)
_ASKS_IDENTIFIER = re.compile(
    r"\b(?:which|what)\s+(?:\w+\s+){0,4}?(?:exception|error|class|function|method|option|flag|setting|parameter|argument|"
    r"command|module|package|attribute|variable|field|keyword|type|header|status|version|property|api|endpoint)s?\b",
    re.I,
)
_WHO = re.compile(
    r"^\W*(?:who|whom|whose)\b|\b(?:which|what)\s+(?:\w+\s+)?(?:person|man|woman|people|group|company|"
    r"team|city|country|state|river|mountain|place|organi[sz]ation|king|queen|ruler|leader|author|name)\b",
    re.I,
)
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _new(candidate: str, asked: set[str]) -> bool:
    """True when ``candidate`` says something the question did not (not only its own words)."""
    words = _words(candidate) - FUNCTION_WORDS
    return bool(words) and not words <= asked


def _nearest_new(
    matches: Iterable[re.Match[str]], asked: set[str], anchors: Sequence[tuple[int, int]], group: int = 0
) -> Span | None:
    """The candidate that says something new and lies nearest an ``anchor`` (the first on a tie)."""
    best: tuple[int, Span] | None = None
    for match in matches:
        text = match.group(group)
        if not _new(text, asked):
            continue
        start, end = match.start(group), match.end(group)
        distance = min((_gap((start, end), anchor) for anchor in anchors), default=0)
        if best is None or distance < best[0]:
            best = (distance, Span(start, end, text))
    return None if best is None else best[1]


def _gap(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Characters between two spans (0 when they touch or overlap)."""
    return max(0, b[0] - a[1], a[0] - b[1])


def _anchors(asked: set[str], sentence: str) -> list[tuple[int, int]]:
    """Where the sentence has the question's content words (``asked``, crudely stemmed)."""
    stems = {stem(w) for w in asked - FUNCTION_WORDS}
    return [m.span() for m in _WORD.finditer(sentence) if stem(m.group(0).lower()) in stems]


def _names(sentence: str) -> Iterable[re.Match[str]]:
    """Capitalised runs, less a leading function word ("The Normans"); a sentence's first
    word alone is no name (it is capitalised anyway)."""
    for match in _NAME.finditer(sentence):
        first = match.group(0).split()[0]
        if match.start() == 0 and first.lower() in FUNCTION_WORDS:
            rest = _NAME.match(sentence, match.start() + len(first) + 1)
            if rest is not None and rest.end() == match.end():
                yield rest
        elif match.start() > 0 or " " in match.group(0):
            yield match


# The columns a question asks for without naming them ("How old is ..." asks the "Age").
_COLUMNS_ASKED = [
    (re.compile(r"\bhow old\b", re.I), ("age",)),
    (re.compile(r"^\W*when\b", re.I), ("date", "year", "time", "day", "when")),
    (re.compile(r"^\W*where\b", re.I), ("city", "place", "location", "address", "country", "where")),
    (re.compile(r"^\W*(?:who|whom|whose)\b", re.I), ("name", "person", "who")),
    (re.compile(r"\bhow much\b", re.I), ("price", "cost", "amount", "total", "value")),
]


def record_span(question: str, row: str) -> Span | None:
    """The cell of a table row ("Number: 13 | Square: 169") under the column the question
    names most ("What is the square of 13?" marks 169), skipping cells that only repeat the
    question (the row's label); None when it names no column.
    """
    asked = {stem(w) for w in _words(question) - FUNCTION_WORDS}
    asked |= {name for asks, names in _COLUMNS_ASKED if asks.search(question) for name in names}
    best: tuple[int, Span] | None = None
    position = 0
    for cell in row.split(CELL_SEPARATOR):
        name, colon, value = cell.partition(": ")
        if colon and value.strip():
            named = len({stem(w) for w in _words(name)} & asked)
            start = position + len(name) + len(colon)
            if named and _new(value, _words(question)) and (best is None or named > best[0]):
                best = (named, Span(start, start + len(value), value))
        position += len(cell) + len(CELL_SEPARATOR)
    return None if best is None else best[1]


def answer_span(question: str, sentence: str) -> Span | None:
    """The part of ``sentence`` that answers ``question``, if one can be told apart."""
    if CELL_SEPARATOR in sentence and ": " in sentence:
        return record_span(question, sentence)
    asked = _words(question)
    anchors = _anchors(asked, sentence)
    span: Span | None = None
    if _WHEN.search(question):
        span = _nearest_new(_DATE.finditer(sentence), asked, anchors)
    elif _HOW_MANY.search(question):
        span = _nearest_new(_QUANTITY.finditer(sentence), asked, anchors)
    who = _WHO.search(question)
    # An identifier in a "who" question ("Who did Internet2 partner with?") is its subject,
    # not a hint that the answer is one.
    if span is None and (_ASKS_IDENTIFIER.search(question) or (_IDENTIFIER.search(question) and not who)):
        span = _nearest_new(_CODE.finditer(sentence), asked, anchors, 1) or _nearest_new(
            _IDENTIFIER.finditer(sentence), asked, anchors
        )
    if span is None and who:
        span = _nearest_new(_names(sentence), asked, anchors)
    if span is None or span.end - span.start >= len(sentence.rstrip(".!? ")):
        return None
    return span
