"""The one launcher every test server starts through: ready by a line or a probe, stopped
afterwards, and a failed start says what the process printed."""

from __future__ import annotations

import sys

import pytest

from tests.launch import launch


def test_ready_line_is_waited_for_and_the_process_is_stopped_after() -> None:
    script = (
        "import time; print('warming up', flush=True); time.sleep(0.3); print('READY x', flush=True); time.sleep(60)"
    )
    with launch([sys.executable, "-c", script], what="sleeper", ready=lambda line: line.startswith("READY")) as running:
        assert running.ready_line == "READY x\n"
        assert running.output[0] == "warming up\n"
        assert running.process.poll() is None
    assert running.process.poll() is not None


def test_a_probe_can_say_it_is_ready() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with launch([sys.executable, "-c", "import time; time.sleep(60)"], what="sleeper", probe=probe) as running:
        assert len(calls) == 3 and running.ready_line == ""


def test_a_failed_start_shows_its_last_lines_and_exit_status() -> None:
    script = "import sys; print('port 1 is taken'); sys.exit(3)"
    with (
        pytest.raises(RuntimeError, match=r"(?s)broken did not start \(exit status 3\):\nport 1 is taken"),
        launch([sys.executable, "-c", script], what="broken", ready=lambda line: False),
    ):
        pass


def test_a_start_that_takes_too_long_is_stopped() -> None:
    with (
        pytest.raises(RuntimeError, match=r"slow did not start \(still running\)"),
        launch([sys.executable, "-c", "import time; time.sleep(60)"], what="slow", probe=lambda: False, timeout=0.5),
    ):
        pass
