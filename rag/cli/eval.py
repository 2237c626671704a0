"""``rag eval DATASET``: retrieval quality and latency on a BEIR-format benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rag.cli.options import JsonOpt, StoreOpt
from rag.cli.output import IngestProgress, err, out, print_json, warn
from rag.eval.beir import load_beir, load_squad
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.eval.runner import EvalResult
    from rag.retrieve.search import Mode


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)


def eval_command(
    dataset: Annotated[
        Path,
        typer.Argument(help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or a SQuAD .json."),
    ],
    mode: Annotated[str, typer.Option("--mode", help="dense, keyword or hybrid.")] = "hybrid",
    store: StoreOpt = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=10, max=1000, help="Documents ranked per query.")] = 100,
    index: Annotated[
        str | None,
        typer.Option("--index", "-i", help="Keep the corpus in this index (default: a temporary one)."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which qrels file to score against.")] = "test",
    embedder: Annotated[str | None, typer.Option("--embedder", help="local, openai or openai:MODEL.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index DATASET's corpus, run its queries, and print nDCG@10, Recall@10/100, MRR@10 and latency."""
    if mode not in ("dense", "keyword", "hybrid"):
        raise typer.BadParameter("use dense, keyword or hybrid", param_hint="--mode")
    from rag.eval.runner import run_eval  # loads the pipeline: only when evaluating

    data = load_squad(dataset) if dataset.suffix == ".json" else load_beir(dataset, split)
    settings = Settings.load()
    if store is not None:
        settings = settings.with_options(store__home=store.expanduser())
    with (
        IngestProgress(enabled=not as_json) as indexing,
        _QueryProgress(not as_json, indexing) as queries,
    ):
        result = run_eval(
            data,
            settings,
            mode=cast("Mode", mode),
            depth=k,
            index_name=index,
            embedder=embedder,
            progress=indexing,
            on_query=queries.update,
        )
    if result.ingest is not None and result.ingest.failed:
        warn(f"{len(result.ingest.failed)} documents could not be indexed")
    if as_json:
        print_json(result.to_dict())
    else:
        _print_result(result, len(data.corpus))


class _QueryProgress:
    """A bar for the queries on stderr when it is a terminal; silent otherwise.

    It replaces the indexing bars when the first query runs (one live display at a time).
    """

    def __init__(self, enabled: bool, indexing: IngestProgress) -> None:
        self._indexing = indexing
        self._progress = (
            Progress(
                TextColumn("queries"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            if enabled and err.is_terminal
            else None
        )
        self._task: TaskID | None = None

    def __enter__(self) -> _QueryProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.stop()

    def update(self, done: int, total: int) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._indexing.__exit__(None, None, None)
            self._progress.start()
            self._task = self._progress.add_task("queries", total=total)
        self._progress.update(self._task, completed=done)


def _print_result(result: EvalResult, documents: int) -> None:
    m, lat = result.metrics, result.latency_ms
    where = f"index '{result.index}'" if result.index else "a temporary index"
    out.print(
        f"[bold]{result.dataset}[/]: {documents:,} documents in {where}, {result.queries} queries, mode {result.mode}"
    )
    out.print(
        f"nDCG@10 {m['ndcg@10']:.4f}  Recall@10 {m['recall@10']:.4f}  "
        f"Recall@100 {m['recall@100']:.4f}  MRR@10 {m['mrr@10']:.4f}"
    )
    out.print(f"latency p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms")
