"""``rag serve``: parse the options, then hand over to ``rag.serve`` (parsing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag.cli.options import IndexOpt, StoreOpt
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
            "--api-key", help="Require Authorization: Bearer KEY \\[default: RAG_API_KEY].", show_default=False
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
    key = api_key or (settings.serve.api_key.get_secret_value() if settings.serve.api_key else None)
    config = ServeConfig(
        api_key=key or None,
        cors_origins=list(cors_origin or []),
        max_upload_mb=settings.serve.max_upload_mb,
        heartbeat=heartbeat,
        watch=[_folder(p) for p in watch or []],
    )
    serve(settings, config, host, port)


def _folder(path: Path) -> Path:
    if not path.expanduser().is_dir():
        raise typer.BadParameter(f"not a folder: {path}", param_hint="--watch")
    return path.expanduser().resolve()
