"""Embeddings from OpenAI or any server that speaks its ``/v1/embeddings`` API.

``embed_many`` (rag.embed.base) does the batching and concurrency; this class makes one
API call per batch, stays under the client-side rate limits, and returns each call's
``Usage`` (``embed_batch_usage``) so a run can report what it cost.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rag import tokens
from rag.embed.base import Embedder, Vectors
from rag.errors import ProviderError
from rag.openai_client import display_host, make_client, require_openai, translate_errors
from rag.ratelimit import RateLimiter
from rag.usage import Usage

if TYPE_CHECKING:
    from rag.settings import Settings

log = logging.getLogger(__name__)

KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}

_PROBE_TEXT = "dimension probe"
UNKNOWN_MODEL_MAX_TOKENS = 448  # 512 less ~12 % for the tokenizer mismatch


class OpenAIEmbedder(Embedder):
    """``Embedder`` backed by an OpenAI-compatible embeddings endpoint."""

    # OpenAI rejects inputs over 8192 tokens; keep one token of slack.
    max_input_tokens = 8191
    # Retrieval works best on passages of a few hundred tokens, whatever the model accepts.
    default_chunk_tokens = 400
    batch_size = 2048  # the API's limit on inputs per request
    # The API allows 300,000 tokens per request.  A third of that still makes per-request
    # overhead negligible, keeps `concurrency` requests busy on mid-sized corpora, and
    # means a failed request or an interrupted run loses less work.
    max_batch_tokens = 100_000
    runs_locally = False

    def __init__(
        self,
        settings: Settings,
        model: str | None = None,
        *,
        batch_size: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        require_openai()
        self.settings = settings
        self.model = model or settings.embedding.openai_model
        self.name = f"openai:{self.model}"
        self.concurrency = concurrency or settings.embedding.concurrency
        batch_size = batch_size or settings.embedding.batch_size or None
        if batch_size is not None:
            self.batch_size = max(1, min(batch_size, type(self).batch_size))
        limits = settings.embedding
        self.limiter = RateLimiter(limits.requests_per_minute, limits.tokens_per_minute)
        self._client = make_client(settings.openai)
        self._dimension: int | None = KNOWN_DIMENSIONS.get(self.model)
        if self.model not in KNOWN_DIMENSIONS:
            # A compatible server's model (nomic-embed-text, mxbai-embed-large, bge-*) has a
            # limit we cannot ask for, often 512 of its own tokens, which we only approximate
            # with cl100k; servers silently truncate longer input.  Stay under the common case.
            self.max_input_tokens = UNKNOWN_MODEL_MAX_TOKENS
        self._probe_lock = threading.Lock()
        # Ask for base64: a quarter of the bytes of JSON floats and no float parsing under
        # the GIL.  Servers that ignore it send floats, which we read too; one that rejects
        # it makes us switch to floats for good.
        self._encoding_format: Literal["base64", "float"] = "base64"

    @property
    def dimension(self) -> int:
        """Vector length; for models rag does not know, one probe request finds it."""
        if self._dimension is None:
            with self._probe_lock:
                if self._dimension is None:
                    self._dimension = int(self._request([_PROBE_TEXT])[0].shape[1])
        return self._dimension

    @dimension.setter
    def dimension(self, value: int) -> None:
        self._dimension = value

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return tokens.count_tokens_batch(texts, self.model)

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        return self.embed_batch_usage(texts)[0]

    def embed_batch_usage(self, texts: Sequence[str]) -> tuple[Vectors, Usage]:
        vectors, usage = self._request(list(texts))
        if vectors.shape[1] != self.dimension:
            raise ProviderError(
                f"{self.name} on {display_host(self.settings.openai)} returned {vectors.shape[1]}-d vectors, "
                f"expected {self.dimension}"
            )
        return vectors, usage

    def embed_query(self, text: str) -> np.ndarray:
        # A query is not chunked, so it alone may exceed the input limit: keep its start.
        if len(text.encode("utf-8")) > self.max_input_tokens:  # every token is at least one byte
            text = tokens.truncate(text, self.model, self.max_input_tokens)
        return self.embed_batch([text])[0]

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        dim = self._dimension if self._dimension is not None else "?"
        return f"<{type(self).__name__} {self.name} dim={dim}>"

    # --- one API call -------------------------------------------------------------------

    def _request(self, texts: list[str]) -> tuple[np.ndarray, Usage]:
        inputs = [t or " " for t in texts]  # the API rejects empty strings
        counts: list[int] | None = None
        if self.limiter.tokens_per_minute:
            counts = self.count_tokens(inputs)
        self.limiter.acquire(sum(counts) if counts else 0)
        response = self._create(inputs)
        vectors = _decode(response, len(inputs))
        reported = getattr(getattr(response, "usage", None), "prompt_tokens", None)
        reported_by_server = bool(reported)
        if not reported:  # some compatible servers send no usage; count it ourselves
            reported = sum(counts if counts is not None else self.count_tokens(inputs))
        usage = Usage.call(
            self.model, self.settings.prices, prompt_tokens=int(reported), estimated=not reported_by_server
        )
        return vectors, usage

    def _create(self, inputs: list[str]) -> Any:
        openai = require_openai()
        with translate_errors(self.settings.openai, model=self.model):
            try:
                return self._client.embeddings.create(
                    model=self.model, input=inputs, encoding_format=self._encoding_format
                )
            except openai.BadRequestError as exc:
                if self._encoding_format != "base64" or "encoding_format" not in str(exc):
                    raise
                host = display_host(self.settings.openai)
                log.info("%s rejects base64 embeddings; asking for floats", host)
                self._encoding_format = "float"
                return self._client.embeddings.create(model=self.model, input=inputs, encoding_format="float")


def _decode(response: Any, expected: int) -> np.ndarray:
    data = sorted(response.data or [], key=lambda d: d.index)
    if len(data) != expected:
        raise ProviderError(f"the embeddings API returned {len(data)} vectors for {expected} inputs")
    rows = []
    for item in data:
        value = item.embedding
        if isinstance(value, str):
            rows.append(np.frombuffer(base64.b64decode(value), dtype="<f4"))
        else:
            rows.append(np.asarray(value, dtype=np.float32))
    if len({row.shape for row in rows}) != 1 or rows[0].ndim != 1 or rows[0].size == 0:
        raise ProviderError("the embeddings API returned vectors of different or empty lengths")
    matrix = np.vstack(rows).astype(np.float32)
    # OpenAI's vectors are unit length already; other servers' may not be.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


#: Answers of ``embeddings_unavailable``, by server and model: each is asked once a process.
_PROBED: dict[tuple[str, str], str | None] = {}
_PROBED_LOCK = threading.Lock()
#: Statuses that say the server has no embeddings (llama.cpp's server without embeddings
#: answers 500; others 404, 405 or 501).  401, 403 and 429 are the user's key or quota, and
#: are raised like any other error: falling back on them would hide a real mistake.
_NOT_EMBEDDING = frozenset({400, 404, 405, 422, 500, 501, 502, 503})


def embeddings_unavailable(settings: Settings, model: str) -> str | None:
    """None when the configured compatible server (``OPENAI_BASE_URL``) serves ``model``'s
    embeddings; else why not, in a few words.  One request, no retries, 10 s at most.

    OpenAI's own API is not asked: it embeds.  A server that cannot be reached raises
    ``ProviderError`` (that is not a chat-only server, and the local model would pin the index).
    """
    if not settings.openai.base_url:
        return None
    key = (settings.openai.base_url, model)
    with _PROBED_LOCK:
        if key in _PROBED:
            return _PROBED[key]
        openai = require_openai()
        client = make_client(settings.openai, timeout=min(settings.openai.timeout, 10.0), max_retries=0)
        try:
            with translate_errors(settings.openai, model=model):
                try:
                    _decode(client.embeddings.create(model=model, input=[_PROBE_TEXT], encoding_format="float"), 1)
                    answer = None
                except openai.APIStatusError as exc:
                    if exc.status_code not in _NOT_EMBEDDING:
                        raise
                    answer = f"{display_host(settings.openai)} does not serve embeddings (HTTP {exc.status_code})"
                except ProviderError as exc:  # an answer that holds no vectors
                    answer = f"{display_host(settings.openai)} does not serve embeddings ({exc})"
        finally:
            client.close()
        _PROBED[key] = answer
        return answer
