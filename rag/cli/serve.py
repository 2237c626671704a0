"""``rag serve``: parse the options, then hand over to ``rag.serve`` (parsing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag.cli.options import IndexOpt, StoreOpt
from rag.errors import UsageError
from rag.settings import Settings


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve_command)


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; off loopback a key is required.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port; 0 picks a free one.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Require Authorization: Bearer KEY, 16+ characters \\[default: RAG_API_KEY]. Other users can see "
            "it in `ps`: prefer RAG_API_KEY or --api-key-file.",
            show_default=False,
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option("--api-key-file", help="Read the key from this file (its first line).", show_default=False),
    ] = None,
    public_url: Annotated[
        list[str] | None,
        typer.Option(
            "--public-url",
            envvar="RAG_PUBLIC_URL",
            help="A URL clients reach this server at (a DNS name, a proxy); its host is answered besides "
            "loopback and --host, others get 421 (repeatable).",
            show_default=False,
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow browser calls from this origin (repeatable).")
    ] = None,
    max_upload_mb: Annotated[
        float | None, typer.Option("--max-upload-mb", min=0.001, help="Largest upload \\[default: RAG_MAX_UPLOAD_MB].")
    ] = None,
    heartbeat: Annotated[
        float, typer.Option("--heartbeat", min=0.01, hidden=True, help="Seconds between stream heartbeats.")
    ] = 15.0,
    index: IndexOpt = None,
    store: StoreOpt = None,
    watch: Annotated[
        list[Path] | None,
        typer.Option("--watch", help="Keep the index in step with this folder, as rag watch does (repeatable)."),
    ] = None,
) -> None:
    """Serve the store over HTTP: a web page, a REST API and an OpenAI-compatible /v1."""
    from rag.serve.app import ServeConfig
    from rag.serve.server import serve

    overrides = {
        "store.home": store.expanduser() if store else None,
        "store.index": index,
        "serve.max_upload_mb": max_upload_mb,
    }
    settings = Settings.load(overrides)
    if api_key is not None and api_key_file is not None:
        raise UsageError("give --api-key or --api-key-file, not both")
    if api_key_file is not None:
        api_key = read_key_file(api_key_file)
    if api_key is None and settings.serve.api_key is not None:
        api_key = settings.serve.api_key.get_secret_value() or None  # RAG_API_KEY= (empty) means none
    key = api_key.strip() if api_key is not None else None  # blank: refused by serve(), never "no key"
    config = ServeConfig(
        api_key=key,
        cors_origins=list(cors_origin or []),
        host=host,
        public_urls=[u for u in public_url or [] if u],
        max_upload_mb=settings.serve.max_upload_mb,
        heartbeat=heartbeat,
        watch=[_folder(p) for p in watch or []],
    )
    serve(settings, config, host, port)


def read_key_file(path: Path) -> str:
    """The key in ``path``: its first line, without the newline."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read the API key file {path}: {reason}") from None
    return text.splitlines()[0].strip() if text.strip() else ""


def _folder(path: Path) -> Path:
    if not path.expanduser().is_dir():
        raise typer.BadParameter(f"not a folder: {path}", param_hint="--watch")
    return path.expanduser().resolve()
