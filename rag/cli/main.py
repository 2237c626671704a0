"""The ``rag`` command: a thin layer over ``rag.Engine`` that only parses and prints.

Exit status: 0 success, 1 failure (some files failed, a provider error), 2 usage error,
130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rag import __version__
from rag.answer import registry
from rag.cli.options import (
    EmbedderOpt,
    ExcludeOpt,
    FollowLinksOpt,
    IncludeOpt,
    IndexOpt,
    JsonOpt,
    KOpt,
    LlmOpt,
    ModelOpt,
    ModeOpt,
    OcrOpt,
    PagesFilter,
    PathFilter,
    StoreOpt,
    TypeFilter,
    ocr_overrides,
)
from rag.cli.output import (
    CacheProgress,
    IngestProgress,
    err,
    error,
    human_bytes,
    human_time,
    out,
    plural,
    print_answer,
    print_json,
)
from rag.embed import factory
from rag.engine import Engine
from rag.errors import EXIT_FAILURE, RagError
from rag.results import FileProblem, Unsupported, display_path
from rag.retrieve.search import Filters
from rag.settings import Settings, default_config_file
from rag.store.store import IndexInfo

app = typer.Typer(
    name="rag",
    help="Ask your documents: ingest a folder, then search it or ask questions with cited answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# --- shared helpers ---------------------------------------------------------------------------


# Engines a command opened, closed when the command ends: a store left to the garbage
# collector checkpoints its WAL whenever that happens, even into a file replaced meanwhile.
_opened: list[Engine] = []


def _engine(index: str | None, store: Path | None, **overrides: Any) -> Engine:
    engine = Engine(index=index, store=store, **overrides)
    engine.store.sync_progress = CacheProgress()
    _opened.append(engine)
    return engine


def _filters(paths: list[str] | None, types: list[str] | None, pages: str | None) -> Filters:
    return Filters.parse(paths or (), types or (), pages)


def _check_mode(mode: str | None) -> Any:
    if mode is not None and mode not in ("dense", "keyword", "hybrid"):
        raise typer.BadParameter("use dense, keyword or hybrid", param_hint="--mode")
    return mode


def _version(value: bool) -> None:
    if value:
        out.print(f"rag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Ask your documents."""


# --- ingest ---------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to index (folders recursively).")],
    index: IndexOpt = None,
    store: StoreOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Keep files that are gone from disk.")] = False,
    follow_links: FollowLinksOpt = False,
    embedder: EmbedderOpt = None,
    ocr: OcrOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index files: unchanged ones are skipped, changed ones re-indexed, deleted ones removed."""
    engine = _engine(index, store, **ocr_overrides(ocr), **({"ingest__follow_links": True} if follow_links else {}))
    with IngestProgress(enabled=not as_json) as progress:
        try:
            report = engine.ingest(
                paths,
                include=include or (),
                exclude=exclude or (),
                prune=not no_prune,
                embedder=embedder,
                progress=progress,
            )
        except KeyboardInterrupt:
            progress.__exit__(None, None, None)
            error("interrupted: what was stored is kept; run the same command again to finish")
            raise typer.Exit(130) from None
    for problem in report.failed:
        err.print(f"[red]failed[/] {escape(display_path(problem.path))}: {escape(problem.reason)}")
    if as_json:
        print_json(report.to_dict())
    else:
        _print_ingest_summary(report)
    if report.interrupted:
        error(report.interrupted)
    raise typer.Exit(0 if report.ok else EXIT_FAILURE)


def _print_ingest_summary(report: Any) -> None:
    for problem in report.skipped:
        err.print(f"[dim]skipped {escape(display_path(problem.path))}: {escape(problem.reason)}[/]")
    _print_unsupported(report.unsupported)
    _print_warnings(report.warnings)
    d = report.to_dict()
    f, c = d["files"], d["chunks"]
    unsupported = f" ({len(report.unsupported)} of unsupported type)" if report.unsupported else ""
    out.print(
        f"[bold]{report.index}[/]: {f['added']} added, {f['updated']} updated, {f['unchanged']} unchanged, "
        f"{f['removed']} removed, {f['skipped']} skipped{unsupported}, {f['failed']} failed"
    )
    cached = f", {report.from_cache} from cache" if report.from_cache else ""
    out.print(
        f"chunks: +{c['added']} -{c['removed']} = {c['total']}{cached} · {report.seconds:.1f} s · {report.embedder}"
    )
    if report.usage:
        cost = report.usage.cost_usd
        price = f" · ${cost:.4f}" if cost is not None else ""
        tokens, requests = report.usage.prompt_tokens, report.usage.requests
        out.print(f"embedding: {tokens:,} tokens, {plural(requests, 'request')}{price}")
    if report.repaired:
        out.print(f"repaired {report.repaired} chunks left by an interrupted ingest")


def _print_unsupported(files: list[Unsupported], shown: int = 5) -> None:
    """Name each file of a type rag does not read; past ``shown``, count the rest by type.

    One file of each type comes first, so that the lines shown name every type skipped.
    """
    ordered = sorted(files, key=lambda u: u.path)
    firsts: dict[str, Unsupported] = {}
    for u in ordered:
        firsts.setdefault(u.type, u)
    files = [*firsts.values(), *(u for u in ordered if firsts[u.type] is not u)]
    for u in files[:shown]:
        err.print(f"[dim]not read (unsupported type {escape(u.type)}): {escape(display_path(u.path))}[/]")
    rest = Counter(u.type for u in files[shown:])
    if rest:
        types = ", ".join(f"{t} {n}" for t, n in rest.most_common())
        err.print(f"[dim]... and {len(files) - shown} more of unsupported type ({escape(types)}; --json lists them)[/]")


def _print_warnings(files: list[FileProblem], shown: int = 5) -> None:
    """One line per file indexed with a warning (pages not indexed, a guessed encoding); past
    ``shown`` files, a count (--json lists them all)."""
    for problem in files[:shown]:
        err.print(f"[yellow]warning[/] {escape(display_path(problem.path))}: {escape(problem.reason)}")
    if len(files) > shown:
        err.print(f"[yellow]... and {len(files) - shown} more files with warnings (--json lists them)[/]")


# --- search ---------------------------------------------------------------------------------


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: KOpt = None,
    index: IndexOpt = None,
    store: StoreOpt = None,
    mode: ModeOpt = None,
    mmr: Annotated[bool | None, typer.Option("--mmr/--no-mmr", help="Diversify results.")] = None,
    path: PathFilter = None,
    type_: TypeFilter = None,
    pages: PagesFilter = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the chunks that best match QUERY (retrieval only, no LLM)."""
    engine = _engine(index, store)
    hits = engine.search(query, k, _filters(path, type_, pages), mode=_check_mode(mode), mmr=mmr)
    if as_json:
        print_json({"query": query, "results": [h.to_dict() for h in hits]})
        return
    if not hits:
        out.print("no results")
        return
    for hit in hits:
        # Types cited by section already show the heading in their location.
        heading = f" [dim]· {escape(hit.heading)}[/]" if hit.heading and hit.heading not in hit.location else ""
        ocr = " [yellow](OCR)[/]" if hit.ocr else ""
        out.print(f"[bold]{hit.rank}.[/] [cyan]{escape(hit.location)}[/]{heading}{ocr} [dim]score {hit.score:.3f}[/]")
        snippet = " ".join(hit.text.split())
        out.print("   " + escape(snippet[:300] + ("…" if len(snippet) > 300 else "")))


# --- ask ------------------------------------------------------------------------------------


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    k: KOpt = None,
    index: IndexOpt = None,
    store: StoreOpt = None,
    model: ModelOpt = None,
    llm: LlmOpt = None,
    mode: ModeOpt = None,
    path: PathFilter = None,
    type_: TypeFilter = None,
    pages: PagesFilter = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Print the answer when complete.")] = False,
    show_context: Annotated[bool, typer.Option("--show-context", help="Also print what the model saw.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer QUESTION from your documents only, with sources, or say they don't hold it."""
    engine = _engine(index, store)
    # Chosen first so that a bad --llm fails before retrieval.  Extractive answers arrive
    # whole, so only an LLM's are streamed.
    answerer = engine.answerer(llm, model)
    stream = not (no_stream or as_json) and answerer.streams
    printed: list[str] = []

    def on_delta(text: str) -> None:
        printed.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        answer = engine.ask(
            question,
            k=k,
            filters=_filters(path, type_, pages),
            mode=_check_mode(mode),
            llm=llm,
            model=model,
            on_delta=on_delta if stream else None,
        )
    except KeyboardInterrupt:
        if printed:
            sys.stdout.write("\n")
        error("interrupted")
        raise typer.Exit(130) from None
    except RagError:
        if printed:  # the error line must not run on from half an answer
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise
    if as_json:
        print_json(answer.to_dict(include_context=show_context))
        return
    print_answer(answer, streamed="".join(printed), show_context=show_context)


# --- status and config ----------------------------------------------------------------------


@app.command()
def status(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexes in the store: embedder, files, chunks, size, last ingest, usage."""
    engine = _engine(None, store)
    infos = engine.indexes()
    answers = registry.describe(engine.settings)
    if as_json:
        print_json({"store": engine.layout.description, "answerer": answers, "indexes": [i.to_dict() for i in infos]})
    else:
        out.print(f"store: {escape(engine.layout.description)}")
        out.print(f"answers: {escape(answers['llm'])}: {escape(answers['model'])}")
        if not infos:
            out.print("no indexes yet: run `rag ingest PATH`")
        for info in infos:
            _print_status(info)
    # One unreadable index is reported (a line each on stderr, exit 1); the rest are listed.
    broken = [info.error for info in infos if info.error]
    for message in broken:
        error(message)
    if broken:
        raise typer.Exit(EXIT_FAILURE)


def _print_status(info: IndexInfo) -> None:
    if info.error:
        out.print(f"[bold]{escape(info.name)}[/]  unreadable (see the error below)")
        return
    out.print(
        f"[bold]{info.name}[/]  {info.embedder or '-'}  {info.files} files  {info.chunks} chunks  "
        f"{human_bytes(info.size_bytes)}  last ingest {human_time(info.last_ingest)}"
    )
    if info.types:
        out.print("   files: " + ", ".join(f"{kind} {n}" for kind, n in info.types.items()))
    if info.server is not None:
        server = info.server
        behind = "up to date" if server["behind"] == 0 else f"{plural(server['behind'], 'generation')} behind"
        holder = f"being written by {server['lease_holder']}" if server["lease_holder"] else "no writer"
        out.print(
            f"   server {escape(server['server'])}  generation {server['generation']}  "
            f"this machine's cache: {behind}  {escape(holder)}"
        )
    for row in info.usage:
        cost = f"  ${row['cost_usd']:.4f}" if row["cost_usd"] else ""
        out.print(
            f"   {row['kind']} {row['model']}: {plural(row['requests'], 'request')}, "
            f"{row['prompt_tokens'] + row['completion_tokens']:,} tokens{cost}"
        )


@app.command()
def config(as_json: JsonOpt = False) -> None:
    """Show the effective settings and where each value came from (keys masked)."""
    settings = Settings.load()
    rows = settings.describe()
    config_file = Path(os.environ.get("RAG_CONFIG") or default_config_file())
    files = {
        "config_file": str(config_file),
        "config_file_exists": config_file.is_file(),
        "dotenv": Path(".env").is_file(),
    }
    try:
        embedder, why = factory.explain(settings)
    except RagError as exc:  # a configured server that cannot be reached
        embedder, why = settings.embedding.embedder, str(exc)
    answers = registry.describe(settings)
    if as_json:
        print_json({**files, "embedder": {"name": embedder, "why": why}, "answerer": answers, "settings": rows})
        return
    out.print(
        f"[dim]answers: {escape(answers['llm'])}: {escape(answers['model'])}; --llm local: "
        f"{escape(answers['local_model'])}[/]"
    )
    out.print(
        f"[dim]config file: {escape(str(config_file))}{'' if files['config_file_exists'] else ' (none)'}"
        f"; .env here: {'yes' if files['dotenv'] else 'no'}[/]"
    )
    out.print(f"embedder for new indexes: [bold]{escape(embedder)}[/] [dim]← {escape(why)}[/]")
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        value = "[dim]not set[/]" if row["value"] is None else escape(str(row["value"]))
        env = f" [dim]({row['env']})[/]" if row["env"] else ""
        out.print(f"{row['name']:<{width}}  {value}  [dim]← {escape(row['source'])}[/]{env}")


@app.command()
def drop(
    index: Annotated[str, typer.Argument(help="The index to delete.")],
    store: StoreOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an index (its chunks and vectors; your files are untouched)."""
    engine = _engine(index, store)
    if not yes and not typer.confirm(f"Delete index '{index}'?"):
        raise typer.Exit(EXIT_FAILURE)
    engine.drop()
    if as_json:
        print_json({"dropped": index})
    else:
        out.print(f"deleted index '{index}'")


@app.command()
def repair(index: IndexOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Rebuild an index's file list and keyword index from its vectors (after index.db was damaged)."""
    engine = _engine(index, store)
    repaired = engine.repair()
    if as_json:
        print_json(repaired.to_dict())
        return
    files, chunks, dropped = plural(repaired.files, "file"), plural(repaired.chunks, "chunk"), repaired.dropped
    out.print(f"repaired index '{repaired.index}': {files}, {chunks}")
    # Named, as ingest names its warnings, so nobody wonders where a file went.
    for path in dropped[:5]:
        err.print(f"[yellow]dropped[/] {escape(display_path(path))}: incomplete (an ingest stopped half way)")
    if len(dropped) > 5:
        err.print(f"[yellow]... and {len(dropped) - 5} more files dropped (--json lists them)[/]")
    if dropped:
        out.print(f"{plural(len(dropped), 'incomplete file')} dropped: run `rag ingest` on them again to restore them")


def _register_optional_commands() -> None:
    """Commands that live in their own modules."""
    import importlib

    for module in ("rag.cli.chat", "rag.cli.eval", "rag.cli.serve", "rag.cli.watch"):
        try:
            importlib.import_module(module).register(app)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_register_optional_commands()


def main() -> None:
    """Entry point: runs the app and turns rag's errors into one line and an exit status."""
    try:
        app()
    except RagError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        # `rag search ... | head` closes the pipe early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("RAG_DEBUG"):
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (set RAG_DEBUG=1 for the traceback)")
        sys.exit(EXIT_FAILURE)
    finally:
        while _opened:
            _opened.pop().close()
