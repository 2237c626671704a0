"""``rag chat`` and ``rag history``: a terminal front end to ``rag.chat`` (parsing and printing only).

On a terminal, ``rag chat`` is interactive: a prompt with line editing and history, answers
streamed in, Ctrl-C stops an answer without leaving.  With stdin piped it reads one question
per line and prints plain answers (or, with ``--json``, one JSON object per line).
"""

from __future__ import annotations

import json
import sys
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rag import prompts
from rag.chat.conversation import Conversation
from rag.chat.sessions import Sessions, validate_session_name
from rag.cli.options import IndexOpt, JsonOpt, KOpt, LlmOpt, ModelOpt, StoreOpt
from rag.cli.output import err, error, human_time, out, print_answer, print_json, source_line
from rag.engine import Engine
from rag.errors import EXIT_FAILURE, RagError
from rag.home import Store
from rag.results import Answer

SessionOpt = Annotated[
    str | None, typer.Option("--session", "-s", help="Resume or create this named session \\[default: a new one].")
]

PROMPT = "> "
EXIT_WORDS = frozenset({"exit", "quit", "/exit", "/quit", ":q"})
COMMANDS = {
    "/sources": "show what the last answer was given (its retrieved context)",
    "/reset": "forget this conversation (the session keeps its name)",
    "/help": "list these commands",
    "/exit": "leave (also exit, quit, Ctrl-D)",
}
_HISTORY_FILE = "chat_history"
_HISTORY_LINES = 1000


def register(app: typer.Typer) -> None:
    """Add ``chat`` and ``history`` to the ``rag`` app."""
    app.command("chat")(chat)
    history_app = typer.Typer(
        name="history",
        help="List, show and delete saved chat sessions.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    history_app.callback(invoke_without_command=True)(history)
    history_app.command("show")(history_show)
    history_app.command("rm")(history_rm)
    app.add_typer(history_app)


# --- rag chat -------------------------------------------------------------------------------


def chat(
    index: IndexOpt = None,
    session: SessionOpt = None,
    k: KOpt = None,
    model: ModelOpt = None,
    llm: LlmOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per answer, one per line.")] = False,
    show_context: Annotated[
        bool, typer.Option("--show-context", help="Also print what each answer was given (on stderr, or in the JSON).")
    ] = False,
    no_rewrite: Annotated[
        bool, typer.Option("--no-rewrite", help="Search with each question as typed (no follow-up rewriting).")
    ] = False,
) -> None:
    """Chat with your documents: follow-up questions understood, sessions saved.

    Piped input is read as one question per line.
    """
    if session is not None:
        validate_session_name(session)
    engine = Engine(index=index or _session_index(session, store), store=store)
    with (
        engine,
        engine.chat(session=session, llm=llm, model=model, k=k, rewrite_followups=not no_rewrite) as conversation,
    ):
        if sys.stdin.isatty() and not as_json:
            code = _interactive(conversation)
        else:
            code = _piped(conversation, as_json=as_json, show_context=show_context)
    raise typer.Exit(code)


def _session_index(session: str | None, store: Path | None) -> str | None:
    """The index a saved session chats over: resuming needs no --index."""
    if session is None:
        return None
    info = _sessions(store).info(session)
    return info.index if info is not None else None


def _piped(conversation: Conversation, *, as_json: bool, show_context: bool) -> int:
    code = 0
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        if line.lower() in EXIT_WORDS:
            break
        if line.startswith("/"):
            if not _command(conversation, line, as_json=as_json):
                code = EXIT_FAILURE
            continue
        try:
            answer = conversation.ask(line)
        except RagError as exc:
            error(str(exc))
            code = EXIT_FAILURE
            continue
        if as_json:
            _json_line({**answer.to_dict(include_context=show_context), "session": conversation.name})
            continue
        sys.stdout.write(str(answer) + "\n\n")
        sys.stdout.flush()
        if show_context:  # on stderr, so that stdout stays the answers
            _print_context(answer, err)
    if conversation.turns and not as_json:
        err.print(f"session {conversation.name}", highlight=False)
    return code


def _interactive(conversation: Conversation) -> int:
    history_file = _start_readline(conversation.engine.layout.home)
    _greet(conversation)
    interrupted = False
    try:
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                sys.stdout.write("\n")
                break
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                if interrupted:  # a second Ctrl-C in a row leaves
                    break
                interrupted = True
                out.print("[dim](Ctrl-C again, Ctrl-D or exit to leave)[/]")
                continue
            interrupted = False
            line = line.strip()
            if not line:
                continue
            if line.lower() in EXIT_WORDS:
                break
            if line.startswith("/"):
                _command(conversation, line, as_json=False)
                continue
            _ask_streamed(conversation, line)
    finally:
        _save_readline(history_file)
    if conversation.turns:
        out.print(f"[dim]session saved: resume with[/] rag chat --session {conversation.name}")
    return 0


def _greet(conversation: Conversation) -> None:
    answerer = conversation.answerer
    by = f"answers by {answerer.model}" if answerer.kind == "llm" else prompts.EXTRACTIVE_LABEL
    state = f"resumed, {len(conversation.turns)} turns" if conversation.resumed else "new"
    out.print(
        f"[bold]rag chat[/] · index {escape(conversation.engine.index_name)} · "
        f"session {escape(conversation.name)} ({state})"
    )
    out.print(f"[dim]{escape(by)}[/]")
    out.print("[dim]/help for commands · Ctrl-C stops an answer · Ctrl-D leaves[/]")


def _ask_streamed(conversation: Conversation, question: str) -> None:
    printed: list[str] = []

    def on_delta(text: str) -> None:
        printed.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    def on_rewrite(query: str) -> None:
        out.print(f"[dim]↳ {escape(query)}[/]")

    try:
        # Extractive answers arrive whole: printed once, at the end, with the answering words in bold.
        streams = conversation.answerer.streams
        answer = conversation.ask(question, on_delta=on_delta if streams else None, on_rewrite=on_rewrite)
    except KeyboardInterrupt:
        sys.stdout.write("\n" if printed else "")
        out.print("[dim](stopped)[/]")
        return
    except RagError as exc:
        if printed:
            sys.stdout.write("\n")
        error(str(exc))
        return
    print_answer(answer, streamed="".join(printed), label=False)
    out.print()


def _command(conversation: Conversation, line: str, *, as_json: bool) -> bool:
    """Run a /command; False for an unknown one."""
    name = line.split()[0].lower()
    if name == "/help":
        if as_json:
            _json_line({"command": "help", "commands": COMMANDS})
        else:
            for command, what in COMMANDS.items():
                out.print(f"[bold]{command:<9}[/] {escape(what)}")
    elif name == "/reset":
        conversation.reset()
        if as_json:
            _json_line({"command": "reset", "session": conversation.name})
        else:
            out.print("[dim](conversation cleared)[/]")
    elif name == "/sources":
        answer = conversation.last_answer
        context = answer.context if answer is not None else []
        if as_json:
            _json_line({"command": "sources", "context": [h.to_dict() for h in context]})
        elif answer is None or not context:
            out.print("[dim](no sources yet: ask a question first)[/]")
        else:
            _print_context(answer, out)
    else:
        error(f"unknown command {name}: /help lists them")
        return False
    return True


def _print_context(answer: Answer, console: Console) -> None:
    for n, hit in enumerate(answer.context, start=1):
        console.print(source_line(n, hit.location, f" [dim]score {hit.score:.3f}[/]"))
        console.print(escape(hit.text.strip()))
        console.print()


def _json_line(data: dict[str, Any]) -> None:
    # One object per line, so a script can read answers as they come.
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _start_readline(home: Path) -> Path | None:
    """Line editing and a persistent history, when the platform has ``readline``."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input() still works
        return None
    path = home / _HISTORY_FILE
    with suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(_HISTORY_LINES)
    return path


def _save_readline(path: Path | None) -> None:
    if path is None:
        return
    import readline

    with suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)


# --- rag history ----------------------------------------------------------------------------


def history(
    ctx: typer.Context,
    index: Annotated[str | None, typer.Option("--index", "-i", help="Only this index's sessions.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List saved chat sessions (most recent first)."""
    if ctx.invoked_subcommand is not None:
        return
    infos = _sessions(store).list(index)
    if as_json:
        print_json({"sessions": [s.to_dict() for s in infos]})
        return
    if not infos:
        out.print("no chat sessions yet: start one with `rag chat`")
        return
    width = max(len(s.name) for s in infos)
    for s in infos:
        out.print(
            f"[bold]{escape(s.name):<{width}}[/]  {escape(s.index)}  {s.turns} turns  "
            f"created {human_time(s.created)}  updated {human_time(s.updated)}"
        )


def history_show(
    name: Annotated[str, typer.Argument(help="The session to print.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a saved session: each question, its answer and the sources cited."""
    session = _sessions(store).get(name)
    info, turns = session.info, session.turns
    if as_json:
        print_json(session.to_dict())
        return
    out.print(
        f"[bold]{escape(info.name)}[/] · index {escape(info.index)} · {info.turns} turns · "
        f"updated {human_time(info.updated)}"
    )
    for turn in turns:
        out.print(f"\n[bold]> {escape(turn.question)}[/]")
        if turn.search_query:
            out.print(f"[dim]↳ {escape(turn.search_query)}[/]")
        out.print(f"[yellow]{escape(turn.answer)}[/]" if turn.refused else escape(turn.answer))
        for c in turn.citations:
            out.print(source_line(c.n, c.location))


def history_rm(
    name: Annotated[str, typer.Argument(help="The session to delete.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a saved session."""
    _sessions(store).delete(name)
    if as_json:
        print_json({"deleted": name})
    else:
        out.print(f"deleted session '{name}'")


def _sessions(store: Path | None) -> Sessions:
    """The store's saved sessions (reading them creates no file)."""
    return Store(store).sessions()
