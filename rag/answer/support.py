"""Is each sentence of a generated answer backed by the sources?  A local check, no model call.

For every sentence of the answer text:

- a number, identifier or name (a capitalised word past the sentence's first) that no
  retrieved chunk holds makes it **unsupported**, whatever it cites: that is what a small
  model invents (a year, a version, a person);
- a sentence citing valid sources is supported when **one sentence** of a cited chunk backs
  its claim: that sentence holds every such term, at least ``MIN_COVERAGE`` of its other
  content words (crudely stemmed, as ``rag.answer.focus`` compares words), each name of
  several words as written ("King of Scotland" is not backed by "King David I of Scotland,
  whose elder brother Alexander I ..."), and the same negations (no more "not"s than it, and
  no word asserted that it negates).  A whole chunk is not enough: it backs a name swapped
  in from the next sentence, or a number from another.  On benchmarks/support_planted.py
  (430 true sentences of data/, 533 planted false ones) this took the precision of
  ``supported`` from 45.8% to 91.3% at the same recall (98.1%);
- a sentence citing nothing valid, or citing sources that do not back it, is **attributed**
  to the retrieved chunk that backs it best (``rag.answer.attribution``) among those that
  pass the same test, else unsupported.

An answer in which no sentence is supported is a refusal, and so is one that does not answer
what was asked (``addresses``): its backing chunks lack a number, identifier or name of the
question, or its supported sentences give no time, quantity or name where the question asks
for one, say nothing the question does not, or repeat the question's words without their
source sentence holding them.  ``LLMAnswerer`` decides both.  On the replayed 0.5B Qwen
(benchmarks/answers.py --replay) this took SQuAD citation precision from 34/40 to 32/35
with no answer holding the gold answer lost, and declined 7 more unanswerable questions.
Those rules were written on SQuAD's Normans article; on two articles they never saw
(Huguenot, Scottish_Parliament; 25 + 25 questions each) the same replies scored 10/15 and
18/19.  ``fold``, ``_kind_names``, ``_passage`` and ``_reversed`` were then written on Huguenot
(10/15 -> 14/19) and left Scottish_Parliament as it was.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from rag.answer import contrast, focus, layout
from rag.answer.attribution import Scorer, scores
from rag.answer.citations import CITATION
from rag.answer.focus import Evidence, Term, chunk_evidence, context, stem, terms
from rag.results import Hit, Support
from rag.text import FUNCTION_WORDS

# Share of a sentence's content words one window of its source must hold.  Small models
# paraphrase ("was started in" for "began"), and the terms that matter (numbers, names,
# identifiers) are checked one by one anyway; measured on benchmarks/answers.py's 20
# questions about data/, 0.5 kept every hand-checked right sentence and let no invented one
# through.
MIN_COVERAGE = 0.5

# A sentence ends at . ! ? (with any closing quote and the citations after it) before
# whitespace and a word that is not lower case ("e.g. this" goes on), or at a line break;
# a list item is a sentence of its own.
_END = re.compile(r"[.!?]+[\"'”’)]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s*$|[ \t]+(?![a-z])|\n)|\n+")
_CAPITALISED = re.compile(r"[A-Z][\w'’-]*")
_WORD = re.compile(r"[\w'’]+")
# A number as an operand of a sum or product with a name or another number: "number_of_cores + 4",
# "2 * n" (a minus and a slash are left out: "pages 10-12", "COVID-19", "HTTP/2", "3/30/2020").
_OPERAND = re.compile(r"[\w.]+\s*[+*×]\s*(?P<number>\d[\d,.]*)\b|\b(?P<number2>\d[\d,.]*)\s*[+*×]\s*[\w.]+")
# Words that join a name of several words ("King of Scotland", "Edward the Confessor").
_NAME_JOINERS = frozenset({"of", "the", "de", "du", "von", "van", "la", "le", "al"})
_NEGATIONS = frozenset({"not", "never", "no", "none", "neither", "nor", "cannot", "without"})


def fold(text: str) -> str:
    """``text`` without accents, one character for one ("Maizière" -> "Maiziere"), so offsets
    into it hold for the text.  The 0.5B Qwen wrote "Thomas de Maiziere" for the source's
    "Thomas de Maizière", and the question wrote it so too: a name in no source, unsupported."""
    return "".join(_folded(c) for c in text) if not text.isascii() else text


@lru_cache(maxsize=4096)
def _folded(char: str) -> str:
    base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
    return base if len(base) == 1 else char


def _folded_hits(context: Sequence[Hit]) -> list[Hit]:
    return [replace(h, text=fold(h.text), heading=fold(h.heading), source=fold(h.source)) for h in context]


def sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, surrounding whitespace excluded."""
    spans, start = [], 0
    for match in _END.finditer(text):
        end = match.end() if match.group(0)[0] != "\n" else match.start()
        spans.append((start, end))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b and any(c.isalnum() for c in text[a:b]):
            trimmed.append((a, b))
    return trimmed


def key_terms(sentence: str, *, question: bool = False) -> tuple[list[Term], list[Term]]:
    """The sentence's numbers, identifiers and names (which must appear verbatim in a source),
    and its other content words.  A question's first word is never a name ("Tell me ...")."""
    plain = CITATION.sub("", sentence)
    found = terms(plain)
    first = re.match(r"\W*([\w'’-]+)", plain)
    names = {
        re.sub(r"['’]s?$", "", m.group(0))  # "Richard's" names Richard
        for m in _CAPITALISED.finditer(plain)
        if not (first and m.start() == first.start(1) and (question or _plain_start(m.group(0))))
    }
    keys = [t for t in found if t.kind != "word" or t.text in names]
    words = [t for t in found if t.kind == "word" and t.text not in names]
    return keys, words


# Words that start sentences without naming anything ("According to the sources, ...").
_OPENERS = FUNCTION_WORDS | frozenset(
    "according also although finally however later moreover overall shortly since then therefore thus yes".split()
)


def _plain_start(word: str) -> bool:
    """True when the first word of a sentence is not a name: a function word, or an opener.
    Any other capitalised first word counts as a name: "Richard sold the rights" (the 0.5B
    Qwen, of what Maciot de Bethencourt did) and "Margaret's brother was Harthacnut" were
    backed when the first word was let off."""
    return re.sub(r"['’]s?$", "", word).lower() in _OPENERS


def _tokens(text: str) -> list[str]:
    """Lower-case stemmed words, possessives dropped ("Scotland's" -> "scotland")."""
    return [stem(re.sub(r"['’]s?$", "", w.lower())) for w in _WORD.findall(text)]


_CLAUSE_END = re.compile(r"[.!?;:](?=\s|$)|[()]")


def _is_negation(word: str) -> bool:
    return word in _NEGATIONS or word.endswith(("n't", "n’t"))


@dataclass(frozen=True)
class Polarity:
    """How many negations a text has, and which words it negates (the two after a "not") or not."""

    negations: int
    negated: frozenset[str]
    asserted: frozenset[str]
    #: Content words negated as the question negates them ("and not the project itself" in an
    #: answer to "How do I install only the dependencies and not the project itself?").
    echoed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, text: str, question: str = "") -> Polarity:
        # A negation reaches the two words after it within its clause: "or `None` for no
        # limits. (Default 100)" does not negate "Default".
        words: list[str] = []
        under: dict[int, int] = {}  # word -> the negation over it
        for clause in _CLAUSE_END.split(text):
            said = [w.lower() for w in _WORD.findall(clause)]
            for i, w in enumerate(said):
                if _is_negation(w):
                    under.update({len(words) + j: len(words) + i for j in (i + 1, i + 2) if j < len(said)})
            words += said
        asked = _negations(question)
        echoes = {i for i, w in enumerate(words) if _is_negation(w) and tuple(words[i : i + 3]) in asked}
        marks = [i for i, w in enumerate(words) if _is_negation(w) and i not in echoes]
        negated = {stem(w) for j, w in enumerate(words) if under.get(j, -1) in marks and not _is_negation(w)}
        asserted = {stem(w) for j, w in enumerate(words) if j not in under and not _is_negation(w)}
        echoed = {stem(w) for j, w in enumerate(words) if under.get(j, -1) in echoes and w not in FUNCTION_WORDS}
        return cls(len(marks), frozenset(negated), frozenset(asserted), frozenset(echoed))

    def contradicts(self, window: Polarity) -> bool:
        """True when the claim negates more than the window, or asserts a word only the window
        negates.  A negation the question makes is the question's, not a claim (the answer may
        repeat it), unless the window asserts what it negates."""
        if self.negations > window.negations or self.negated - window.negated - window.asserted:
            return True
        if self.echoed & window.asserted:
            return True
        return bool((self.asserted & window.negated) - window.asserted)


def _negations(question: str) -> set[tuple[str, ...]]:
    """Each negation of ``question`` with the two words after it, lower case."""
    words = [w.lower() for w in _WORD.findall(question)]
    return {tuple(words[i : i + 3]) for i, w in enumerate(words) if _is_negation(w)}


@dataclass(frozen=True)
class Claim:
    """What a sentence says, as the support check compares it with a window of a source."""

    keys: list[Term]
    words: list[Term]
    #: Names of several words ("King of Scotland"), as stemmed tokens, that a window must hold in a row.
    phrases: list[tuple[str, ...]]
    polarity: Polarity
    #: Names that are also part of another name of the sentence ("Normans", "Anglo-Norman"),
    #: with that name: a window must hold them outside it.
    nested: list[tuple[Term, str]] = field(default_factory=list)
    #: What a name's possessive makes of it ("Edward's son"): the word a window must hold.
    owned: list[Term] = field(default_factory=list)
    #: The sentence's words in order, lower case (to find it copied from inside a source sentence).
    said: tuple[str, ...] = ()
    #: Of ``phrases``, those some retrieved chunk holds whole: a window may name them by their
    #: last word alone ("Paul Baran" ... "Baran developed").
    named_in_full: frozenset[tuple[str, ...]] = frozenset()
    #: Its code spans (`poetry publish`), lower case: a window must hold each as written.
    code: tuple[str, ...] = ()
    #: Each name (a run of capitalised words, lower case) with the three words after it.
    doers: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, sentence: str, question: str = "") -> Claim:
        plain = CITATION.sub("", sentence)
        keys, words = key_terms(plain)
        compounds = [(j.text, Evidence(j.text)) for j in keys if j.kind == "identifier" and "-" in j.text]
        nested = [(k, text) for k in keys if k.kind == "word" for text, parts in compounds if parts.has(k)]
        owned = [Term(w, "word") for m in _POSSESSED.finditer(plain) for w in re.findall(r"[^\W\d_]+", m.group(1))]
        said = tuple(w.lower() for w in _WORD.findall(plain))
        # "`poetry publish`" is no command of a page that names only `poetry add`.
        code = tuple(" ".join(c.lower().split()) for c in layout.CODE_SPAN.findall(plain) if c.strip())
        doers = tuple(
            (run, said[end : end + 3]) for run, end in _name_runs(_WORD.findall(plain)) if end + 3 <= len(said)
        )
        return cls(
            keys, words, _phrases(plain), Polarity.of(plain, question), nested, owned, said, code=code, doers=doers
        )


_COPULAS = frozenset("is are was were be been being".split())


def _same_name(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """One name ends the other ("Baran", "Paul Baran")."""
    shorter, longer = sorted((one, other), key=len)
    return longer[len(longer) - len(shorter) :] == shorter


def _name_runs(words: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
    """Each run of capitalised words (joined by "of", "de" ...; not a capitalised function word
    or opener), lower case, with the index of the word after it."""
    runs = []
    i = 0
    while i < len(words):
        if not words[i][0].isupper() or _plain_start(words[i]):  # "The", "An", "However" name nothing
            i += 1
            continue
        j = i + 1
        while j < len(words) and (
            words[j][0].isupper()
            or (words[j].lower() in _NAME_JOINERS and j + 1 < len(words) and words[j + 1][0].isupper())
        ):
            j += 1
        runs.append((tuple(w.lower() for w in words[i:j]), j))
        i = j
    return runs


# A name's possessive and the word after it: "Edward the Confessor's son", "Margaret's brother".
_POSSESSED = re.compile(r"\b[A-Z][\w-]*['’]s\s+([a-z][\w-]*)")


def _phrases(plain: str) -> list[tuple[str, ...]]:
    """Runs of two or more capitalised words (joined by "of", "the" ...); the sentence's first word
    counts when it is a name (``_plain_start``): "Richard de Lusignan" was backed by "his
    troops being led by Guy de Lusignan" in the sentence after one naming Richard."""
    words = list(_WORD.finditer(plain))
    runs: list[list[str]] = []
    current: list[str] = []
    for i, match in enumerate(words):
        word = match.group(0)
        if current and plain[words[i - 1].end() : match.start()].strip():
            runs.append(current)  # "Laboratory, UK" is two names
            current = []
        if (word[0].isupper() and (i > 0 or not _plain_start(word))) or (current and word.lower() in _NAME_JOINERS):
            current.append(word)
        else:
            runs.append(current)
            current = []
    runs.append(current)
    found = []
    for run in runs:
        while run and not run[-1][0].isupper():
            run.pop()  # "King of" -> "King"
        if sum(w[0].isupper() for w in run) >= 2:
            found.append(tuple(_tokens(" ".join(run))))
    return found


class Window:
    """One sentence of a chunk, with what titles the chunk."""

    def __init__(self, text: str, titles: str) -> None:
        self.text = f"{titles}\n{text}"
        self.evidence = Evidence(self.text)
        self.tokens = " " + " ".join(_tokens(f"{titles} \n {text}")) + " "
        self.polarity = Polarity.of(text)
        self.flat = " ".join(self.text.lower().split())
        #: Numbers this sentence writes only as an operand of a sum or product, with the words
        #: of each such expression, lower case ("4": "number_of_cores 4").
        self.operands: dict[str, str] = {}
        expressions = [(m.group("number") or m.group("number2"), m.group(0)) for m in _OPERAND.finditer(text)]
        if expressions:  # rare: the text without them is read only then
            alone = Evidence(_OPERAND.sub(" ", text))
            self.operands = {
                Term(n, "number").key: " ".join(_WORD.findall(e.lower()))
                for n, e in expressions
                if not alone.has(Term(n, "number"))
            }
        words = _WORD.findall(text)
        self.said = [w.lower() for w in words]
        runs = _name_runs(words)
        #: The name that ends right before each word that follows one.
        self.doer_at = {end: run for run, end in runs}
        #: Names of one word (runs of one capitalised word), stemmed: the last names a sentence
        #: may use alone.
        self.surnames = {_tokens(run[0])[0] for run, _ in runs if len(run) == 1}

    def backs(self, claim: Claim) -> bool:
        # The first names of a name given by its last word alone are let off ("Paul").
        let_off = {w for p in claim.named_in_full if self._names(p, claim.named_in_full) for w in p[:-1]}
        if not all(self.evidence.has(t) or (t.kind == "word" and _tokens(t.text)[0] in let_off) for t in claim.keys):
            return False
        if claim.polarity.contradicts(self.polarity) or not all(c in self.flat for c in claim.code):
            return False
        # "The default value of installer.max-workers is 4" is not backed by "Default:
        # `number_of_cores + 4`": a number the sentence gives only inside an expression.
        if self.operands and any(
            t.key in self.operands and self.operands[t.key] not in " ".join(claim.said) for t in claim.keys
        ):
            return False
        if not all(self._names(p, claim.named_in_full) for p in claim.phrases):
            return False
        # "The Normans defeated Anglo-Norman forces" was backed by "the Anglo-Norman forces of
        # the Third Crusade": one word of the source stood for two names of the claim.
        if not all(Evidence(re.sub(re.escape(c), " ", self.text, flags=re.I)).has(k) for k, c in claim.nested):
            return False
        # "Edward the Confessor's son returned ... in 1041" was backed by "Edward the Confessor
        # returned from his father's refuge in 1041": the person is the possessive's noun.
        if not all(self.evidence.has(t) for t in claim.owned):
            return False
        if self._copied_from_object(claim.said) or self._new_subject(claim.said):
            return False
        if self._swapped_doer(claim):
            return False
        # "The referendum succeeded in 1979" is not backed by "the referendum failed in 1979":
        # a word of the claim the sentence lacks whose opposite it says instead.
        said = set(self.said)
        if any(o in said and o not in claim.said for w in set(claim.said) - said for o in contrast.opposites(w)):
            return False
        if not claim.words:
            return bool(claim.keys)  # "Yes." backs nothing; "1973." is backed by a source holding it
        return sum(self.evidence.has(t) for t in claim.words) >= MIN_COVERAGE * len(claim.words)

    def _names(self, phrase: tuple[str, ...], named_in_full: frozenset[tuple[str, ...]]) -> bool:
        """True when this sentence holds the name ``phrase`` as written, or, where the retrieved
        chunks name it in full, by its last word standing alone: "Paul Baran developed ... at the
        RAND Corporation" is backed by "Baran developed ... at the RAND Corporation" when another
        chunk says "Paul Baran".  Not by "Guy de Lusignan" for "Richard de Lusignan": there the
        last word is part of another name; nor when the sentence holds the other words apart
        ("the Normans began to enter Italy" does not name "Norman Italy")."""
        if f" {' '.join(phrase)} " in self.tokens:
            return True
        return (
            phrase in named_in_full
            and phrase[-1] in self.surnames
            and not any(f" {w} " in self.tokens for w in phrase[:-1])
        )

    def _swapped_doer(self, claim: Claim) -> bool:
        """True when what the claim says a name does, this sentence says another name does:
        "The Scottish Parliament retains the ability to amend ..." from "the British
        Parliament retains the ability to amend ...", a name swapped in from later in the
        same sentence (a held-out hand check).  One name ending the other is the same name
        ("Baran developed", "Paul Baran developed")."""
        for run, after in claim.doers:
            # "A descendant of Huguenots is the German minister, Thomas de Maizière": what a
            # copula joins may be said of both names.
            if after[0] in _COPULAS or not any(w not in FUNCTION_WORDS for w in after):
                continue
            said_at = self._inside(after)
            # Said of several names ("The Raoulii were descended from ..., the Petraliphae were
            # descended from ..."), one must be the claim's; said of "they", it may be.
            if said_at and not any(k not in self.doer_at or _same_name(run, self.doer_at[k]) for k in said_at):
                return True
        return False

    def _copied_from_object(self, said: Sequence[str]) -> bool:
        """True when ``said`` is this sentence's words copied from the object of a verb or a
        preposition on: "Richard provided that he support Guy" from "All declared their support
        for Richard provided that he support Guy", "The Kingdom of Sicily under Roger II ...
        led to the Norman conquest" from "Norman adventurers founded the Kingdom of Sicily ...".
        In the 0.5B Qwen's replayed answers, 2 of 11 copies from inside a sentence, both wrong;
        the other 9 start after a date, a comma or an adverb ("In April 1191 Richard ...")."""
        if len(said) < 4:
            return False
        for k in self._inside(said):
            before = self.said[k - 1]
            if before in _OBJECT_OF or (before.endswith("ed") and len(before) > 3):
                return True
        return False

    def _new_subject(self, said: Sequence[str]) -> bool:
        """True when ``said`` puts its own subject before words it copies from the middle of
        this sentence, and no word of that subject is in what comes before them here: "Private
        bills are normally set up to scrutinise private bills submitted ..." from "A further type
        of committee is normally set up to scrutinise private bills submitted ..." (a hand
        check's miss: what the source says of the committee, said of the bills).  What a
        copula joins may be said of both: "Thomas de Maizière is the German Federal Minister
        ..." from "A descendant of Huguenots is the German Federal Minister ..., Thomas de
        Maizière" (the subject may be anywhere in the sentence)."""
        for i in range(1, len(said) - _COPIED_RUN + 1):
            for k in self._inside(said[i : i + _COPIED_RUN]):
                if self.said[k - 1] != said[i - 1]:
                    subject = set(_tokens(" ".join(w for w in said[:i] if w not in FUNCTION_WORDS)))
                    before = self.said[:k] if said[i] not in _COPULAS else self.said
                    return bool(subject) and not subject & set(_tokens(" ".join(before)))
        return False

    def _inside(self, words: Sequence[str]) -> list[int]:
        """Where ``words`` occur in a row in this sentence, past its first word."""
        n, wanted = len(words), list(words)
        return [k for k in range(1, len(self.said) - n + 1) if self.said[k : k + n] == wanted]


#: Words in a row that make a claim a copy of part of a source sentence (``_new_subject``).
_COPIED_RUN = 5

# Words after which a copied sentence would start with an object, not a subject.
_OBJECT_OF = frozenset("about against as at by for from into of on than to with".split())


def windows(hit: Hit) -> list[Window]:
    """Every sentence of ``hit``.  Windows of two sentences in a row were tried: they let
    a swapped name or a wrong number from the next sentence through (precision of supported on
    benchmarks/support_planted.py 72.8%, against 89.2% with single sentences, same recall)."""
    titles = context(hit)
    # A manual's sentences run over wrapped lines, keep their "(Default 100)" and lead with a
    # colon to the code or list items that finish them (``rag.answer.layout``).
    text = layout.unwrapped(hit.text)
    spans = layout.with_asides(text, sentences(text))
    extra = [Window(led, titles) for led in layout.led(text, spans)]
    return [Window(text[a:b], titles) for a, b in spans] + extra or [Window(hit.text, titles)]


def check(text: str, context: Sequence[Hit], scorer: Scorer | None = None, question: str = "") -> list[Support]:
    """The support of every sentence of ``text``, whose ``[n]`` point into ``context``, in
    answer to ``question``."""
    text, context, question = fold(text), _folded_hits(context), fold(question)
    chunks = [chunk_evidence(h) for h in context]
    joined = "\n".join(chunks)
    everything = Evidence(joined)
    everything_tokens = " " + " ".join(_tokens(joined)) + " "
    everything_flat = " ".join(joined.lower().split())
    evidence = [Evidence(c) for c in chunks]
    chunk_windows = [windows(h) for h in context]
    result = []
    for start, end in sentences(text):
        sentence = text[start:end]
        claim = Claim.of(sentence, question)
        named = frozenset(p for p in claim.phrases if f" {' '.join(p)} " in everything_tokens)
        claim = replace(claim, named_in_full=named) if named else claim
        cited = tuple(
            sorted(
                {
                    int(p)
                    for m in CITATION.finditer(sentence)
                    for p in m.group(2).split(",")
                    if 1 <= int(p) <= len(context)
                }
            )
        )
        invented = not all(everything.has(t) for t in claim.keys) or not all(c in everything_flat for c in claim.code)
        backing = [] if invented else [n for n in range(1, len(context) + 1) if _backed(claim, chunk_windows[n - 1])]
        if cited and (invented or set(cited) & set(backing)):
            result.append(Support(start, end, not invented, False, cited))
            continue
        # Uncited, or citing a source that does not back it (the 0.5B Qwen cited [2] for what
        # [1] says): the backing chunk that shares most with it, if one does.
        if backing:
            score = scores(sentence, claim.keys, claim.words, context, evidence, scorer)
            best = max(backing, key=lambda n: score[n - 1])  # max keeps the first: the higher-ranked
            result.append(Support(start, end, True, True, (best,)))
        else:
            result.append(Support(start, end, False, False, cited))
    # "This command will ... install the package" after an unsupported "use `poetry publish`":
    # a sentence that starts by pointing back stands or falls with the one before.
    for n in range(1, len(result)):
        if not result[n - 1].supported and _POINTS_BACK.match(text, result[n].start):
            result[n] = replace(result[n], supported=False, attributed=False)
    return result


# Not "it": "It took French troops years to ..." points at nothing (a held-out SQuAD answer,
# true, fell with the sentence before it).
_POINTS_BACK = re.compile(r"\W*(?:this|these|that|those|they)\b", re.IGNORECASE)


def _backed(claim: Claim, chunk: Sequence[Window]) -> bool:
    return any(w.backs(claim) for w in chunk)


def addresses(question: str, text: str, verdicts: Sequence[Support], context: Sequence[Hit]) -> bool:
    """True when the chunks backing the supported sentences hold every number, identifier, date
    and name (a capitalised word past the first) of the question, and the sentences answer
    what it asks (``_answers_kind``, ``_echo_backed``).

    The extractive answerer's near-miss rule (``rag.answer.focus``), names added: asked
    "Which network did Norway build in 1990?", the 0.5B Qwen copied a paragraph about Tymnet;
    asked who negotiated a withdrawal from the Sinai, it answered from a chunk about Cyprus.
    Other words are not required: "credited with coining" is how a question asks, and the
    chunk that names Davies may not say it.
    """
    question, text, context = fold(question), fold(text), _folded_hits(context)
    backed = [s for s in verdicts if s.supported]
    quoted = [text[s.start : s.end] for s in backed]
    chunks = [
        chunk_evidence(h) for h in _passage([context[n - 1] for n in {n for s in backed for n in s.citations}], context)
    ]
    names = set(key_terms(question, question=True)[0])
    found = focus.check(question, quoted, chunks, None)
    if any(t.kind != "word" or (t in names and t not in _kind_names(question)) for t in found.missing):
        return False
    backing = [_backing(sentence, s.citations, context) for sentence, s in zip(quoted, backed, strict=True)]
    return (
        _answers_kind(question, quoted)
        and _echo_backed(question, quoted, backing, names)
        and not any(_reversed(question, q) for q in quoted)
    )


# "What European event", "Which central European country": a name in the wh-phrase that
# qualifies the thing asked for (an adjective of place or people, then a lower-case noun).
_KIND_NAME = re.compile(
    r"\b(?:what|which)\s+(?:[a-z]+\s+)?([A-Z][a-z]+(?:an|ian|ean|ese|ish|ic|i))\s+[a-z]", re.IGNORECASE
)


def _kind_names(question: str) -> set[Term]:
    """Names that say what kind of thing the question asks for, not what it is about: the
    source that answers need not repeat them.  Asked "What European event caused the Huguenots
    to abandon Charlesfort?", the 0.5B Qwen answered "The Wars of Religion precluded a return
    voyage, and the outpost was abandoned", from a chunk that never says "European"."""
    wh = _WH.search(question)
    match = _KIND_NAME.match(question, wh.start()) if wh else None
    return {Term(match.group(1), "word")} if match and match.group(1)[0].isupper() else set()


# "Who did the Irish culture have a profound effect on?": the question's subject, the first
# word after its "did" (articles skipped), and the words it says of it after that.
_DO_QUESTION = re.compile(
    r"\W*(?:who|whom|what|which)\b[^?]*?\b(?:did|does|do)\s+(?:(?:the|a|an)\s+)?([\w'’-]+)(.*)", re.IGNORECASE
)
# Words after which a sentence's noun is the object of a preposition ("by" is left out: a
# passive keeps the subject as the agent, "Rollo was defeated by the Franks").
_PREPOSITIONS = _OBJECT_OF - {"by"}


def _reversed(question: str, sentence: str) -> bool:
    """True when ``sentence`` says the question's relation the other way round: its subject
    comes after the relation's words, as the object of a preposition.  Asked "Who did the Irish
    culture have a profound effect on?", the 0.5B Qwen answered "The Normans had a profound
    effect on Irish culture" (the answer's subject is the question's object): backed, and not
    what was asked."""
    match = _DO_QUESTION.match(question)
    if match is None:
        return False
    subject = _tokens(match.group(1))
    relation = {t for t in _tokens(match.group(2)) if t not in FUNCTION_WORDS and t != subject[0]} if subject else set()
    said = _tokens(CITATION.sub("", sentence))
    if not subject or subject[0] in FUNCTION_WORDS or subject[0] not in said:
        return False
    at = said.index(subject[0])
    before = [w for w in said[:at] if w not in {"the", "a", "an"}]
    return bool(before) and before[-1] in _PREPOSITIONS and any(w in relation for w in said[:at])


def _passage(backing: Sequence[Hit], context: Sequence[Hit]) -> list[Hit]:
    """The retrieved chunks of the passage the ``backing`` chunks belong to: those and the chunks
    of the same source and page that overlap or touch one of them.  Where a chunk ends is chance:
    asked by what document the Huguenots confessed their faith to the Portuguese in Brazil, the
    0.5B Qwen quoted the chunk naming the Guanabara Confession, and the chunk before it, also
    retrieved, named Brazil and the Portuguese."""
    near = [
        h
        for h in context
        if any(
            h.source == b.source
            and h.page == b.page
            and h.start < h.end
            and b.start < b.end
            and h.start <= b.end
            and b.start <= h.end
            for b in backing
        )
    ]
    return [h for h in context if h in backing or h in near]


def _backing(sentence: str, cited: Sequence[int], context: Sequence[Hit]) -> list[Window]:
    """The windows (source sentences) of ``cited`` chunks that back ``sentence``."""
    claim = Claim.of(sentence)
    every = [w for n in cited for w in windows(context[n - 1])]
    return [w for w in every if w.backs(claim)] or every


# What a question asks for, by its wh-phrase, and what an answer to it must hold that the
# question does not: a time or quantity (a number, a number word, a month, a century), or a
# name ("one" is left out: "one of the most ...").  "How often" is left out ("Frequently."
# answers it), and so is "where" (the north).  Only the question's first wh-word counts:
# "Where is Etna and how often does it erupt?" is answered by where it is.  The 0.5B Qwen
# answered "When did Dyrrachium fall to the Normans?" with a true sentence about Dyrrachium
# and no date, "In what country is Normandy located?" with one about music in Normandy
# that names no country, and "What is the default number of retries in HTTPX?" (no manual
# page says) with "HTTPX is careful to enforce timeouts everywhere by default".
_WH = re.compile(r"\b(?:who|whom|whose|what|which|when|where|why|how)\b", re.IGNORECASE)
_ASKS_QUANTITY = re.compile(
    r"\b(?:when|(?:what|which) (?:year|century|decade|date|month|day|time)s?|how (?:many|much|long|old)"
    r"|what (?:(?:is|was|are|were) the (?:[a-z]+ )?)?(?:number|amount|percentage|proportion)s?)\b",
    re.IGNORECASE,
)
_ASKS_NAME = re.compile(
    r"\b(?:what|which) (?:country|countries|city|cities|continent|nation|kingdom|island|river"
    r"|company|organi[sz]ation|treaty|language)\b",
    re.IGNORECASE,
)
_QUANTITY = re.compile(
    r"\d[\d,.]*\w*|\b(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundreds?"
    r"|thousands?|millions?|billions?|dozens?|century|centuries|decades?|years?|months?|weeks?|days?|hours?|minutes?"
    r"|ago|today|tomorrow|yesterday|morning|afternoon|evening|night|noon|midnight|spring|summer|autumn|winter"
    r"|daily|weekly|monthly|yearly|annually)\b",
    re.IGNORECASE,
)


def _answers_kind(question: str, quoted: Sequence[str]) -> bool:
    """True when the supported sentences hold what the question asks for (``_ASKS_QUANTITY``,
    ``_ASKS_NAME``) beyond what the question itself says; for other questions, when they say
    anything the question does not ("Who did the Normans besiege in the 11th century?" was
    answered "The Normans besieged in the 11th century"; "The queen lays eggs" answers who does)."""
    asked = Evidence(question)
    wh = _WH.search(question)
    if wh is None:
        return True
    if not any(not asked.has(t) for q in quoted for t in focus.terms(CITATION.sub("", q))):
        return False
    if _ASKS_QUANTITY.match(question, wh.start()):
        said = {m.group(0).lower() for m in _QUANTITY.finditer(question)}
        return any(m.group(0).lower() not in said for q in quoted for m in _QUANTITY.finditer(CITATION.sub("", q)))
    if _ASKS_NAME.match(question, wh.start()):
        return any(
            not all(asked.has_name(Term(part, "word")) for part in re.findall(r"[^\W\d_]+", t.text))
            for q in quoted
            for t in key_terms(q)[0]
            if t.kind != "number"
        )
    return True


def _echo_backed(question: str, quoted: Sequence[str], backing: Sequence[Sequence[Window]], names: set[Term]) -> bool:
    """False when the sentences that repeat the question's words are not backed in those words.

    A sentence that restates the question ("The most important type of Norman art preserved
    in churches is the Bayeux Tapestry") is what claims to answer it; its source sentence
    ("the most famous work of Norman art is the Bayeux Tapestry") must hold at least
    ``MIN_COVERAGE`` of the question's words it repeats, or it answers another question.
    An answer whose sentences repeat none of them ("Harthacnut.") passes.
    """
    asked = [t for t in focus.terms(question) if t.kind == "word" and t not in names]
    echoing = False
    for sentence, windows_ in zip(quoted, backing, strict=True):
        said = Evidence(CITATION.sub("", sentence)).stems
        echoed = [t.key for t in asked if t.key in said]  # as stems: "imported" does not echo "important"
        if not echoed:
            continue
        echoing = True
        if sum(any(k in w.evidence.stems for w in windows_) for k in echoed) >= MIN_COVERAGE * len(echoed):
            return True
    return not echoing


class StreamGate:
    """Holds streamed words back until what has come so far stands as an answer.

    An answer is refused when no sentence is supported or the question's names are missing
    (``addresses``).  The words are passed on from the first complete word at which the text
    so far passes both, so an answer the check refuses from its first words ("Paul Baran
    invented it in 1961", no source naming Baran) shows nothing before its one refusal: the
    terminal used to print the unbacked words with the refusal under them, and ``/v1`` sent
    both.  A backed answer waits only for its first few words.

    The text so far is checked at each of its first ``EVERY_WORD`` words, then only where a
    sentence or line ends: checking costs more as the text grows, and at every word a
    122-word answer that never stands took 0.8 s (a 700-word one, quadratically more).
    """

    EVERY_WORD = 30

    def __init__(self, question: str, context: Sequence[Hit], on_delta: Callable[[str], None] | None) -> None:
        self.question, self.context, self.on_delta = question, context, on_delta
        self.released = False
        self._held: list[str] = []
        self._words = 0

    def feed(self, delta: str, text: str) -> None:
        """Pass on ``delta`` (``text`` is the whole answer so far) or hold it."""
        if self.on_delta is None or not delta:
            return
        if self.released:
            self.on_delta(delta)
            return
        self._held.append(delta)
        if not any(c.isspace() or c in ".!?" for c in delta):
            return  # still inside a word
        self._words += 1
        if self._words > self.EVERY_WORD and not any(c in ".!?\n" for c in delta):
            return
        words = text if text[-1] in ".!?" else text[: max(text.rfind(" "), text.rfind("\n"))]
        verdicts = check(words, self.context, question=self.question) if words.strip() else []
        if any(v.supported for v in verdicts) and addresses(self.question, words, verdicts, self.context):
            self.release()

    def release(self) -> None:
        """The answer stands: pass on what was held."""
        self.released = True
        if self._held and self.on_delta is not None:
            self.on_delta("".join(self._held))
        self._held = []
