"""Is each sentence of a generated answer backed by the sources?  A local check, no model call.

For every sentence of the answer text:

- a number, identifier or name (a capitalised word past the sentence's first) that no
  retrieved chunk holds makes it **unsupported**, whatever it cites: that is what a small
  model invents (a year, a version, a person);
- a sentence citing valid sources is supported when those sources hold every such term and
  at least ``MIN_COVERAGE`` of its other content words (crudely stemmed, as
  ``rag.answer.focus`` compares words);
- a sentence citing nothing valid, or citing sources that do not back it, is **attributed**
  to the retrieved chunk that backs it best (``rag.answer.attribution``) when that chunk
  passes the same test, else unsupported.

An answer in which no sentence is supported is a refusal (``LLMAnswerer`` decides that).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.answer.attribution import Scorer, best_source
from rag.answer.citations import CITATION
from rag.answer.focus import Evidence, Term, chunk_evidence, terms
from rag.results import Hit, Support

# Share of a sentence's content words its sources must hold.  Small models paraphrase
# ("was started in" for "began"), and the terms that matter (numbers, names, identifiers)
# are checked one by one anyway; measured on benchmarks/answers.py's 20 questions about
# data/, 0.5 kept every hand-checked right sentence and let no invented one through.
MIN_COVERAGE = 0.5

# A sentence ends at . ! ? (with any closing quote and the citations after it) before
# whitespace and a word that is not lower case ("e.g. this" goes on), or at a line break;
# a list item is a sentence of its own.
_END = re.compile(r"[.!?]+[\"'”’)]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s*$|[ \t]+(?![a-z])|\n)|\n+")
_CAPITALISED = re.compile(r"[A-Z][\w'’-]*")


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


def key_terms(sentence: str) -> tuple[list[Term], list[Term]]:
    """The sentence's numbers, identifiers and names (which must appear verbatim in a source),
    and its other content words."""
    plain = CITATION.sub("", sentence)
    found = terms(plain)
    first = re.match(r"\W*([\w'’-]+)", plain)
    names = {
        m.group(0).rstrip("'’") for m in _CAPITALISED.finditer(plain) if not (first and m.start() == first.start(1))
    }
    keys = [t for t in found if t.kind != "word" or t.text in names]
    words = [t for t in found if t.kind == "word" and t.text not in names]
    return keys, words


def supports(keys: Sequence[Term], words: Sequence[Term], evidence: Evidence) -> bool:
    """True when ``evidence`` holds every key term and enough of the words."""
    if not all(evidence.has(t) for t in keys):
        return False
    if not words:
        return bool(keys)  # "Yes." backs nothing; "1973." is backed by a source holding it
    return sum(evidence.has(t) for t in words) >= MIN_COVERAGE * len(words)


def check(text: str, context: Sequence[Hit], scorer: Scorer | None = None) -> list[Support]:
    """The support of every sentence of ``text``, whose ``[n]`` point into ``context``."""
    everything = Evidence("\n".join(chunk_evidence(h) for h in context))
    evidence = [Evidence(chunk_evidence(h)) for h in context]
    result = []
    for start, end in sentences(text):
        sentence = text[start:end]
        keys, words = key_terms(sentence)
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
        invented = not all(everything.has(t) for t in keys)
        if cited:
            held = Evidence("\n".join(chunk_evidence(context[n - 1]) for n in cited))
            if invented or supports(keys, words, held):
                result.append(Support(start, end, not invented, False, cited))
                continue
        # Uncited, or citing a source that does not back it (the 0.5B Qwen cited [2] for what
        # [1] says): the chunk that backs it best, if one does.
        best = None if invented else best_source(sentence, keys, words, context, evidence, scorer)
        if best is not None and supports(keys, words, evidence[best - 1]):
            result.append(Support(start, end, True, True, (best,)))
        else:
            result.append(Support(start, end, False, False, cited))
    return result
