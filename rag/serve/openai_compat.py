"""An OpenAI-compatible ``/v1``: each index is a model, so any chat client can ask it.

``GET /v1/models`` lists ``rag`` (the default index) and ``rag/INDEX`` for each index.
``POST /v1/chat/completions`` answers the last user message from that index.  Earlier
messages are the history, and a follow-up is rewritten into a standalone question before
retrieval, as in ``rag chat``.  Citations appear inline as ``[n]`` with a ``Sources:``
footer (every client shows text), and again in an extra ``citations`` field for clients
that read it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rag import prompts, tokens
from rag.answer.base import DeltaCallback
from rag.results import Answer
from rag.serve import sse
from rag.serve.api import MAX_QUESTION_CHARS, error_message
from rag.serve.sources import Sources
from rag.serve.state import NotFound, ServerState, citations_json

router = APIRouter(prefix="/v1")

MODEL_PREFIX = "rag"
#: Earlier turns a follow-up may carry, in characters (a long chat, not a pasted book).
MAX_HISTORY_CHARS = 16 * MAX_QUESTION_CHARS
# The footer we append, recognised again when a client sends our answer back as history.
_FOOTER = re.compile(r"\n+Sources:\n(?:\[\d+\][^\n]*\n?)+\s*$")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    # Clients send many options (temperature, top_p, user, ...); the index decides the answer.
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.rag
    return state


def index_for(model: str, state: ServerState) -> str:
    """``rag`` is the default index; ``rag/NAME`` is index NAME."""
    if model == MODEL_PREFIX:
        return state.default_index
    prefix, _, name = model.partition("/")
    if prefix == MODEL_PREFIX and name and name in state.index_names():
        return name
    raise NotFound(f"The model `{model}` does not exist: GET /v1/models lists them")


@router.get("/models")
def models(request: Request) -> dict[str, Any]:
    state = _state(request)
    names = state.index_names()
    ids = ([MODEL_PREFIX] if state.default_index in names else []) + [f"{MODEL_PREFIX}/{n}" for n in names]
    created = int(time.time())
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": created, "owned_by": "rag"} for i in ids],
    }


def split_history(messages: list[Message]) -> tuple[str, list[tuple[str, str]]]:
    """The question (the last user message) and the earlier (question, answer) pairs."""
    question = ""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None or not messages[last_user].text.strip():
        raise EmptyQuestion
    question = messages[last_user].text.strip()
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for message in messages[:last_user]:
        if message.role == "user":
            pending = message.text
        elif message.role == "assistant" and pending is not None:
            pairs.append((pending, _FOOTER.sub("", message.text)))
            pending = None
    return question, pairs


class EmptyQuestion(Exception):
    pass


def footer(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return ""
    lines = [f"[{c['n']}] {c['location']}" for c in citations]
    return "\n\nSources:\n" + "\n".join(lines)


def usage_json(answer: Answer, question: str, model: str) -> dict[str, int]:
    """The tokens the answer spent; for an extractive answer, the question and answer text counted."""
    usage = answer.usage if isinstance(answer.usage, dict) else answer.usage.to_dict()
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    if not usage.get("requests"):
        prompt, completion = (
            tokens.count_tokens(question, "gpt-4o-mini"),
            tokens.count_tokens(answer.text, "gpt-4o-mini"),
        )
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> Response | dict[str, Any]:
    state = _state(request)
    index = index_for(body.model, state)
    try:
        question, history = split_history(body.messages)
    except EmptyQuestion:
        raise HTTPException(400, "messages: the last user message is empty") from None
    if len(question) > MAX_QUESTION_CHARS:
        raise HTTPException(422, f"messages: the last user message is over {MAX_QUESTION_CHARS} characters")
    if sum(len(q) + len(a) for q, a in history) > MAX_HISTORY_CHARS:
        raise HTTPException(422, f"messages: the conversation is over {MAX_HISTORY_CHARS} characters; start a new one")
    ident, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

    def work(on_delta: DeltaCallback | None) -> Answer:
        return state.converse(index, question, history, on_delta=on_delta)

    sources = await run_in_threadpool(state.sources, index)
    if not body.stream:
        answer = await run_in_threadpool(work, None)
        citations = citations_json(answer, sources)
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text + footer(citations), "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage_json(answer, question, body.model),
            "citations": citations,
            "refused": answer.refused,
            "refusal": answer.refusal,  # why (``Answer.refusal``); OpenAI's own is message.refusal
            "set_aside": answer.set_aside,  # why quotes stand in for the model's answer
            "support": [s.to_dict() for s in answer.support],
        }
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    worker = sse.Worker(work)
    heartbeat = request.app.state.config.heartbeat
    stream = _stream(
        worker, heartbeat, request.app.state.stopping, sources, ident, created, body.model, question, include_usage
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=sse.STREAM_HEADERS)


async def _stream(
    worker: sse.Worker,
    heartbeat: float,
    stopping: asyncio.Event,
    sources: Sources,
    ident: str,
    created: int,
    model: str,
    question: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
            **extra,
        }
        return sse.event(None, data)

    async def body() -> AsyncGenerator[bytes, None]:
        streamed = False
        async for kind, value in worker.events(heartbeat):
            if kind == "ping":
                yield sse.PING
            elif kind == "delta":
                streamed = True
                for piece in sse.pieces(value):
                    yield chunk({"content": piece})
            elif kind == "result":
                answer: Answer = value
                citations = citations_json(answer, sources)
                # A refusal (or an answer that arrived whole) was never streamed: send its text now.
                # A refusal, or quotes set in place of the model's answer (no sentence backed, or
                # a copy of other sources than the quotes'), after streamed words goes below
                # them; quotes after the SET_ASIDE line, so a reader knows which is which.
                replaced = streamed and (answer.refused or answer.set_aside is not None)
                marker = prompts.SET_ASIDE + "\n" if replaced and answer.set_aside else ""
                text = "\n\n" + marker + answer.text if replaced else "" if streamed else answer.text
                text += footer(citations)
                if text:
                    yield chunk({"content": text})
                support = [s.to_dict() for s in answer.support]
                yield chunk(
                    {},
                    "stop",
                    citations=citations,
                    refused=answer.refused,
                    refusal=answer.refusal,
                    set_aside=answer.set_aside,
                    support=support,
                )
                if include_usage:
                    data = {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage_json(answer, question, model),
                    }
                    yield sse.event(None, data)
            elif kind == "error":
                yield sse.event(None, {"error": {"message": error_message(value), "type": "server_error"}})

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for data in sse.until(stopping, body()):
            yield data
    except sse.Stopping:
        yield sse.event(None, {"error": {"message": sse.STOPPING, "type": "server_error"}})
    yield b"data: [DONE]\n\n"
