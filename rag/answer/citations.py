"""``[n]`` citations: find them, drop the ones that point at no source, list the cited sources.

Numbers are kept as the model saw them (``[3]`` stays ``[3]``) rather than renumbered
1..m: the Sources list then matches ``--show-context`` and the prompt, and streamed text
never has to be rewritten.  The Sources list shows only the numbers the text cites.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.results import Citation, Hit

#: A citation and the whitespace before it (dropped with it when the citation is invalid).
#: ``[1, 3]`` lists are accepted; other bracketed text is left alone.
CITATION = re.compile(r"(\s*)\[(\d+(?:\s*,\s*\d+)*)\]")

# The tail of a text that may still become a citation once more text arrives.
_OPEN_CITATION = re.compile(r"\[[\d,\s]*$")

# What a model may wrap a bare sentinel reply in.
_WRAPPING = " \t\r\n`\"'*"


def cited_numbers(text: str) -> list[int]:
    """Every number cited in ``text``, in order of first appearance."""
    seen: dict[int, None] = {}
    for match in CITATION.finditer(text):
        for part in match.group(2).split(","):
            seen.setdefault(int(part), None)
    return list(seen)


def clean(text: str, n_sources: int) -> tuple[str, int]:
    """``text`` without citations outside ``1..n_sources``, and how many were removed."""
    removed = 0

    def keep_valid(match: re.Match[str]) -> str:
        nonlocal removed
        numbers = [int(p) for p in match.group(2).split(",")]
        valid = [n for n in numbers if 1 <= n <= n_sources]
        removed += len(numbers) - len(valid)
        if not valid:
            return ""
        if len(valid) == len(numbers):
            return match.group(0)
        return f"{match.group(1)}[{', '.join(map(str, valid))}]"

    return CITATION.sub(keep_valid, text), removed


def citations_for(text: str, sources: Sequence[Hit]) -> list[Citation]:
    """The sources ``text`` cites (numbered 1.. in ``sources`` order), sorted by number."""
    numbers = sorted(n for n in cited_numbers(text) if 1 <= n <= len(sources))
    return [citation(n, sources[n - 1]) for n in numbers]


def citation(n: int, hit: Hit) -> Citation:
    """The citation of source ``n``."""
    return Citation(n, hit.source, hit.page, hit.chunk_id, hit.score, hit.text, hit.heading)


class CitationFilter:
    """Cleans answer text as it streams, so that what users see is already final.

    ``feed`` returns the part of the text that can no longer change: it holds back a
    trailing ``[12`` until the bracket closes (and drops it if it points nowhere), trailing
    whitespace (dropped with an invalid citation after it), and, when a ``sentinel`` is
    given, the start of the reply until it cannot be the sentinel (then nothing is ever
    emitted and ``refused`` is set) and any later tail that could begin the sentinel
    (removed if it completes).  Feeding a whole text at once gives the same result as
    feeding it in pieces.
    """

    def __init__(self, n_sources: int, sentinel: str | None = None) -> None:
        self.n_sources = n_sources
        self.sentinel = sentinel
        self.refused = False
        #: The sentinel came after some text ("I can't tell. NOT_IN_DOCUMENTS"): removed
        #: from what is shown, and the caller decides what it means.
        self.sentinel_inside = False
        self.removed = 0
        self._started = sentinel is None
        self._pending = ""
        self._emitted: list[str] = []

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return "".join(self._emitted)

    def feed(self, delta: str) -> str:
        """Take the next piece of model output; return the text now safe to show."""
        if self.refused:
            return ""
        self._pending += delta
        if not self._started and not self._decide_start(final=False):
            return ""
        text = self._clean(self._pending)
        end = self._safe_end(text)
        self._pending = text[end:]
        return self._emit(text[:end])

    def finish(self) -> str:
        """The end of the output: return what was still held back."""
        if self.refused or (not self._started and not self._decide_start(final=True)):
            return ""
        text, self._pending = self._clean(self._pending).rstrip(), ""
        return self._emit(text)

    def _decide_start(self, *, final: bool) -> bool:
        # True once the reply is known not to be the sentinel; sets `refused` if it is.
        assert self.sentinel is not None
        head = self._pending.lstrip(_WRAPPING)
        if head.startswith(self.sentinel) or (final and self.sentinel.startswith(head)):
            self.refused, self._pending = True, ""
            return False
        if self.sentinel.startswith(head):
            return False
        self._started = True
        self._pending = self._pending.lstrip()
        return True

    def _clean(self, text: str) -> str:
        text, removed = clean(text, self.n_sources)
        self.removed += removed
        if self.sentinel:
            text, found = re.subn(r"\s*" + re.escape(self.sentinel), "", text)
            self.sentinel_inside = self.sentinel_inside or found > 0
        # A removed citation at the very start would leave the space after it.
        return text if self._emitted else text.lstrip()

    def _safe_end(self, text: str) -> int:
        end = len(text)
        match = _OPEN_CITATION.search(text)
        if match:
            end = match.start()
        if self.sentinel:
            for k in range(min(len(self.sentinel) - 1, end), 0, -1):
                if text[end - k : end] == self.sentinel[:k]:
                    end -= k
                    break
        while end > 0 and text[end - 1].isspace():
            end -= 1
        return end

    def _emit(self, text: str) -> str:
        if text:
            self._emitted.append(text)
        return text
