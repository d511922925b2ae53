"""The benchmarks' command lines: they never write over an existing report unless told to
(--overwrite), and they refuse counts that would leave nothing to measure."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["bench_sa.py", "bench_train_cpu.py", "bench_compile_cpu.py", "profile_train_cpu.py",
           "time_to_accuracy.py"]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=BENCHMARKS.parent)


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_existing_report_is_refused_before_anything_runs(script, tmp_path):
    report = tmp_path / "report.md"
    report.write_text("an earlier run\n")
    extra = [str(tmp_path / "no-run")] if script == "time_to_accuracy.py" else []
    done = run(script, *extra, "--out", str(report))
    assert done.returncode != 0
    assert f"--out {report} exists: pass --overwrite" in done.stderr
    assert report.read_text() == "an earlier run\n"


def test_overwrite_replaces_the_report(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("an earlier run\n")
    done = run("time_to_accuracy.py", str(tmp_path / "no-run"), "--out", str(report), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "No metrics.json" in report.read_text() and "an earlier run" not in report.read_text()


@pytest.mark.parametrize("script, flag", [("bench_compile_cpu.py", "--repeats"), ("bench_compile_cpu.py", "--steps"),
                                          ("page_faults_cpu.py", "--steps"), ("sa_kernels_cpu.py", "--repeats")])
def test_a_count_below_one_is_refused_naming_the_value(script, flag):
    done = run(script, flag, "0")
    assert done.returncode == 2
    assert f"{flag}=0" in done.stderr and "must" in done.stderr and "at least 1" in done.stderr
