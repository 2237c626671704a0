"""Terminal output: JSON for scripts, plain text when piped, colour and progress on a TTY."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rag import prompts
from rag.results import Answer, Support

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def print_json(data: Any) -> None:
    # Plain print, not rich: scripts need exact bytes, no wrapping or markup.
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")


def warn(message: str) -> None:
    err.print(f"[yellow]{escape(message)}[/]")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def human_time(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _progress_bar(label: str) -> Progress:
    """A bar on stderr that clears itself when done: label, bar, n/total, detail, elapsed."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


class IngestProgress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err.is_terminal
        self._progress: Progress | None = None
        self._files: TaskID | None = None
        self._chunks: TaskID | None = None
        self._stored = 0
        self._queued = 0
        self._started = time.perf_counter()

    def __enter__(self) -> IngestProgress:
        if self.enabled:
            self._progress = _progress_bar("{task.description}")
            self._progress.start()
            self._files = self._progress.add_task("files ", total=None, detail="")
            self._chunks = self._progress.add_task("chunks", total=0, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def planned(self, files: int) -> None:
        if self._progress is not None and self._files is not None:
            self._progress.update(self._files, total=files)

    def file_done(self, path: str) -> None:
        if self._progress is not None and self._files is not None:
            self._progress.advance(self._files)

    def chunks_queued(self, n: int) -> None:
        self._queued += n
        if self._progress is not None and self._chunks is not None:
            self._progress.update(self._chunks, total=self._queued)

    def chunks_stored(self, n: int) -> None:
        self._stored += n
        if self._progress is not None and self._chunks is not None:
            rate = self._stored / max(1e-6, time.perf_counter() - self._started)
            self._progress.update(self._chunks, completed=self._stored, detail=f"{rate:,.0f}/s")


class CacheProgress:
    """A progress bar on stderr, when it is a terminal, while this machine builds its cache of
    an index from a Chroma server (``Index.open``'s ``progress``): chunks done and the rate."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not err.is_terminal:
            return
        if self._progress is None:
            self._started = time.perf_counter()
            self._progress = _progress_bar("caching from server")
            self._progress.start()
            self._task = self._progress.add_task("cache", total=total, detail="")
        assert self._task is not None
        rate = done / max(1e-6, time.perf_counter() - self._started)
        self._progress.update(self._task, completed=done, total=total, detail=f"{rate:,.0f} chunks/s")
        if done >= total:
            self._progress.stop()
            self._progress = None


def _markup(text: str, pieces: Iterable[tuple[int, int, str, str]]) -> str:
    """``text`` as rich markup: each piece ``(start, end, before, after)`` escaped between its
    markup, in order (one that overlaps the piece before is skipped), the rest escaped."""
    parts, last = [], 0
    for start, end, before, after in pieces:
        if start >= last:
            parts += [escape(text[last:start]), before, escape(text[start:end]), after]
            last = end
    parts.append(escape(text[last:]))
    return "".join(parts)


def marked(answer: Answer) -> str:
    """The answer as rich markup, the words that answer in bold (plain text when piped)."""
    spans = sorted(answer.spans, key=lambda s: s.start)
    return _markup(answer.text, ((s.start, s.end, "[bold]", "[/]") for s in spans))


#: After a sentence no source backs, on a terminal (it is shown dim as well).
UNSUPPORTED_MARK = " ⚠ unsupported"


def checked(answer: Answer) -> str:
    """The answer as rich markup with what the support check found, on a terminal: sentences
    no source backs dim and marked, and the sources rag attributed after their sentence, dim.
    Piped, the text is left as it is."""
    if not answer.support or not out.is_terminal:
        return marked(answer)
    return _markup(answer.text, (_verdict(sentence) for sentence in answer.support))


def _verdict(sentence: Support) -> tuple[int, int, str, str]:
    if not sentence.supported:
        return sentence.start, sentence.end, "[dim]", f"[/][dim yellow]{UNSUPPORTED_MARK}[/]"
    if sentence.attributed:
        numbers = ", ".join(map(str, sentence.citations))
        return sentence.start, sentence.end, "", f"[dim] {escape(f'[{numbers}]')}[/]"
    return sentence.start, sentence.end, "", ""


def source_line(n: int, location: str, note: str = "") -> str:
    """``[n] location`` as rich markup, the way every list of sources shows one."""
    return escape(f"[{n}] ") + f"[cyan]{escape(location)}[/]{note}"


#: Said under a refusal that is the model's failure, not the documents' silence.
REFUSAL_NOTES = {
    "unsupported": "the model answered, but rag found no sentence of its answer in the sources",
    "not_answering": "the model answered from the sources, but not what was asked",
    "copied": "the model copied passages of other sources than those that best match the question",
}


def print_answer(answer: Answer, *, streamed: str = "", show_context: bool = False, label: bool = True) -> None:
    """The answer (unless already streamed), its sources, notes, and the context.

    ``label`` says when an answer is extractive; chat says it once at the start instead.
    """
    if not streamed:
        if label and answer.answerer == "extractive" and not answer.set_aside:
            out.print(f"[dim]({escape(prompts.EXTRACTIVE_LABEL)})[/]")
        out.print(f"[yellow]{escape(answer.text)}[/]" if answer.refused else checked(answer))
    elif streamed.strip() != answer.text.strip():
        # The final text differs from the streamed words: quotes that stand in for a model
        # answer already shown (set_aside), or a refusal after the support check.
        sys.stdout.write("\n")
        if answer.set_aside:
            out.print(f"[dim yellow]{escape(prompts.SET_ASIDE)}[/]")
        out.print(escape(answer.text))
    else:
        sys.stdout.write("\n")
        if out.is_terminal:  # the streamed words cannot be restyled: the verdicts go below them
            for sentence in answer.support:
                if not sentence.supported:
                    quoted = escape(answer.text[sentence.start : sentence.end])
                    out.print(f"[dim yellow]⚠ no source backs:[/] [dim]{quoted}[/]")
    if answer.refusal in REFUSAL_NOTES:
        out.print(f"[dim]({REFUSAL_NOTES[answer.refusal]}; --show-context shows what it was given)[/]")
    elif answer.set_aside in REFUSAL_NOTES:
        out.print(f"[dim]({REFUSAL_NOTES[answer.set_aside]}; these are quotes of the sources instead)[/]")
    if answer.citations:
        out.print("\n[bold]Sources[/]")
        for c in answer.citations:
            note = " [dim](matched by rag: the model cited nothing here)[/]" if c.attributed else ""
            out.print(source_line(c.n, c.location, note))
    if answer.removed_citations:
        removed = answer.removed_citations
        out.print(f"[dim]({removed} citation(s) to sources that were not supplied were removed)[/]")
    usage = answer.usage
    if usage.total_tokens:
        cost = usage.cost_usd
        # A typical answer costs a fraction of a cent: show enough digits to see it.
        price = "" if cost is None else f" · ${cost:.4f}" if cost >= 0.01 else f" · ${cost:.6f}"
        about = "~" if usage.estimated else ""
        out.print(f"[dim]{escape(answer.model)} · {about}{usage.total_tokens:,} tokens{price}[/]")
    if show_context:
        # On stderr, so that stdout stays the answer alone when piped.
        err.print("\n[dim]── context: what the model saw ──[/]")
        for n, hit in enumerate(answer.context, start=1):
            err.print(source_line(n, hit.location))
            err.print(escape(hit.text.strip()))
        if not answer.context:
            err.print("[dim](nothing)[/]")
