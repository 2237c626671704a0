"""A fake OpenAI-compatible HTTP server for tests and benchmarks.

It speaks enough of the API for the real ``openai`` SDK to talk to it over a socket
(the SDK uses ``httpx2``, which HTTP mocks for ``httpx`` do not intercept):

- ``POST /v1/embeddings``: float or base64 vectors derived from the words of each input
  (hashed bag of words, so texts sharing words are similar), ``usage`` counted with the
  model's real tokenizer, and OpenAI's limits (2048 inputs, 8192 tokens per input,
  300,000 tokens per request) enforced with OpenAI-shaped 400 errors;
- ``POST /v1/chat/completions``: scripted replies, plain or streamed as SSE in small
  deltas, with the final usage chunk when ``stream_options.include_usage`` is set;
  ``response_formats`` says which ``response_format`` types it takes (others are refused,
  with HTTP 500 as llama-cpp-python's server refuses ``json_schema``);
- ``POST /v1/moderations``: flags inputs containing a word given to ``flag(word, category)``;
- ``GET /v1/models``.

Faults are queued per request: ``rate_limit_next``, ``error_next``, ``drop_next``,
``context_length_next``; ``latency`` delays every request, ``stream_drop_after`` cuts
streams short.  Gates make a test independent of speed: ``gate_requests`` holds requests
(after the first few) and ``gate_stream`` holds a streamed reply mid-way, each until the
test opens the gate, so that a test can act while something is surely in progress.  Every request is recorded
in ``requests``; ``max_in_flight`` is the most that were being served at once.

    with openai_server() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from rag import tokens
from rag.settings import Settings

MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000

EMBEDDING_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
CHAT_MODELS = {"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4.1"}
MODERATION_MODELS = {"omni-moderation-latest", "text-moderation-latest"}
#: OpenAI's moderation categories (omni-moderation).
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip

Reply = Callable[[dict[str, Any]], str]


@dataclass
class RecordedRequest:
    method: str
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: Any
    started: float
    ended: float = 0.0
    status: int = 0
    #: For embeddings: tokens per input, as the server counted them.
    input_tokens: list[int] = field(default_factory=list)
    #: The ``usage`` object the server sent back, if any.
    usage: dict[str, int] | None = None
    #: "429", "500", "drop", ... when a queued fault answered this request.
    fault: str | None = None
    #: For streamed chat: content deltas written to the client.
    deltas_sent: int = 0


#: Longest a gate holds anything: a test that forgets to open one fails instead of hanging.
GATE_TIMEOUT = 120.0


class Gate:
    """A point where the server holds requests (or a stream) until the test opens it."""

    def __init__(self, after: int = 0) -> None:
        #: How many pass before the gate starts holding.
        self.after = after
        #: How many reached the gate so far.
        self.arrived = 0
        #: How many it holds right now.
        self.held = 0
        self._open = False
        self._cond = threading.Condition()

    @property
    def holding(self) -> bool:
        with self._cond:
            return self.held > 0

    def reach(self) -> None:
        """Server side: count one arrival and, past ``after``, wait until the gate opens."""
        with self._cond:
            self.arrived += 1
            if self.arrived <= self.after:
                return
            self.held += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open, timeout=GATE_TIMEOUT)
            self.held -= 1

    def wait_for(self, held: int = 1, timeout: float = GATE_TIMEOUT) -> bool:
        """Test side: wait until ``held`` arrivals are being held at once; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.held >= held, timeout=timeout)

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


@dataclass
class _Fault:
    kind: str  # "status" or "drop"
    status: int = 0
    code: str | None = None
    message: str = ""
    type: str = "server_error"
    headers: dict[str, str] = field(default_factory=dict)
    path: str | None = None


class FakeOpenAI:
    """The server's state and controls; build it with ``openai_server()``."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-test-key",
        dimension: int = 1536,
        latency: float = 0.0,
        delta_delay: float = 0.0,
        include_usage: bool = True,
    ) -> None:
        #: The key requests must carry (``Authorization: Bearer ...``); None accepts any.
        self.api_key = api_key
        self.embedding_models: dict[str, int] = {**EMBEDDING_MODELS, "text-embedding-3-small": dimension}
        self.chat_models: set[str] = set(CHAT_MODELS)
        #: Seconds every request waits before it is answered.
        self.latency = latency
        #: Seconds between streamed chat deltas.
        self.delta_delay = delta_delay
        #: Characters per streamed chat delta.
        self.delta_chars = 4
        #: Close the connection mid-stream after this many content deltas (None: never).
        self.stream_drop_after: int | None = None
        #: False mimics servers that send no ``usage`` at all.
        self.include_usage = include_usage
        #: False mimics servers that reject ``encoding_format="base64"``.
        self.accept_base64 = True
        #: Chat prompts longer than this (in tokens) get 400 context_length_exceeded.
        self.chat_context_window: int | None = None
        #: The ``response_format`` types chat takes (replies are sent as queued, whatever the
        #: format); a request asking for another is refused with ``format_status``.  None
        #: takes any (and ignores it, as servers that predate structured output do).
        self.response_formats: set[str] | None = None
        #: 500 as llama-cpp-python's server answers ``json_schema``; 400 as OpenAI answers
        #: a format it does not know.
        self.format_status = 500
        self.replies: deque[str | Reply] = deque()
        #: Words that get a moderation input flagged, with the category they flag.
        self.flagged_words: dict[str, str] = {}
        #: Used when ``replies`` is empty.
        self.default_reply: str | Reply = "This is a fake answer."
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._request_gates: dict[str, Gate] = {}
        self._stream_gate: tuple[int, Gate] | None = None

    # --- controls ------------------------------------------------------------------------

    def reply(self, *texts: str | Reply) -> None:
        """Queue chat replies: strings, or callables given the request JSON."""
        with self._lock:
            self.replies.extend(texts)

    def flag(self, word: str, category: str = "violence") -> None:
        """Make ``/v1/moderations`` flag any input containing ``word`` (case-insensitive) as ``category``."""
        assert category in MODERATION_CATEGORIES, category
        with self._lock:
            self.flagged_words[word.lower()] = category

    def rate_limit_next(
        self,
        n: int = 1,
        *,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` requests get 429, with ``Retry-After`` / ``retry-after-ms`` if given."""
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        message = "Rate limit reached for requests per min (RPM): Limit 3000. Please try again later."
        self._queue(n, _Fault("status", 429, "rate_limit_exceeded", message, "requests", headers, path))

    def error_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        code: str | None = None,
        message: str = "The server had an error while processing your request. Sorry about that!",
        retry_after_ms: int | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` requests get ``status`` with OpenAI's error JSON."""
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self._queue(n, _Fault("status", status, code, message, kind, headers, path))

    def context_length_next(self, n: int = 1, *, path: str | None = None) -> None:
        """The next ``n`` requests get 400 ``context_length_exceeded``."""
        self._queue(
            n,
            _Fault(
                "status",
                400,
                "context_length_exceeded",
                _context_message(200_000, 250_000),
                "invalid_request_error",
                {},
                path,
            ),
        )

    def drop_next(self, n: int = 1, *, path: str | None = None) -> None:
        """The next ``n`` requests see their connection closed without any response."""
        self._queue(n, _Fault("drop", path=path))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path ends with ``path`` (e.g. ``/embeddings``)."""
        return [r for r in list(self.requests) if r.path.endswith(path)]

    def gate_requests(self, path: str, *, after: int = 0) -> Gate:
        """Hold requests whose path ends with ``path``, after the first ``after``, until ``.open()``."""
        gate = Gate(after)
        with self._lock:
            self._request_gates[path] = gate
        return gate

    def gate_stream(self, after_deltas: int) -> Gate:
        """Hold the next streamed replies after ``after_deltas`` content deltas, until ``.open()``."""
        gate = Gate()
        with self._lock:
            self._stream_gate = (after_deltas, gate)
        return gate

    def open_gates(self) -> None:
        with self._lock:
            gates = [*self._request_gates.values(), *([self._stream_gate[1]] if self._stream_gate else [])]
            self._request_gates.clear()
            self._stream_gate = None
        for gate in gates:
            gate.open()

    def _gate_for(self, path: str) -> Gate | None:
        with self._lock:
            return next((g for p, g in self._request_gates.items() if path.endswith(p)), None)

    def usage_with(self, marker: str) -> dict[str, int]:
        """Usage the server reported for the requests whose body contains ``marker``, summed.

        Tests that run many clients at once put a marker in each client's requests (a word
        in its questions) to tell which tokens the server billed to whom.
        """
        total = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for record in list(self.requests):
            if record.usage is None or marker not in json.dumps(record.body):
                continue
            total["requests"] += 1
            total["prompt_tokens"] += record.usage.get("prompt_tokens", 0)
            total["completion_tokens"] += record.usage.get("completion_tokens", 0)
        return total

    def embedding(self, text: str, model: str = "text-embedding-3-small") -> np.ndarray:
        """The vector this server returns for ``text`` (unit length, float32)."""
        return _embed(text, self.embedding_models[model])

    # --- internals -------------------------------------------------------------------------

    def _queue(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is None or path.endswith(fault.path):
                    del self._faults[i]
                    return fault
        return None

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_reply(self, request: dict[str, Any]) -> str:
        with self._lock:
            reply = self.replies.popleft() if self.replies else self.default_reply
        return reply(request) if callable(reply) else reply


# --- deterministic embeddings -------------------------------------------------------------

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1 << 16)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _embed(text: str, dimension: int) -> np.ndarray:
    vec = np.zeros(dimension, dtype=np.float64)
    words = Counter(_WORD.findall(text.lower()) or [text])
    for word, n in words.items():
        h = _word_hash(word)
        vec[h % dimension] += n if (h >> 32) & 1 else -n
    norm = float(np.linalg.norm(vec))
    if norm == 0:  # every word cancelled out: still return a unit vector
        vec[0], norm = 1.0, 1.0
    return (vec / norm).astype(np.float32)


# --- the HTTP side -------------------------------------------------------------------------


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _context_message(limit: int, requested: int) -> str:
    return (
        f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
        f"{requested} tokens. Please reduce the length of the messages."
    )


def _masked(key: str) -> str:
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; streams use chunked encoding
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # One request from start to end: record, apply faults, route.
    def _handle(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RecordedRequest(method, self.path, headers, body, time.monotonic())
        with fake._lock:
            fake.requests.append(record)
        fake._enter()
        try:
            gate = fake._gate_for(self.path)
            if gate is not None:
                gate.reach()
            if fake.latency:
                time.sleep(fake.latency)
            fault = fake._take_fault(self.path)
            if fault is not None and fault.kind == "drop":
                record.fault = "drop"
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # the client sees EOF, no status line
                return
            if fault is not None:
                record.fault = str(fault.status)
                payload = _error_body(fault.message, fault.type, fault.code)
                self._json(record, fault.status, payload, fault.headers)
                return
            if not self._authorised(record):
                return
            self._route(method, record)
        finally:
            record.ended = time.monotonic()
            fake._leave()

    def _authorised(self, record: RecordedRequest) -> bool:
        expected = self.server.fake.api_key
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if expected is None or given == expected:
            return True
        message = (
            f"Incorrect API key provided: {_masked(given)}. "
            "You can find your API key at https://platform.openai.com/account/api-keys."
        )
        self._json(record, 401, _error_body(message, "invalid_request_error", "invalid_api_key"))
        return False

    def _route(self, method: str, record: RecordedRequest) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            models = sorted(self.server.fake.embedding_models) + sorted(self.server.fake.chat_models)
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in models]
            self._json(record, 200, {"object": "list", "data": data})
        elif method == "POST" and path == "/v1/embeddings":
            self._embeddings(record)
        elif method == "POST" and path == "/v1/chat/completions":
            self._chat(record)
        elif method == "POST" and path == "/v1/moderations":
            self._moderations(record)
        else:
            message = f"Invalid URL ({method} {self.path})"
            self._json(record, 404, _error_body(message, "invalid_request_error"))

    # --- embeddings -------------------------------------------------------------------

    def _embeddings(self, record: RecordedRequest) -> None:
        fake, body = self.server.fake, record.body
        if not isinstance(body, dict):
            self._bad(record, "We could not parse the JSON body of your request.")
            return
        model = body.get("model")
        if model not in fake.embedding_models:
            self._model_not_found(record, str(model))
            return
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            self._bad(record, "'$.input' is invalid. Please check the API reference.", param="input")
            return
        if len(inputs) > MAX_INPUTS:
            message = f"'$.input' is invalid: at most {MAX_INPUTS} inputs per request."
            self._bad(record, message, param="input")
            return
        enc = tokens.encoding_for_model(model)
        assert enc is not None, "the fake server needs the vendored tokenizer tables"
        counts = [len(enc.encode_ordinary(t)) for t in inputs]
        record.input_tokens = counts
        longest = max(counts)
        if longest > MAX_INPUT_TOKENS:
            self._bad(record, _context_message(MAX_INPUT_TOKENS, longest).replace("messages", "input"))
            return
        total = sum(counts)
        if total > MAX_REQUEST_TOKENS:
            message = f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request"
            self._json(record, 400, _error_body(message, "max_tokens_per_request", "max_tokens_per_request"))
            return
        dimension = int(body.get("dimensions") or fake.embedding_models[model])
        as_base64 = body.get("encoding_format") == "base64"
        if as_base64 and not fake.accept_base64:
            self._bad(record, "encoding_format 'base64' is not supported", param="encoding_format")
            return
        data = []
        for i, text in enumerate(inputs):
            vec = _embed(text, dimension)
            value: Any = base64.b64encode(vec.astype("<f4").tobytes()).decode() if as_base64 else vec.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        reply: dict[str, Any] = {"object": "list", "data": data, "model": model}
        if fake.include_usage:
            reply["usage"] = record.usage = {"prompt_tokens": total, "total_tokens": total}
        self._json(record, 200, reply)

    # --- moderation ---------------------------------------------------------------------

    def _moderations(self, record: RecordedRequest) -> None:
        fake, body = self.server.fake, record.body
        if not isinstance(body, dict):
            self._bad(record, "We could not parse the JSON body of your request.")
            return
        model = str(body.get("model") or "omni-moderation-latest")
        if model not in MODERATION_MODELS:
            self._model_not_found(record, model)
            return
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            self._bad(record, "'$.input' is invalid. Please check the API reference.", param="input")
            return
        results = []
        for text in inputs:
            words = set(re.findall(r"\w+", text.lower()))
            hits = {category for word, category in fake.flagged_words.items() if word in words}
            results.append(
                {
                    "flagged": bool(hits),
                    "categories": {c: c in hits for c in MODERATION_CATEGORIES},
                    "category_scores": {c: 0.99 if c in hits else 0.001 for c in MODERATION_CATEGORIES},
                    "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES},
                }
            )
        self._json(record, 200, {"id": f"modr-{len(fake.requests)}", "model": model, "results": results})

    # --- chat ---------------------------------------------------------------------------

    def _chat(self, record: RecordedRequest) -> None:
        fake, body = self.server.fake, record.body
        if not isinstance(body, dict):
            self._bad(record, "We could not parse the JSON body of your request.")
            return
        model = str(body.get("model"))
        if model not in fake.chat_models:
            self._model_not_found(record, model)
            return
        wanted = (body.get("response_format") or {}).get("type", "text")
        if fake.response_formats is not None and wanted != "text" and wanted not in fake.response_formats:
            taken = " or ".join(repr(t) for t in ["text", *sorted(fake.response_formats)])
            message = f"response_format.type: Input should be {taken}"
            self._json(
                record, fake.format_status, _error_body(message, "invalid_request_error", None, "response_format")
            )
            return
        messages = body.get("messages") or []
        prompt_tokens = _chat_prompt_tokens(messages, model)
        if fake.chat_context_window is not None and prompt_tokens > fake.chat_context_window:
            message = _context_message(fake.chat_context_window, prompt_tokens)
            payload = _error_body(message, "invalid_request_error", "context_length_exceeded", "messages")
            self._json(record, 400, payload)
            return
        text = fake._next_reply(body)
        finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit and tokens.count_tokens(text, model) > int(limit):
            text, finish = tokens.truncate(text, model, int(limit)), "length"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens.count_tokens(text, model),
            "total_tokens": prompt_tokens + tokens.count_tokens(text, model),
        }
        ident, created = f"chatcmpl-{len(fake.requests)}", int(time.time())
        if not body.get("stream"):
            reply: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
            }
            if fake.include_usage:
                reply["usage"] = record.usage = usage
            self._json(record, 200, reply)
            return
        include_usage = fake.include_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        self._stream(record, ident, created, model, text, finish, usage if include_usage else None)

    def _stream(
        self,
        record: RecordedRequest,
        ident: str,
        created: int,
        model: str,
        text: str,
        finish: str,
        usage: dict[str, int] | None,
    ) -> None:
        fake = self.server.fake
        record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            event = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            if usage is not None and "usage" not in extra:
                event["usage"] = None  # OpenAI sends usage: null until the last chunk
            return event

        def delta(d: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return chunk([{"index": 0, "delta": d, "finish_reason": finish_reason, "logprobs": None}])

        try:
            self._event(delta({"role": "assistant", "content": "", "refusal": None}))
            step = max(1, fake.delta_chars)
            stream_gate = fake._stream_gate
            for n, start in enumerate(range(0, len(text), step)):
                if stream_gate is not None and n == stream_gate[0]:
                    stream_gate[1].reach()
                if fake.stream_drop_after is not None and n >= fake.stream_drop_after:
                    record.fault = "drop"
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fake.delta_delay:
                    time.sleep(fake.delta_delay)
                self._event(delta({"content": text[start : start + step]}))
                record.deltas_sent += 1
            self._event(delta({}, finish))
            if usage is not None:
                record.usage = usage
                self._event(chunk([], usage=usage))
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            self.close_connection = True

    def _event(self, data: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(data).encode() + b"\n\n")

    def _write_chunk(self, payload: bytes) -> None:
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    # --- replies ------------------------------------------------------------------------

    def _model_not_found(self, record: RecordedRequest, model: str) -> None:
        message = f"The model `{model}` does not exist or you do not have access to it."
        self._json(record, 404, _error_body(message, "invalid_request_error", "model_not_found"))

    def _bad(self, record: RecordedRequest, message: str, param: str | None = None) -> None:
        self._json(record, 400, _error_body(message, "invalid_request_error", None, param))

    def _json(
        self,
        record: RecordedRequest,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{len(self.server.fake.requests)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _chat_prompt_tokens(messages: list[Any], model: str) -> int:
    # OpenAI's documented estimate: 3 tokens of framing per message plus 3 to prime the reply.
    total = 3
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        total += 3 + tokens.count_tokens(str(content or ""), model)
    return total


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on kept-alive connections (and on purpose in tests): not news.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def settings_for(fake: FakeOpenAI, **overrides: Any) -> Settings:
    """rag ``Settings`` pointing at ``fake``, isolated from the user's environment and files.

    ``overrides`` are dotted names with ``__`` for dots (``openai__max_retries=0``).
    """
    values: dict[str, Any] = {
        "openai.api_key": fake.api_key or "sk-any",
        "openai.base_url": fake.base_url,
        "openai.timeout": 10.0,
        "openai.max_retries": 2,
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return Settings.load(values, environ={}, config_file=Path(os.devnull), dotenv=None)


@contextmanager
def openai_server(**options: Any) -> Iterator[FakeOpenAI]:
    """Run a ``FakeOpenAI`` on 127.0.0.1 (a free port) for the duration of the block.

    Keyword arguments go to ``FakeOpenAI`` (``api_key``, ``dimension``, ``latency``,
    ``delta_delay``, ``include_usage``).
    """
    fake = FakeOpenAI(**options)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    host, port = server.server_address[:2]
    fake.base_url = f"http://{host!s}:{port}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.open_gates()  # nothing may stay held once the test is over
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
