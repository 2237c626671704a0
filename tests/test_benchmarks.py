"""The benchmark scripts still run (tiny sizes): a change to the API they drive shows here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_scale_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/scale.py", "--sizes", "2000,4000", "--queries", "5", "--catchup", "0"],
        cwd=ROOT,
        env={**os.environ, "RAG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith(("2,000", "4,000"))]
    assert [row[0] for row in rows] == ["2,000", "4,000"]
    assert all(float(row[7]) > 0 for row in rows)  # dense p50, in ms
    assert "peak RSS" in result.stdout
