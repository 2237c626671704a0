"""Text helpers shared across rag: word lists for reasoning about words without a model, and
the one normalisation every loader's text goes through."""

from __future__ import annotations

#: English function words (the usual NLTK-style list, plus "name", "us" and "one(s)", which
#: questions use without meaning a subject): they never say what a question is about.
FUNCTION_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most much my myself no nor not now of off on once one ones only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up us very was we were what when where which while who whom
    why will with would you your yours yourself yourselves name named""".split()
)


# Characters that mean nothing to a reader or a tokenizer but split or glue words: line
# breaks in disguise (PowerPoint's soft return is a vertical tab) become newlines; marks
# that are invisible inside words (a byte-order mark inside e-book files, soft hyphens,
# zero-width spaces; not the joiners, which Persian and Indic scripts need) and other control
# characters are dropped.
_LINE_BREAKS = dict.fromkeys(map(ord, "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), "\n")
_DROPPED = dict.fromkeys(
    [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x1F, *range(0x7F, 0x85), *range(0x86, 0xA0),
     0xAD, 0x200B, 0x2060, 0xFEFF],
)  # fmt: skip
_CONTROLS = str.maketrans({**_DROPPED, **_LINE_BREAKS})


def normalize_controls(text: str) -> str:
    """``text`` without control characters and invisible marks (see ``_CONTROLS``)."""
    return text.translate(_CONTROLS)


def md_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: pipes escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")
