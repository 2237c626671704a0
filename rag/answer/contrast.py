"""Does the quoted text say something other than what the question assumes?  Checks without a model.

A near miss is most often a sentence about the right thing that differs from the question
in one word: "When did Scottish nationalism *decline*?" against "a sharp *rise* in
nationalism"; "What is the *unofficial* name?" against "the official name"; "How many
layers did it have, originally built with *four*?" against "built with three layers".
Similarity cannot see it (the sentences are about the same thing), nor can the focus-term
check (``rag.answer.focus``), which looks at whole chunks.  ``conflict`` compares the
question with the quoted sentences themselves, and names the first of:

- ``opposite``: a question word absent from the sentences whose antonym is there, in
  lower case ("first"/"last", "rise"/"decline", "import"/"export");
- ``negated``: a word with a negating prefix on one side only ("unofficial" against
  "official", "non-tropical" against "tropical", "disestablish" against "establish");
- ``number``: a number word of the question missing from the sentences ("four layers"),
  unless it counts what is asked for ("What two areas ...");
- ``identifier``: a version or year of the question missing from the sentences and from
  what titles them (``HTTP/3``, ``1970``), though their chunk may have it: the sentence is
  about another year or version.  Names are not checked: the sentence may say "he" or "the mission".

``negated`` (any "not", "never", "n't") is here too: the extractive answerer lets only a
negated sentence answer a negated question.

On SQuAD v2 (benchmarks/squad_answerability.py, part A, at the same sentence threshold)
these decline 6 points more of the unanswerable questions and 1 point of the answerable
ones, on the half of the paragraphs the rules were written on and on the other half alike.
"""

from __future__ import annotations

import re
from typing import Literal

from rag.answer import focus

Reason = Literal["opposite", "negated", "number", "identifier"]

# Pairs of words that exclude each other.  Generic English, not words of any one corpus.
_ANTONYMS = [
    ("first", "last"),
    ("first", "second"),
    ("rise", "decline"),
    ("rise", "fall"),
    ("increase", "decrease"),
    ("increased", "decreased"),
    ("before", "after"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("most", "least"),
    ("more", "less"),
    ("major", "minor"),
    ("high", "low"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("early", "late"),
    ("earlier", "later"),
    ("earliest", "latest"),
    ("begin", "end"),
    ("start", "end"),
    ("win", "lose"),
    ("won", "lost"),
    ("promote", "discourage"),
    ("promoted", "discouraged"),
    ("support", "oppose"),
    ("supported", "opposed"),
    ("north", "south"),
    ("east", "west"),
    ("northern", "southern"),
    ("eastern", "western"),
    ("large", "small"),
    ("larger", "smaller"),
    ("public", "private"),
    ("upper", "lower"),
    ("accept", "reject"),
    ("accepted", "rejected"),
    ("allow", "forbid"),
    ("allowed", "forbidden"),
    ("same", "different"),
    ("internal", "external"),
    ("positive", "negative"),
    ("strong", "weak"),
    ("stronger", "weaker"),
    ("rich", "poor"),
    ("best", "worst"),
    ("above", "below"),
    ("inside", "outside"),
    ("success", "failure"),
    ("succeed", "fail"),
    ("succeeded", "failed"),
    ("successful", "unsuccessful"),
    ("legal", "illegal"),
    ("import", "export"),
    ("imports", "exports"),
    ("imported", "exported"),
    ("minimum", "maximum"),
    ("majority", "minority"),
    ("include", "exclude"),
    ("included", "excluded"),
    ("true", "false"),
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("sync", "async"),
    ("synchronous", "asynchronous"),
]
_OPPOSITES: dict[str, set[str]] = {}
for _a, _b in _ANTONYMS:
    _OPPOSITES.setdefault(_a, set()).add(_b)
    _OPPOSITES.setdefault(_b, set()).add(_a)


def opposites(word: str) -> set[str]:
    """The antonyms of ``word`` (lower case) in the table above."""
    return _OPPOSITES.get(word, set())


_NEGATING = ("non", "un", "dis", "in", "im", "ir", "il")
# Shorter stems meet too much by chance: "unless" is not "less" negated, nor "dislike" "like".
_BASE = 5
_CARDINALS = frozenset(
    "two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand "
    "million billion".split()
)
_ORDINALS = frozenset("second third fourth fifth sixth seventh eighth ninth tenth".split())
# A cardinal right after these counts the answer ("What two areas ...", "the three forms").
_COUNTS_ANSWER = frozenset("what which name the list are were".split())
_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


_NEGATION = re.compile(
    r"\b(?:not|never|no|none|nothing|nobody|neither|nor|without|cannot|unable)\b|n't\b", re.IGNORECASE
)


def negated(text: str) -> bool:
    """True when ``text`` holds a negation ("not", "never", "didn't", ...)."""
    return _NEGATION.search(text) is not None


def _words(text: str) -> list[str]:
    """The words of ``text``; a hyphenated one whole and by its parts ("second-largest" holds "second")."""
    return [p for w in _WORD.findall(text) for p in (w, *(w.split("-") if "-" in w else ()))]


def conflict(question: str, sentences: str, context: str = "") -> Reason | None:
    """Why ``sentences`` (the quoted text) cannot answer ``question``, or None when nothing says so.

    ``context`` is what the sentences' documents say they are about (``focus.context``:
    title, heading path, sheet, table titles): a year or version the question names there
    ("in January–June 2023", "since 1967" of a sheet "Since 67") is no conflict."""
    asked = _words(question.lower())
    said = set(_words(sentences.lower()))
    lower = {w for w in _words(sentences) if w.islower()}  # "North Sea" is a name, not a direction
    asked_set = set(asked)
    for word in asked:
        if word not in said and _OPPOSITES.get(word, set()) & lower:
            return "opposite"
    if not negated(question) and _negated(asked, said, asked_set):
        return "negated"  # (a question with "not" is answered only by a negated sentence anyway)
    for n, word in enumerate(asked):
        counts_answer = word in _CARDINALS and n > 0 and asked[n - 1] in _COUNTS_ANSWER
        if (word in _CARDINALS or word in _ORDINALS) and word not in said and not counts_answer:
            return "number"
    evidence = focus.Evidence(f"{sentences}\n{context}")
    if any(not evidence.has(t) for t in focus.terms(question) if _pinned(t)):
        return "identifier"
    return None


_YEAR = re.compile(r"^(?:1\d{3}|20\d{2})s?$")


def _pinned(term: focus.Term) -> bool:
    """A term that the answering sentence itself must hold: a version (``HTTP/3``, ``ARM64``)
    or a year.  Not a name ("Saint-Clair-sur-Epte", "Apollo 11"'s 11): the sentence may
    say "he" or "the mission" instead."""
    if term.kind == "identifier":
        return any(c.isdigit() for c in term.text)
    return term.kind == "number" and _YEAR.match(term.text) is not None


def _negated(asked: list[str], said: set[str], asked_set: set[str]) -> bool:
    """A negating prefix on one side only: "unofficial" asked of "official", "official" of "unofficial"."""
    for word in asked:
        if word in said:
            continue
        for prefix in _NEGATING:
            base = word[len(prefix) :].lstrip("-")
            if word.startswith(prefix) and len(base) >= _BASE and any(s.startswith(base[:6]) for s in said):
                return True
    for word in said - asked_set:
        for prefix in ("non", "un", "dis"):
            base = word[len(prefix) :].lstrip("-")
            if word.startswith(prefix) and len(base) >= _BASE and base in asked_set and base not in said:
                return True
    return False
