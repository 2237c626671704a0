"""The parse worker pool: time and memory limits, crashes, order, and killing helper programs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rag.ingest.parse import ParseLimits, ParsePool
from tests.parse_targets import by_name

LIMITS = ParseLimits(timeout=2.0, memory_mb=512)
# For tests not about time: filling 512 MB can take seconds on a busy machine.
PATIENT = ParseLimits(timeout=300.0, memory_mb=512)


def files(tmp_path: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = tmp_path / name
        path.write_text(name)
        paths.append(path)
    return paths


def outcome(results: list) -> list[str]:
    return ["ok" if r.document is not None else r.error.reason for r in results]


def test_results_come_back_in_order_from_worker_processes(tmp_path: Path) -> None:
    paths = files(tmp_path, *(f"ok{i}.txt" for i in range(12)))
    with ParsePool(by_name, limits=PATIENT, workers=2) as pool:
        results = list(pool.imap(paths))
    assert [r.path for r in results] == paths
    assert outcome(results) == ["ok"] * 12
    pids = {r.document.sections[0].text.rsplit(" ", 1)[1] for r in results if r.document is not None}
    assert str(os.getpid()) not in pids


def test_a_hanging_file_is_stopped_at_the_limit_and_the_rest_parse(tmp_path: Path) -> None:
    paths = files(tmp_path, "ok1.txt", "hang.txt", "ok2.txt")
    started = time.monotonic()
    with ParsePool(by_name, limits=LIMITS, workers=2) as pool:
        results = list(pool.imap(paths))
    # Stopped at the limit, not after minutes; the margin covers starting a worker on a busy machine.
    assert time.monotonic() - started < LIMITS.timeout + 30
    assert outcome(results) == ["ok", "parsing took longer than 2 s (RAG_PARSE_TIMEOUT), stopped", "ok"]
    hung = int((tmp_path / "hang.started").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)


def test_crashes_memory_and_bugs_cost_one_file_each(tmp_path: Path) -> None:
    paths = files(tmp_path, "segfault.txt", "ok1.txt", "hog.txt", "bug.txt", "refuse.txt", "ok2.txt")
    with ParsePool(by_name, limits=PATIENT, workers=1) as pool:
        results = list(pool.imap(paths))
    assert outcome(results) == [
        "the parser crashed (segmentation fault)",
        "ok",
        "out of memory: parsing needs more than 512 MB (RAG_PARSE_MEMORY_MB)",
        "parser error (ZeroDivisionError: division by zero)",
        "not my kind of file",
        "ok",
    ]


def test_a_stuck_helper_program_dies_with_its_worker(tmp_path: Path) -> None:
    paths = files(tmp_path, "child.txt")
    with ParsePool(by_name, limits=LIMITS, workers=1) as pool:
        [result] = list(pool.imap(paths))
    assert result.error is not None and "longer than" in result.error.reason
    child = int((tmp_path / "child.child").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # SIGKILL is delivered, reaping by init may lag
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as fh:
            if fh.read().split(") ")[1].startswith("Z"):
                break  # a zombie: dead, waiting for its new parent to reap it
        time.sleep(0.05)
    else:
        pytest.fail("the helper program outlived its worker")


def test_inline_files_are_parsed_in_this_process_in_order(tmp_path: Path) -> None:
    paths = files(tmp_path, "ok1.md", "ok2.pdf", "ok3.md")
    with ParsePool(by_name, limits=PATIENT, workers=1, inline=lambda p: p.suffix == ".md") as pool:
        results = list(pool.imap(paths))
    where = [r.document.sections[0].text.rsplit(" ", 1)[1] for r in results if r.document is not None]
    assert [r.path for r in results] == paths
    assert where[0] == where[2] == str(os.getpid()) != where[1]


def test_no_worker_starts_when_every_file_is_inline(tmp_path: Path) -> None:
    pool = ParsePool(by_name, limits=PATIENT, workers=1, inline=lambda p: True)
    assert outcome(list(pool.imap(files(tmp_path, "ok.md")))) == ["ok"]
    assert pool._workers == []
    pool.close()


def test_workers_keep_parsing_while_the_caller_is_busy(tmp_path: Path) -> None:
    paths = files(tmp_path, *(f"big{i}.txt" for i in range(4)))
    with ParsePool(by_name, limits=PATIENT, workers=1) as pool:
        results = pool.imap(paths)
        first = next(results)
        # The caller is "embedding" now: every other file must get parsed meanwhile, even
        # though each result is too big to sit in the pipe until the caller asks for it.
        deadline = time.monotonic() + 60
        while not all(p.with_suffix(".done").exists() for p in paths):
            assert time.monotonic() < deadline, "parsing stalled while the caller was busy"
            time.sleep(0.05)
        rest = list(results)
    assert outcome([first, *rest]) == ["ok"] * 4


def test_the_limit_is_on_time_without_progress_so_long_stepwise_work_finishes(tmp_path: Path) -> None:
    # 3.6 s of work in steps of 0.6 s, each reported: longer than the 2 s limit, never
    # 2 s without progress; a hang beside it is still stopped.
    paths = files(tmp_path, "steps.txt", "hang.txt")
    with ParsePool(by_name, limits=LIMITS, workers=2) as pool:
        results = list(pool.imap(paths))
    assert outcome(results) == ["ok", "parsing took longer than 2 s (RAG_PARSE_TIMEOUT), stopped"]
    assert results[0].seconds > LIMITS.timeout
