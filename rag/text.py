"""Word lists shared by the parts of rag that reason about words without a model."""

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
