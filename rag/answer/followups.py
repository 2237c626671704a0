"""Follow-ups without an LLM.

``expand_query`` turns a follow-up ("and when did it open?") into a search query that
carries the conversation's subject: the user's words, then the salient words of the
earlier questions, latest first, and the names the latest answer gave.  It only appends,
so the user's own words always lead the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.answer.base import Turn
from rag.text import FUNCTION_WORDS

# --- words ----------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)

#: Words that never carry a subject: function words, question words, chat filler and
#: imperative openers ("tell me about", "describe").
STOPWORDS = FUNCTION_WORDS | frozenset(
    """anything done either else get got it's like neither others please whats what's whose yes ok okay
    thanks thank really actually tell describe explain list give show summarize summarise compare define
    say says said know mean means meant happen happened another way ways thing things""".split()
)

#: Words that point back at something said before.
ANAPHORA = frozenset(
    [
        "it",
        "its",
        "it's",
        "itself",
        "they",
        "them",
        "their",
        "theirs",
        "themselves",
        "he",
        "him",
        "his",
        "himself",
        "she",
        "her",
        "hers",
        "herself",
    ]
)
#: Words that point back only in a short question ("why that?", "and those?").
DEMONSTRATIVES = frozenset(["that", "this", "these", "those", "same", "former", "latter", "previous", "ones", "else"])
#: First words that continue the previous question ("and for 2023?", "what about Paris?").
CONNECTORS = frozenset(["and", "but", "or", "so", "also", "then", "plus"])
_CONTINUATIONS = ("what about", "how about", "what of", "same for", "and what", "and how")

# Salient words carried from earlier questions, latest first: the latest turn weighs most.
_QUESTION_TERMS = (8, 4, 2)
# Names carried from the latest answer, when its question asked for one ("Which volcano ...?"
# "Mount Etna ..."): then the answer, not the question, names what "it" refers to.
_ANSWER_NAMES = 2
_ASKS_FOR_A_NAME = re.compile(
    r"^\W*(?:which|who|whom|whose|what\s+(?!is\b|are\b|was\b|were\b|does\b|do\b|did\b|about\b)\w+)\b",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def content_words(text: str) -> list[str]:
    """Words of ``text`` that can carry a subject, in order, without repeats (case-insensitive)."""
    seen: set[str] = set()
    out = []
    for word in words(text):
        key = word.lower()
        if key not in STOPWORDS and key not in seen and (len(word) > 1 or word.isdigit()):
            seen.add(key)
            out.append(word)
    return out


def _is_number(word: str) -> bool:
    return any(c.isdigit() for c in word)


def _is_name(word: str) -> bool:
    return word[:1].isupper() and word.lower() not in STOPWORDS


def salient_terms(text: str) -> list[str]:
    """``content_words`` with names and numbers first (they identify a subject best)."""
    terms = content_words(text)
    return sorted(terms, key=lambda w: 0 if _is_name(w) or _is_number(w) else 1)


def answer_names(answer: str) -> list[str]:
    """Capitalised words of an answer that are not a sentence's first word: likely names."""
    names: list[str] = []
    for sentence in re.split(r"(?<=[.!?:])\s+|\n+", answer):
        found = words(re.sub(r"\[\d+\]", " ", sentence))
        for i, word in enumerate(found):
            # A sentence's first word is capitalised anyway: a name only when one follows ("Mount Etna").
            first_of_name = i == 0 and len(found) > 1 and _is_name(found[1])
            if (i > 0 or first_of_name) and _is_name(word) and word.lower() not in {n.lower() for n in names}:
                names.append(word)
    return names


def asks_for_a_name(question: str) -> bool:
    """True for "which ...", "who ...", "what <noun> ...": questions whose answer names the subject."""
    return bool(_ASKS_FOR_A_NAME.match(question))


# --- follow-ups -----------------------------------------------------------------------------


def is_follow_up(question: str) -> bool:
    """True when ``question`` likely depends on earlier turns: pronouns, a connector, or too few words."""
    lowered = [w.lower() for w in words(question)]
    if not lowered:
        return False
    text = " ".join(lowered)
    content = content_words(question)
    return (
        any(w in ANAPHORA for w in lowered)
        or lowered[0] in CONNECTORS
        or text.startswith(_CONTINUATIONS)
        or len(content) <= 2
        or (len(content) <= 4 and any(w in DEMONSTRATIVES for w in lowered))
    )


def expand_query(question: str, history: Sequence[Turn]) -> str:
    """A search query for ``question`` that carries the subject of the conversation.

    A standalone question is returned unchanged.  A follow-up gets the salient words of the
    earlier questions appended, most from the latest (back to the last standalone one), and
    the first names in the latest answer when its question asked for one.  Terms of a kind
    the follow-up replaces are not carried: a follow-up naming its own year or place ("and
    for 2023?", "what about Paris?") drops earlier numbers, or names (unless it has a
    pronoun), rather than searching for both.
    """
    question = question.strip()
    if not history or not is_follow_up(question):
        return question
    own = content_words(question)
    has_number = any(_is_number(w) for w in own)
    # "Is it open on Mondays?" names a day, not a new subject: with a pronoun, names still carry.
    pronoun = any(w.lower() in ANAPHORA for w in words(question))
    has_name = not pronoun and any(_is_name(w) for w in own)
    seen = {w.lower() for w in words(question)}

    def keep(word: str) -> bool:
        if word.lower() in seen:
            return False
        if has_number and _is_number(word):
            return False
        return not (has_name and _is_name(word))

    carried: list[str] = []

    def carry(terms: Sequence[str], limit: int) -> None:
        for word in [w for w in terms if keep(w)][:limit]:
            seen.add(word.lower())
            carried.append(word)

    for age, turn in enumerate(reversed(history[-len(_QUESTION_TERMS) :])):
        carry(salient_terms(turn.question), _QUESTION_TERMS[age])
        if age == 0 and asks_for_a_name(turn.question):
            carry(answer_names(turn.answer), _ANSWER_NAMES)
        if not is_follow_up(turn.question):
            break  # that question stated the subject; older turns are about something else
    return f"{question} {' '.join(carried)}" if carried else question
