"""Smoke run of the performance benchmark: `python -m bench --quick` completes and writes its
report. It judges no time: the benchmark measures, the machine decides how fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_quick_benchmark_completes_and_writes_its_report(tmp_path: Path) -> None:
    output = tmp_path / "PERFORMANCE.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = output.read_text()
    for heading in (
        "## Machine",
        "## Summary",
        "## 1. Lookup cost",
        "## 2. Fan-out time",
        "## 3. End to end on the local stack",
        "## 4. Cold start",
    ):
        assert heading in report
    # The table printed is the summary written; every measurement produced a row.
    assert "| measurement | result | target |" in run.stdout
    assert "nan" not in report.lower().replace("nanoseconds", "")
