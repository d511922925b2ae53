"""The GPU run's scripts, tried without a GPU: benchmarks/gpu_smoke.py in its tiny configuration
(the kernels in Triton's interpreter) and the bookkeeping of ``benchmarks/gpu_runs.sh fast``
with a stand-in for Python that writes what each step would write (seconds, no training).
What a GPU run must not do: lose a row it measured, fail on an existing folder, overrun its
budget without saying what it skipped."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "benchmarks" / "gpu_smoke.py"


def smoke(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.Popen([sys.executable, str(SMOKE), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_the_smoke_script_refuses_without_cuda_saying_so(tmp_path):
    out, err = smoke("--out", str(tmp_path / "smoke.md")).communicate(timeout=120)
    assert "needs a CUDA GPU" in err and "--tiny" in err
    assert not (tmp_path / "smoke.md").exists()


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_the_tiny_smoke_writes_each_row_as_measured_checks_every_path_and_times_every_kernel(tmp_path):
    report = tmp_path / "smoke.md"
    run = smoke("--tiny", "--dtype", "bfloat16", "--out", str(report))
    deadline = time.monotonic() + 240
    while "| triton |" not in (report.read_text() if report.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    early = report.read_text()
    assert run.poll() is None and "| triton |" in early       # the first row is on disk while the run goes on
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    text = report.read_text()
    assert text == out and text.startswith(early)              # the file holds every printed row
    checks = [line for line in text.splitlines() if line.startswith("| tiny") and line.endswith(" |")
              and any(f"| {path} |" in line for path in ("triton", "eager", "operator"))]
    assert len(checks) == 6                                    # three paths in both layouts
    assert all(line.endswith("| yes | yes |") for line in checks), "\n".join(checks)
    for kernel in ("_forward_kernel", "_backward_kernel", "_param_grads_kernel"):
        assert sum(f"| {kernel} |" in line for line in text.splitlines()) == 2, kernel


FAKE_PYTHON = r'''
import json, os, sys, time
args = sys.argv[1:]
def after(flag):
    return args[args.index(flag) + 1] if flag in args else None
if args[0] == "-c":
    sys.exit(0)
if os.environ.get("FAKE_SLOW") and os.environ["FAKE_SLOW"] in " ".join(args):
    time.sleep(30)
if args[0] == "-m":                                          # a training run: one epoch of metrics
    os.makedirs(after("--out"), exist_ok=True)
    rows = [{"epoch": 1, "test_acc": 0.5, "wall_time": 2.0, "train_time": 1.5}]
    open(os.path.join(after("--out"), "metrics.json"), "w").write(json.dumps(rows))
    sys.exit(0)
if args[0].endswith("time_to_accuracy.py"):
    os.execv(REAL, [REAL, *args])
out = after("--out")
if os.path.exists(out) and "--overwrite" not in args:
    sys.exit(f"--out {out} exists: pass --overwrite to replace it, or choose another path")
models = args[args.index("--attention") + 1:] if "--attention" in args else ["-"]
models = models[:next((i for i, a in enumerate(models) if a.startswith("--")), len(models))]
table = "| model | layout | step (ms) | images/s | warmup (s) |\n|---|---|---:|---:|---:|\n"
open(out, "w").write("- command: fake\n\n" + table + "".join(f"| {m} | channels_last | 1.0 | 512 | 0.5 |\n" for m in models))
'''


def fast(tmp_path, out: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    python = tmp_path / "python"
    python.write_text(f"#!{sys.executable}\nREAL = {sys.executable!r}\n" + FAKE_PYTHON)
    python.chmod(0o755)
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_runs.sh"), "fast", str(out), *extra], cwd=ROOT,
                          env={**os.environ, "PY": str(python), **env}, capture_output=True, text=True, timeout=120)


def test_fast_runs_every_step_and_writes_each_compiled_row(tmp_path):
    out = tmp_path / "run"
    done = fast(tmp_path, out)
    assert done.returncode == 0, done.stderr
    compiled = (out / "step_time_compiled.md").read_text()
    assert "| none | channels_last |" in compiled and "| sa | channels_last |" in compiled
    assert compiled.count("| model | layout |") == 1
    assert (out / "step_time_eager.md").exists() and (out / "gpu_smoke.md").exists()
    assert "| sa-seed0 | 1 |" in (out / "time_to_accuracy.md").read_text()
    assert "skipped" not in done.stderr and "cut" not in done.stderr and "failed" not in done.stderr
    assert "by design" in (out / "notes.md").read_text()


def test_a_second_run_goes_to_a_new_folder_unless_told_to_overwrite(tmp_path):
    out = tmp_path / "run"
    assert fast(tmp_path, out).returncode == 0
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = fast(tmp_path, out)
    assert again.returncode == 0, again.stderr
    assert f"{out} already holds files: writing to {out}-2 instead" in again.stderr
    assert (out.parent / "run-2" / "step_time_compiled.md").exists()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    replaced = fast(tmp_path, out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert not (out.parent / "run-3").exists()


def test_a_step_past_its_time_is_cut_and_the_budget_skips_what_does_not_fit(tmp_path):
    out = tmp_path / "run"
    # steps need at least 30 (smoke), 40 (compiled), 20, 30, 40 (eager) s: after the 6 s cut, less than 40 are left
    done = fast(tmp_path, out, FAKE_SLOW="--attention sa --channels-last on", COMPILED_LIMIT="6", BUDGET="45")
    assert done.returncode == 0, done.stderr
    notes = (out / "notes.md").read_text()
    assert "cut compiled step time of sa after 6 s" in notes
    assert "skipped eager step time" in notes and "skipped eager step time" in done.stderr
    compiled = (out / "step_time_compiled.md").read_text()
    assert "| none | channels_last |" in compiled and "| sa |" not in compiled
    assert json.loads((out / "tta" / "sa-seed0" / "metrics.json").read_text())[0]["epoch"] == 1
