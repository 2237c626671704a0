"""Answers as structured sentences, each with its sources: the citation contract that small
models keep when they never write ``[n]`` in prose.

The model is asked for ``{"sentences": [{"text": ..., "sources": [n]}], "not_found": bool}``.
Servers spell the request differently (``MODES``): OpenAI, vLLM, Ollama and llama.cpp's own
server take ``json_schema``; llama-cpp-python's server refuses it (HTTP 500, "Input should
be 'text' or 'json_object'") and takes ``json_object`` with a ``schema``.  A server that
refuses both is asked for ``[n]`` markers in prose.  ``ModeMemory`` remembers what worked
per (base URL, model), in memory and in ``RAG_HOME/llm-modes.json``, for ``MODE_TTL``
seconds: a server upgraded (or restarted with other options) is asked again.  A new model
(or another ``--llm local`` model file) is a new key, asked at once.

``StructuredReply`` reads the JSON as it streams and turns it into prose with ``[n]``
markers ("HTTPX does not follow redirects [1]."), so everything after it (the citation
filter, the terminal, the page, the support check) sees one kind of text.  A reply that is
not JSON (a server that ignored ``response_format``) passes through unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

Mode = Literal["json_schema", "json_object", "markers"]
#: Seconds a remembered mode is trusted before the server is asked for the first one again.
MODE_TTL = 24 * 3600.0
#: What is tried, in order, until a server accepts one.
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "markers")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "sources": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["text", "sources"],
                "additionalProperties": False,
            },
        },
        "not_found": {"type": "boolean"},
    },
    "required": ["sentences", "not_found"],
    "additionalProperties": False,
}


def response_format(mode: Mode) -> dict[str, Any] | None:
    """The ``response_format`` request field for ``mode`` (None: prose with markers)."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}}
    if mode == "json_object":
        return {"type": "json_object", "schema": SCHEMA}
    return None


class ModeMemory:
    """The mode that works per (base URL, model), with when it was found: in memory, and in a small JSON file."""

    def __init__(self, path: Path | None, ttl: float = MODE_TTL) -> None:
        self.path = path
        self.ttl = ttl
        self._lock = threading.Lock()
        self._modes: dict[str, tuple[Mode, float]] | None = None

    @staticmethod
    def _key(url: str, model: str) -> str:
        return f"{url.rstrip('/')} {model}"

    def get(self, url: str, model: str) -> Mode | None:
        """The remembered mode, or None when there is none or it is older than ``ttl``."""
        with self._lock:
            mode, found = self._load().get(self._key(url, model), (None, 0.0))
            return mode if time.time() - found < self.ttl else None

    def set(self, url: str, model: str, mode: Mode) -> None:
        with self._lock:
            key = self._key(url, model)
            remembered = self._load().get(key)
            if remembered is not None and remembered[0] == mode and time.time() - remembered[1] < self.ttl / 2:
                return
            self._modes = None  # what other processes wrote since is kept
            modes = self._load()
            modes[key] = (mode, time.time())
            if self.path is None:
                return
            try:  # written whole and renamed: another rag process never reads half a file
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
                data = {k: {"mode": m, "found": at} for k, (m, at) in modes.items()}
                temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
                temporary.replace(self.path)
            except OSError:
                pass  # a read-only home: remembered for this process only

    def _load(self) -> dict[str, tuple[Mode, float]]:
        if self._modes is None:
            self._modes = {}
            if self.path is not None:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = {}
                if isinstance(data, dict):
                    for key, value in data.items():
                        # A bare mode (a file from before modes expired) counts as old: asked again.
                        mode, found = (value.get("mode"), value.get("found")) if isinstance(value, dict) else (value, 0)
                        if mode in MODES and isinstance(found, int | float):
                            self._modes[str(key)] = (mode, float(found))
        return self._modes


class StructuredReply:
    """Streams a JSON answer as prose with ``[n]`` markers.

    ``feed`` takes raw reply text and returns the prose that is now certain: each
    sentence's words as they arrive, its trailing punctuation held back until its sources
    are known, then `` [1, 2].``.  A sentence is separated from the one before by a space.
    After the reply, ``sentences`` and ``not_found`` hold what was parsed (a truncated
    reply keeps what was complete enough to read).
    """

    def __init__(self) -> None:
        #: None until the first non-space character: True for JSON, False for prose.
        self.is_json: bool | None = None
        self.not_found: bool | None = None
        #: (text, sources) of every sentence begun so far.
        self.sentences: list[tuple[str, list[int]]] = []
        self._head = ""
        self._stack: list[list[Any]] = []  # [container, key it hangs from, current key, expecting key]
        self._string: list[str] | None = None
        self._is_key = False
        self._escape: str | None = None
        self._scalar = ""
        self._done = False
        self._held = ""  # trailing punctuation of the current sentence
        self._separator = ""  # before the next sentence's first word
        self._shown = False

    def feed(self, delta: str) -> str:
        if self.is_json is False:
            return delta
        if self.is_json is None:
            self._head += delta
            stripped = self._head.lstrip()
            if stripped.startswith("```"):  # a fenced block: skip the fence line
                if "\n" not in stripped:
                    return ""
                stripped = stripped.split("\n", 1)[1].lstrip()
            if not stripped:
                return ""
            self.is_json = stripped.startswith("{")
            delta, self._head = (stripped if self.is_json else self._head), ""
            if not self.is_json:
                return delta
        return "".join(self._char(c) for c in delta)

    def finish(self) -> str:
        if self.is_json is None and self._head:
            self.is_json = False
            return self._head
        tail = self._held if self.is_json else ""
        self._held = ""
        return tail

    # --- the parser ----------------------------------------------------------------------

    def _where(self) -> tuple[int, str | None]:
        """Depth of the innermost container and the key the next value belongs to."""
        if not self._stack:
            return 0, None
        top = self._stack[-1]
        return len(self._stack), (top[2] if top[0] == "{" else top[1])

    def _char(self, c: str) -> str:
        if self._done:
            return ""
        if self._string is not None:
            return self._string_char(c)
        if c == '"':
            self._string, self._is_key = [], bool(self._stack and self._stack[-1][0] == "{" and self._stack[-1][3])
            return ""
        if c in "{[":
            depth, key = self._where()
            self._stack.append([c, key, None, c == "{"])
            if c == "{" and depth == 2 and key == "sentences":
                self.sentences.append(("", []))
                self._separator = " " if self._shown else ""
            return ""
        if c in ",}] \t\r\n:":
            self._end_scalar()
        if c == ":" and self._stack:
            self._stack[-1][3] = False
        elif c == "," and self._stack and self._stack[-1][0] == "{":
            self._stack[-1][3] = True
        elif c in "}]" and self._stack:
            closing, hung_from = self._stack.pop()[:2]
            if not self._stack:
                self._done = True
            if closing == "{" and len(self._stack) == 2 and hung_from == "sentences":
                return self._end_sentence()
        elif c not in " \t\r\n,:":
            self._scalar += c
        return ""

    def _string_char(self, c: str) -> str:
        assert self._string is not None
        if self._escape is not None:
            self._escape += c
            if self._escape.startswith("u") and len(self._escape) < 5:
                return ""
            decoded = self._decode(self._escape)
            self._escape = None
            return self._text(decoded)
        if c == "\\":
            self._escape = ""
            return ""
        if c == '"':
            if self._is_key and self._stack:
                self._stack[-1][2] = "".join(self._string)
            self._string = None
            return ""
        return self._text(c)

    @staticmethod
    def _decode(escape: str) -> str:
        if escape.startswith("u"):
            try:
                return chr(int(escape[1:5], 16))
            except ValueError:
                return ""
        return {"n": " ", "t": " ", "r": "", "b": "", "f": ""}.get(escape, escape)

    def _text(self, c: str) -> str:
        assert self._string is not None
        self._string.append(c)
        if self._is_key or self._where() != (3, "text") or not self.sentences:
            return ""
        text, sources = self.sentences[-1]
        self.sentences[-1] = (text + c, sources)
        if c.isspace() and not text.strip():
            return ""
        if c in ".!?;:":
            self._held += c  # released when more words come, or after the citation
            return ""
        out, self._held, self._separator = self._separator + self._held + c, "", ""
        self._shown = True
        return out

    def _end_scalar(self) -> None:
        value, self._scalar = self._scalar, ""
        if not value:
            return
        depth, key = self._where()
        if depth == 4 and key == "sources" and self.sentences:
            with contextlib.suppress(ValueError):
                self.sentences[-1][1].append(int(float(value)))
        elif depth == 1 and key == "not_found":
            self.not_found = value == "true"

    def _end_sentence(self) -> str:
        text, sources = self.sentences[-1]
        held, self._held = self._held.strip(), ""
        if not text.strip():
            return ""
        numbers = list(dict.fromkeys(n for n in sources))
        marker = f" [{', '.join(map(str, numbers))}]" if numbers else ""
        return marker + held
