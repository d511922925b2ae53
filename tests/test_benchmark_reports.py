"""The benchmarks' command lines: they never write over an existing report unless told to
(--overwrite), and they refuse counts that would leave nothing to measure."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["bench_sa.py", "bench_train_cpu.py", "bench_compile_cpu.py", "profile_train_cpu.py",
           "time_to_accuracy.py", "sa_overhead_cpu.py", "triton_kernels.py", "gpu_smoke.py", "grade_class.py"]


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
                                          ("page_faults_cpu.py", "--steps"), ("sa_kernels_cpu.py", "--repeats"),
                                          ("sa_overhead_cpu.py", "--rounds"), ("sa_overhead_cpu.py", "--steps")])
def test_a_count_below_one_is_refused_naming_the_value(script, flag):
    done = run(script, flag, "0")
    assert done.returncode == 2
    assert f"{flag}=0" in done.stderr and "must" in done.stderr and "at least 1" in done.stderr


@pytest.mark.parametrize("text, says", [(None, "no such .py file"), ("raise ValueError('broken')", "ValueError: broken"),
                                        ("x = 1", "not a version of sa_torch/fused/cpu.py")])
def test_sa_overhead_refuses_kernels_that_are_not_a_fused_cpu_module(tmp_path, text, says):
    kernels = tmp_path / "kernels.py"
    if text is not None:
        kernels.write_text(text)
    done = run("sa_overhead_cpu.py", "--kernels", str(kernels))
    assert done.returncode != 0 and says in done.stderr, done.stderr


def test_sa_overhead_splits_sa_extra_time_and_times_other_kernels(tmp_path):
    """A tiny run with a copy of the current kernels as the 'other' ones: every variant is timed
    and the split adds up (bookkeeping + maps + arithmetic = in all, per round, so medians are close)."""
    kernels = tmp_path / "fused_cpu_copy.py"
    kernels.write_text((BENCHMARKS.parent / "sa_torch" / "fused" / "cpu.py").read_text())
    (tmp_path / "cpu.c").write_text((BENCHMARKS.parent / "sa_torch" / "fused" / "cpu.c").read_text())
    report = tmp_path / "overhead.md"
    done = run("sa_overhead_cpu.py", "--rounds", "1", "--steps", "1", "--warmup", "1", "--batch-size", "4",
               "--kernels", str(kernels), "--out", str(report))
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    for variant in ("none", "sa-bookkeeping", "sa-maps", "sa", "sa-kernels"):
        assert f"| {variant} |" in text
    parts = {}
    for line in text.splitlines():
        if line.startswith("- ") and line.endswith(" ms") and "):" in line:
            parts[line[2:].split(" (")[0]] = float(line.rsplit(": ", 1)[1][:-3])
    assert set(parts) == {"bookkeeping", "fresh maps", "arithmetic", "in all", "the other kernels"}
    assert parts["bookkeeping"] + parts["fresh maps"] + parts["arithmetic"] == pytest.approx(parts["in all"], abs=0.15)
