"""``rag watch``: parse the options, print what ``rag.watch.Watcher`` does (parsing and printing only)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from rag.cli.options import EmbedderOpt, ExcludeOpt, IncludeOpt, IndexOpt, JsonOpt, OcrOpt, StoreOpt, ocr_overrides
from rag.cli.output import CacheProgress, IngestProgress, err, error, out, plural
from rag.engine import Engine
from rag.ingest.pipeline import Progress
from rag.results import display_path
from rag.watch import Event, Watcher


def register(app: typer.Typer) -> None:
    app.command(name="watch")(watch_command)


def watch_command(
    paths: Annotated[list[Path], typer.Argument(help="Folders to keep indexed (recursively).")],
    index: IndexOpt = None,
    store: StoreOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    embedder: EmbedderOpt = None,
    ocr: OcrOpt = None,
    poll: Annotated[
        bool | None,
        typer.Option(
            "--poll/--no-poll",
            help="Look at every file each second instead of being told of changes \\[default: on network drives].",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Keep the index in step with folders: catch up, then follow saves, deletes and renames until Ctrl-C."""
    engine = Engine(index=index, store=store, **ocr_overrides(ocr))
    engine.store.sync_progress = CacheProgress()
    display = _Display(as_json)
    # systemd and `kill` stop a watcher with SIGTERM: the same clean stop as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        watcher = Watcher(
            engine,
            paths,
            include=include or (),
            exclude=exclude or (),
            embedder=embedder,
            poll=poll,
            on_event=display.event,
            progress=display.progress,
        )
        display.watcher = watcher
        watcher.watch()
    except KeyboardInterrupt:
        busy = display.busy
        display.close()
        if busy:
            error("interrupted: what was stored is kept; run rag watch again to finish")
            raise typer.Exit(130) from None
        if not as_json:
            err.print("stopped")
    finally:
        display.close()
        engine.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Counter:
    """A batch's progress, for the status line: files done of files planned."""

    def __init__(self, display: _Display) -> None:
        self.display = display
        self.done = 0
        self.total = 0

    def planned(self, files: int) -> None:
        self.total = files

    def file_done(self, path: str) -> None:
        self.done += 1
        self.display.refresh()

    def chunks_queued(self, n: int) -> None:
        pass

    def chunks_stored(self, n: int) -> None:
        pass


class _Display:
    """JSON lines with ``--json``; else a line per batch, and on a terminal one status line
    (files watched, last change, queued) below them, on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.terminal = err.is_terminal and not as_json
        self.watcher: Watcher | None = None
        self.busy = False
        self._bar: IngestProgress | None = None
        self._counter: _Counter | None = None
        self._live: Live | None = None
        self._last_change: str = "none yet"

    def progress(self) -> Progress | None:
        return self._bar if self._bar is not None else self._counter

    def event(self, event: Event) -> None:
        kind = event["event"]
        # Busy from the start of a write to its end: a Ctrl-C then cuts it short (exit 130).
        if kind in ("catching up", "ingesting"):
            self.busy = True
        elif kind in ("catchup", "batch", "error"):
            self.busy = False
        if kind == "catching up" and self.terminal:
            self._bar = IngestProgress(enabled=True).__enter__()
        elif kind == "catchup" and self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif kind == "ingesting":
            self._counter = _Counter(self)
        if self.as_json:
            sys.stdout.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
            return
        self._print(kind, event)
        if kind == "watching" and self.terminal:
            self._live = Live(self._line(), console=err, transient=True, auto_refresh=False)
            self._live.start()
        self.refresh()

    def _print(self, kind: str, event: Event) -> None:
        if kind == "catchup":
            f = event["files"]
            out.print(
                f"[bold]{escape(event['index'])}[/]: caught up: {f['added']} added, {f['updated']} updated, "
                f"{f['unchanged']} unchanged, {f['removed']} removed, {f['failed']} failed · {event['seconds']:.1f} s"
            )
        elif kind == "watching":
            where = ", ".join(display_path(p) for p in event["paths"])
            how = " (polling)" if event["polling"] else ""
            out.print(f"watching {plural(event['files'], 'file')} in {escape(where)}{how}; Ctrl-C stops")
        elif kind == "batch":
            self._last_change = time.strftime("%H:%M:%S")
            f = event["files"]
            parts = [f"{f[k]} {k}" for k in ("added", "updated", "removed", "failed") if f.get(k)]
            cached = f", {event['from_cache']} chunks from cache" if event.get("from_cache") else ""
            summary = ", ".join(parts) or "nothing to do"
            out.print(f"{self._last_change} {summary}{cached} · {event['seconds']:.1f} s")
        if kind in ("catchup", "batch"):
            for w in event.get("warnings", []):
                err.print(f"[yellow]warning[/] {escape(display_path(w['path']))}: {escape(w['warning'])}")
        if kind == "failed":
            err.print(f"[red]failed[/] {escape(display_path(event['path']))}: {escape(event['reason'])}")
        elif kind == "error":
            error(event["error"])

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._line(), refresh=True)

    def _line(self) -> Text:
        folders = self.watcher.status() if self.watcher is not None else []
        files = sum(f["files"] for f in folders)
        queued = sum(f["queued"] for f in folders)
        doing = "watching"
        if self.busy and self._counter is not None:
            doing = f"ingesting {self._counter.done:,}/{self._counter.total:,} ·"
        return Text(f"{doing} {plural(files, 'file')} · last change {self._last_change} · queued {queued:,}", "dim")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
