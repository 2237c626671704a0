"""Is the quoted text about what was asked?  The question's focus terms, and whether the evidence has them.

A near miss is the commonest wrong answer of a retrieval answerer: the documents discuss
HTTP/1.1 and HTTP/2 and the question asks about HTTP/3; the paragraph names the North
Sea and the question the South Sea.  Similarity scores cannot see it (the sentence is
about the same thing), so the extractive answerer checks the question's terms instead:

- ``terms``: the question's words less function words, each with a kind: an
  ``identifier`` (``PoolTimeout``, ``HTTP/3``, ``ARM64``, ``max_connections``), a
  ``number`` (``1973``, ``231``), a ``date`` (a day and month, compared in any common
  form: "March 30" = "30 March" = "2020.3.30." = "3월 30일"), or a ``word``;
- ``Rarity``: how many chunks of the index hold a term (the keyword index's document
  frequencies), as BM25's inverse document frequency.  Rare terms say what a question is
  about; common ones ("year", "people") are how it is asked;
- ``check``: which terms the quoted sentences and their chunks lack, and how much of the
  question's weight (sum of idf) that is.

The extractive answerer declines when an identifier or number is missing from the cited
chunks (nothing paraphrases ``HTTP/3`` or ``231``), or when the missing share of the
question's weight exceeds ``MAX_MISSING`` (see that constant for the measurement).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Literal

from rag.answer.layout import fences
from rag.results import Hit
from rag.text import FUNCTION_WORDS

Kind = Literal["identifier", "number", "date", "word"]

# Words that say how a question asks, not what it is about.
_QUESTION_WORDS = FUNCTION_WORDS | frozenset(
    """many much kind type types sort called call named also used use uses known get got make made
    take took give gave say said does did do done one ones first last well often usually
    example examples way ways thing things something someone anything""".split()
)
# A token: letters and digits, with inner dots, slashes, hyphens, underscores, plus signs
# or apostrophes kept ("HTTP/1.1", "max_connections", "C++", "1000's").
_TOKEN = re.compile(r"[^\W_](?:[\w.,+/#'’-]*[\w+#])?")
_SPLIT = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"^\d[\d,.]*(?:st|nd|rd|th|s|'s)?$")


@dataclass(frozen=True)
class Term:
    """A word of the question that says what it is about."""

    text: str
    kind: Kind

    @property
    def key(self) -> str:
        """How the term is compared: lower case, crudely stemmed for words; "2020-3-30"
        (or "-3-30" without a year) for dates."""
        if self.kind == "date":
            year, month, day = min(dates(self.text), key=lambda date: date[1:])
            return f"{year or ''}-{month}-{day}"
        return stem(self.text.lower()) if self.kind == "word" else _normal(self.text)


# --- dates in their common forms ------------------------------------------------------------

_MONTH_NAMES = "January February March April May June July August September October November December".split()
_MONTH = {name: n for n, full in enumerate(_MONTH_NAMES, 1) for name in (full, full[:3])} | {"Sept": 9}
_MONTHS = "|".join(sorted(_MONTH, key=len, reverse=True))  # capitalised only: "may" is mostly a verb
_ORDINAL = "(?:st|nd|rd|th)?"
#: The forms a date is written in: "2020.3.30.", "2020-03-30", "3월 30일", "2020年3月30日",
#: "March 30, 2020", "30 March", "the 30th of March", "30/3/2020" (day and month both ways).
_DATE_FORMS = [
    re.compile(r"\b(?P<y>\d{4})\s?[./-]\s?(?P<m>\d{1,2})\s?[./-]\s?(?P<d>\d{1,2})(?!\d)\.?"),
    re.compile(r"(?:(?P<y>\d{4})\s*[년年]\s*)?(?<!\d)(?P<m>\d{1,2})\s*[월月]\s*(?P<d>\d{1,2})\s*[일日]"),
    re.compile(rf"\b(?P<mn>{_MONTHS})\.?\s+(?P<d>\d{{1,2}}){_ORDINAL}\b(?:,?\s+(?P<y>\d{{4}})\b)?"),
    re.compile(rf"\b(?P<d>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?(?P<mn>{_MONTHS})\b\.?(?:,?\s+(?P<y>\d{{4}})\b)?"),
    re.compile(r"\b(?P<a>\d{1,2})[/.](?P<b>\d{1,2})[/.](?P<y>\d{4})\b"),
]


def _date_matches(text: str) -> list[tuple[re.Match[str], list[tuple[int | None, int, int]]]]:
    """Each date written in ``text`` with what it may mean: (year or None, month, day)."""
    found = []
    for form in _DATE_FORMS:
        for match in form.finditer(text):
            group = match.groupdict()
            year = int(group["y"]) if group.get("y") else None
            if group.get("a"):  # 3/30/2020 or 30/3/2020
                a, b = int(group["a"]), int(group["b"])
                meanings = [(year, a, b), (year, b, a)]
            else:
                month = _MONTH[group["mn"]] if group.get("mn") else int(group["m"])
                meanings = [(year, month, int(group["d"]))]
            valid = [(y, m, d) for y, m, d in meanings if 1 <= m <= 12 and 1 <= d <= 31]
            if valid:
                found.append((match, valid))
    return found


def dates(text: str) -> set[tuple[int | None, int, int]]:
    """The dates ``text`` writes, in any of the common forms, as (year or None, month, day)."""
    return {meaning for _, meanings in _date_matches(text) for meaning in meanings}


def _normal(token: str) -> str:
    """How identifiers and numbers compare: "HTTP/2" = "http2", "1,230" = "1230", "10.0" = "10"."""
    token = token.lower().replace("’", "'")
    token = token[:-2] if token.endswith("'s") else token
    if _NUMBER.match(token):
        plain = token.replace(",", "")
        try:
            return f"{float(plain):g}"
        except ValueError:
            return plain  # "10th", "1990s"
    return re.sub(r"[./_:-]|\(\)$", "", token)


def stem(word: str) -> str:
    """A crude English stem, enough to match a question's word to a sentence's."""
    for suffix in ("ies", "es", "s", "ed", "ing", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def kind_of(token: str) -> Kind:
    """``number`` for 1973 or 10th, ``identifier`` for HTTP/3, ARM64, PoolTimeout, ``word`` otherwise."""
    if _NUMBER.match(token):
        return "number"
    inner = token[1:]
    if (
        any(c.isdigit() for c in token)
        or any(c in "./_+#" for c in token.rstrip("."))
        or (any(c.isupper() for c in inner) and any(c.islower() for c in token))
    ):
        return "identifier"
    return "word"


def terms(question: str) -> list[Term]:
    """The question's focus terms without repeats: its dates, then its other terms in order."""
    found: dict[str, Term] = {}
    for match, _ in sorted(_date_matches(question), key=lambda m: m[0].start()):
        if question[match.start() : match.end()] != match.group(0):
            continue  # part of a date already taken ("March 30, 2020" holds "30")
        term = Term(match.group(0).strip().rstrip("."), "date")
        found.setdefault(term.key, term)
        question = question[: match.start()] + " " * (match.end() - match.start()) + question[match.end() :]
    previous = ""
    for token in _TOKEN.findall(question):
        token = token.rstrip(".")
        kind = kind_of(token)
        after_how, previous = previous == "how", token.lower()
        if kind == "word":
            if after_how:
                continue  # "how long", "how old": what is asked for, not what about
            for word in _SPLIT.findall(token):  # "state-of-the-art" is several words
                if word.lower() not in _QUESTION_WORDS and (len(word) > 1):
                    term = Term(word, "word")
                    found.setdefault(term.key, term)
        else:
            term = Term(token, kind)
            found.setdefault(term.key, term)
    return list(found.values())


def chunk_evidence(hit: Hit) -> str:
    """A chunk's text with what titles it (``context``)."""
    return f"{context(hit)}\n{hit.text}"


def context(hit: Hit) -> str:
    """What a chunk is about as its document says it, not its sentences: the file's name, the
    heading path (a document's title, sections, a sheet's name), a table's title lines, and
    the years those abbreviate.

    Questions name a document by its title ("What does the Zen of Python say about
    errors?"), which its pages may never repeat: the title is often only the file name.
    Titles shorten years ("Since 67", "FY '23") where a question says "since 1967".
    """
    name = _NAME_PARTS.sub(" ", PurePath(hit.source).stem)
    prose = hit.text
    for a, b in reversed(fences(hit.text)):  # a comment in a code block ("# Using a client:") titles nothing
        prose = prose[:a] + prose[b:]
    titles = "\n".join(
        [name, hit.heading, *(line.removeprefix("#").strip() for line in prose.split("\n") if line.startswith("#"))]
    )
    years = [f"{century}{yy}" for yy in _SHORT_YEAR.findall(titles) for century in ("19", "20")]
    # A closing line ("Yours sincerely,") and a name under it: the text is signed, by that name.
    signed = ["signed"] if _SIGNED.search(hit.text) else []
    return "\n".join([titles, " ".join(years), *signed])


# A letter's or mail's closing line ("Yours sincerely," "Kind regards,"): the lines after it
# name who wrote it.
SIGN_OFF = re.compile(
    r"^(?:(?:yours\s+)?(?:sincerely|faithfully|truly|respectfully)(?:\s+yours)?|(?:with\s+)?(?:kind|best|warm|warmest)?"
    r"\s*(?:regards|wishes)|many\s+thanks|cheers|best)[,.!]?(?=\s|$)",
    re.IGNORECASE,
)
_SIGNED = re.compile(
    rf"^[ \t]*(?i:{SIGN_OFF.pattern.removeprefix('^')})[ \t]*\n\s*[A-Z][\w.'’-]+(?:[ \t]+[A-Z][\w.'’-]+)+[ \t]*$", re.M
)


# A two-digit number standing alone in a title, perhaps after an apostrophe: a year.
_SHORT_YEAR = re.compile(r"(?<![\w.,/-])['’]?(\d{2})(?![\w.,/%-])")
_NAME_PARTS = re.compile(r"[_\-.]+")


class Evidence:
    """The words of some text, as terms are compared with them."""

    def __init__(self, text: str) -> None:
        tokens = [t.rstrip(".") for t in _TOKEN.findall(text)]
        # An identifier's parts count too: "HTTP/1.1" holds "1.1", "os:path" holds "path".
        parts = [p for t in tokens if "/" in t or ":" in t for p in re.split(r"[/:]", t) if p]
        self.exact = {_normal(t) for t in tokens + parts}
        words = [w.lower() for t in tokens for w in _SPLIT.findall(t)]
        self.stems = {stem(w) for w in words}
        # Prefixes let "conquest" meet "conquer", "Norman" meet "Normandy"'s ... (5 letters).
        self.prefixes = {w[:_PREFIX] for w in words if len(w) >= _PREFIX}
        self.words = set(words)
        self.dates = dates(text)

    def has(self, term: Term) -> bool:
        if term.kind == "date":  # the same day, in whatever form; a year only if both give one
            year, month, day = (int(p) if p else None for p in term.key.split("-"))
            return any((m, d) == (month, day) and (None in (y, year) or y == year) for y, m, d in self.dates)
        if term.kind != "word":
            return term.key in self.exact
        key = term.key
        return key in self.stems or (len(key) >= _PREFIX and key[:_PREFIX] in self.prefixes)

    def has_name(self, term: Term) -> bool:
        """A name is held only as itself or one word holding the other ("Norman", "Normandy"):
        five shared letters are not enough ("Austria" is not "Australia")."""
        key = term.text.lower()
        return key in self.words or any(
            w.startswith(key) or key.startswith(w) for w in self.words if min(len(w), len(key)) >= _PREFIX
        )


_PREFIX = 5


class Rarity:
    """Inverse document frequency of terms in an index (BM25's), from its keyword index.

    ``frequencies`` returns how many chunks hold each phrase; ``chunks`` is how many the
    index has.  A term no chunk holds gets the highest weight there is.
    """

    def __init__(self, frequencies: Callable[[Sequence[str]], Mapping[str, int]], chunks: int) -> None:
        self._frequencies = frequencies
        self.chunks = max(1, chunks)
        self._cache: dict[str, int] = {}

    def frequency(self, items: Iterable[Term]) -> dict[Term, int]:
        items = list(items)
        missing = [t.text for t in items if t.text not in self._cache]
        if missing:
            self._cache.update(self._frequencies(missing))
        return {t: self._cache.get(t.text, 0) for t in items}

    def idf(self, items: Iterable[Term]) -> dict[Term, float]:
        n = self.chunks
        return {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in self.frequency(items).items()}


def uniform(items: Iterable[Term]) -> dict[Term, float]:
    """Every term weighs the same (no index to ask)."""
    return {t: 1.0 for t in items}


@dataclass(frozen=True)
class Check:
    """What the evidence lacks of a question's terms."""

    terms: list[Term]
    #: Terms in neither the quoted sentences nor their chunks.
    missing: list[Term] = field(default_factory=list)
    #: Terms in the chunks but not in the quoted sentences.
    elsewhere: list[Term] = field(default_factory=list)
    #: The missing terms' share of the question's weight (0 when nothing is missing).
    missing_share: float = 0.0
    #: The share of the question's weight found only outside the quoted sentences.
    elsewhere_share: float = 0.0


def check(question: str, sentences: Sequence[str], chunks: Sequence[str], rarity: Rarity | None) -> Check:
    """Which of ``question``'s terms ``sentences`` and their ``chunks`` lack, and their weight
    (idf in the index when ``rarity`` is given, else all alike)."""
    asked = terms(question)
    if not asked:
        return Check(asked)
    in_sentences = Evidence(" ".join(sentences))
    in_chunks = Evidence(" ".join(chunks))
    weights = rarity.idf(asked) if rarity is not None else uniform(asked)
    total = sum(weights.values()) or 1.0
    missing = [t for t in asked if not in_sentences.has(t) and not in_chunks.has(t)]
    elsewhere = [t for t in asked if not in_sentences.has(t) and in_chunks.has(t)]
    return Check(
        asked,
        missing,
        elsewhere,
        sum(weights[t] for t in missing) / total,
        sum(weights[t] for t in elsewhere) / total,
    )


# --- near misses ------------------------------------------------------------------------------

#: Decline when the terms missing from the cited chunks carry more than this share of the
#: question's weight (sum of idf).  On SQuAD v2 (part A) with no other gate, 0.7 declines
#: 95% of 300 off-topic SciFact claims (their median missing share is 0.92) and 4% of
#: answerable questions (median 0.22); 0.6 declined 99.7% and 8%.  With the sentence
#: threshold re-set to keep 80% answered with gold, 0.6, 0.7 and no limit decline about
#: the same share of SQuAD's unanswerable questions (31-33%): the rule is there for
#: collections unlike SQuAD, where a cosine calibrated on SQuAD lets off-topic questions
#: through.  A share of the question, weighted by the index's own statistics, needs no
#: calibration per embedder.
MAX_MISSING = 0.7


def _family(identifier: str) -> str:
    """The letters an identifier starts with: "HTTP/3" -> "http", "ARM64" -> "arm"."""
    match = re.match(r"[A-Za-z]+", identifier)
    return match.group(0).lower() if match else ""


def relatives(term: Term, text: str) -> list[str]:
    """Identifiers in ``text`` of ``term``'s family ("HTTP/1.1" and "HTTP/2" for "HTTP/3"), in order."""
    family = _family(term.text)
    if term.kind != "identifier" or len(family) < 2:
        return []
    found: dict[str, str] = {}
    for token in _TOKEN.findall(text):
        token = token.rstrip(".")
        if kind_of(token) == "identifier" and _family(token) == family and _normal(token) != term.key:
            found.setdefault(_normal(token), token)
    return list(found.values())


# A hyphenated compound: a modifier and its head ("wing-type", "five-year", "left-hand").
_COMPOUND = re.compile(r"(?<![\w-])([^\W\d_]+)-([^\W\d_]+)(?![\w-])")


def rival_compounds(question: str, text: str) -> tuple[Term, list[str]] | None:
    """A compound of ``question`` that ``text`` lacks while it has others with the same head:
    "hex-type" asked of a text that names "wing-type" and "channel-type" nuts only.  Such a
    text is about other kinds of the thing asked about, as "HTTP/2" is to "HTTP/3"."""
    has = {m.group(0).lower() for m in _COMPOUND.finditer(text)}
    words = {w.lower() for w in _SPLIT.findall(text)}
    for asked in _COMPOUND.finditer(question):
        if asked.group(0).lower() in has or asked.group(1).lower() in words:
            continue  # the text has it, perhaps unhyphenated ("French speaking")
        head = asked.group(2).lower()
        rivals = {m.group(0).lower(): m.group(0) for m in _COMPOUND.finditer(text) if m.group(2).lower() == head}
        if rivals:
            return Term(asked.group(0), "word"), list(rivals.values())
    return None


def natural(text: str) -> list[tuple[int, str]]:
    """Sort key that puts "HTTP/1.1" before "HTTP/2" before "HTTP/10"."""
    return [(int(part), "") if part.isdigit() else (-1, part.lower()) for part in re.findall(r"\d+|\D+", text)]


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def near_miss_text(missing: Sequence[Term], mentioned: Sequence[str]) -> str:
    """ "The documents mention HTTP/1.1 and HTTP/2, not HTTP/3." """
    return (
        f"The documents mention {_listing(sorted(mentioned, key=natural))}, not {_listing([t.text for t in missing])}."
    )


#: A name in more than this share of an index's chunks is what the collection is about (HTTPX
#: in the HTTPX manual): a passage need not repeat it.
TOPIC_SHARE = 0.05


def missing_names(question: str, chunks: Sequence[str], rarity: Rarity | None) -> list[Term]:
    """The question's names (capitalised words after its first) that ``chunks`` do not hold,
    leaving out those the whole collection is about."""
    later = {token.rstrip(".") for token in _TOKEN.findall(question)[1:] if token[:1].isupper()}
    evidence = Evidence(" ".join(chunks))
    names = [t for t in terms(question) if t.kind == "word" and t.text in later and not evidence.has_name(t)]
    if rarity is None or not names:
        return names
    return [t for t, df in rarity.frequency(names).items() if df <= TOPIC_SHARE * rarity.chunks]


def unknown_names(candidates: Sequence[Term], rarity: Rarity | None) -> list[Term]:
    """The capitalised ``candidates`` (names, identifiers) that no chunk of the index holds."""
    if rarity is None or not candidates:
        return []
    return [t for t, df in rarity.frequency(candidates).items() if df == 0 and not t.text.islower()]


def unknown_text(unknown: Sequence[Term]) -> str:
    """ "The documents don't mention ARM64." (only ever said of terms no chunk holds)."""
    return f"The documents don't mention {_listing([t.text for t in unknown])}."
