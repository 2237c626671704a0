"""How an answerer's messages reach a chat model: the ``ChatBackend`` shape, and the one
backend there is, any OpenAI-compatible server through the ``openai`` SDK (its retries and
error translation live in ``rag.openai_client``).  ``rag.answer.local_llm`` is the same
backend aimed at a llama.cpp server it starts; a backend of another kind is one module."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from rag.answer.base import DeltaCallback
from rag.errors import ProviderError
from rag.openai_client import LazyClient, base_url, to_rag_error, translate_errors
from rag.settings import Settings

if TYPE_CHECKING:
    import openai

__all__ = ["ChatBackend", "OpenAIChat", "Refused"]

# o-series and gpt-5 models accept no temperature but their default.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


class Refused(Exception):
    """The server refused the ``response_format`` it was asked for."""


class ChatBackend(Protocol):
    """What ``LLMAnswerer`` needs of a chat model."""

    def base_url(self) -> str:
        """Where requests go: keys which response format the server takes."""
        ...

    def complete(
        self,
        messages: list[dict[str, str]],
        on_delta: DeltaCallback | None,
        *,
        stream: bool,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
        probe: bool = False,
    ) -> tuple[str, Any]:
        """The reply text and the usage the server reported (None if it sent none)."""
        ...

    def close(self) -> None: ...


class OpenAIChat:
    """Chat completions from OpenAI or any compatible server; one instance serves any number of threads."""

    def __init__(self, settings: Settings, model: str) -> None:
        self.settings = settings
        self.model = model
        self._client = LazyClient(settings.openai)

    def base_url(self) -> str:
        return base_url(self.settings.openai)

    @property
    def client(self) -> openai.OpenAI:
        return self._client.get()

    def close(self) -> None:
        self._client.close()

    def complete(
        self,
        messages: list[dict[str, str]],
        on_delta: DeltaCallback | None,
        *,
        stream: bool,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
        probe: bool = False,
    ) -> tuple[str, Any]:
        """The reply text and the usage object the server reported (None if it sent none).

        ``probe``: the server may refuse ``response_format``; it is asked once, without
        retries (llama-cpp-python answers 500, which would be retried for 12-16 s), and a
        refusal raises ``Refused``.  Any other failure is asked again as usual.
        """
        # OpenAI's newer models accept only max_completion_tokens; many compatible servers
        # know only max_tokens.
        limit_name = "max_tokens" if self.settings.openai.base_url else "max_completion_tokens"
        options: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            limit_name: max_tokens or self.settings.llm.max_answer_tokens,
        }
        if not _REASONING_MODEL.match(self.model.rsplit("/", 1)[-1]):
            # o-series and gpt-5 models reject any temperature but their default.
            options["temperature"] = self.settings.llm.temperature
        if response_format is not None:
            options["response_format"] = response_format
            if probe:
                received: list[str] = []

                def tee(delta: str) -> None:
                    received.append(delta)
                    if on_delta is not None:
                        on_delta(delta)

                try:
                    return self._call(self.client.with_options(max_retries=0), options, tee, stream=stream)
                except Exception as exc:
                    if _refuses_format(exc, self.settings):
                        raise Refused from None
                    if received or to_rag_error(exc, self.settings.openai) is None:
                        with translate_errors(self.settings.openai, model=self.model):
                            raise
                    # Anything else before a word arrived: asked again, with the usual retries.
        with translate_errors(self.settings.openai, model=self.model):
            return self._call(self.client, options, on_delta, stream=stream)

    def _call(
        self, client: openai.OpenAI, options: dict[str, Any], on_delta: DeltaCallback | None, *, stream: bool
    ) -> tuple[str, Any]:
        """One request, its errors as the SDK raised them."""
        if not stream:
            response = client.chat.completions.create(**options)
            text = (response.choices[0].message.content or "") if response.choices else ""
            if on_delta is not None:
                on_delta(text)
            return text, response.usage
        parts: list[str] = []
        reported = None
        with client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True}) as events:
            for event in events:
                if event.usage is not None:
                    reported = event.usage
                delta = event.choices[0].delta.content if event.choices else None
                if delta:
                    parts.append(delta)
                    if on_delta is not None:
                        on_delta(delta)
        return "".join(parts), reported


def _refuses_format(exc: Exception, settings: Settings) -> bool:
    """True when ``exc`` is a server turning down a request format (not a key, model, size or rate problem)."""
    error = to_rag_error(exc, settings.openai)
    status = getattr(exc, "status_code", None)
    if error is None or type(error) is not ProviderError or status is None:
        return False
    # 400/422: "unknown field"; 500/501: llama-cpp-python's validation error.  429 and 503 pass.
    return int(status) in (400, 422, 500, 501)
