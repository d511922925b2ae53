"""The kernel's start and its set-up: a failed start is retried and, if it keeps failing, is the
grader's own error; the kernel never comes from a kernelspec; the weaker set-ups still grade."""
import json
import sys
from pathlib import Path

import nbformat
import pytest

from sa_course import grade
from sa_course.grade import kernel, sandbox

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "04_shuffle.ipynb"


def _wrong_copy(tmp_path: Path) -> Path:
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace("return out.copy() if np.shares_memory(out, x) else out, groups",
                                              "return x.copy(), groups")
    path = tmp_path / "04_shuffle.ipynb"
    nbformat.write(nb, path)
    return path


def _failing_starts(monkeypatch, failures: int) -> list:
    """Make the first ``failures`` kernel starts exit at once, as a kernel that cannot bind would."""
    calls, real = [], kernel.program

    def program(connection_file):
        calls.append(connection_file)
        if len(calls) <= failures:
            return [sys.executable, "-c", "import sys; print('simulated start failure'); sys.exit(3)"]
        return real(connection_file)
    monkeypatch.setattr(kernel, "program", program)
    return calls


def test_a_failed_kernel_start_is_retried(monkeypatch):
    calls = _failing_starts(monkeypatch, failures=1)
    row = grade.grade_notebook(SOLUTION)
    assert row.status == "pass", row.message
    assert len(calls) == 2


def test_a_kernel_that_never_starts_is_the_graders_error_not_the_learners(monkeypatch, tmp_path, capsys):
    calls = _failing_starts(monkeypatch, failures=99)
    report = tmp_path / "report.json"
    code = grade.main([str(SOLUTION), "--report", str(report)])
    row = json.loads(report.read_text())["rows"][0]
    assert code == 3 and row["status"] == "grader-error" and row["points"] == 0
    assert "did not start (2 attempts)" in row["message"] and "exited before it answered" in row["message"]
    assert "simulated start failure" in row["message"] and "not your notebook's" in row["message"]
    assert len(calls) == kernel.START_ATTEMPTS
    assert "grader itself failed" in capsys.readouterr().out.splitlines()[-1]


def test_a_kernel_that_does_not_answer_in_time_is_retried_then_the_graders_error(monkeypatch):
    monkeypatch.setattr(kernel, "START_TIMEOUT", 1.0)
    monkeypatch.setattr(kernel, "program", lambda conn: [sys.executable, "-c", "import time; time.sleep(60)"])
    row = grade.grade_notebook(SOLUTION)
    assert row.status == "grader-error" and "did not answer within 1 s" in row.message
    assert row.seconds < 20


def test_a_planted_kernelspec_is_never_used(monkeypatch, tmp_path):
    """Whatever python3 kernelspec the Jupyter path holds, the grader starts its own interpreter."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["false"], "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    assert grade.grade_notebook(SOLUTION).status == "pass"
    assert grade.grade_notebook(_wrong_copy(tmp_path)).status == "fail"


def test_without_bubblewrap_the_grader_still_grades_and_strict_still_hides_the_import(monkeypatch, tmp_path):
    """The weakest set-up (the kernel runs as the grading user): same verdicts; --strict's import hook works
    for a plain import (it is advisory there: docs/instructors.md)."""
    monkeypatch.setattr(sandbox, "_FOUND", sandbox.Isolation("none", sandbox.os.geteuid() == 0, None, "test"))
    copied = tmp_path / "copied"
    copied.mkdir()
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []):
            cell.source = "from sa_numpy import channel_shuffle_forward, channel_shuffle_backward\n"
    nbformat.write(nb, copied / "04_shuffle.ipynb")
    rows = grade.grade_all([SOLUTION, _wrong_copy(tmp_path), copied / "04_shuffle.ipynb"],
                           grade.Options(timeout=60, strict=True), 2)
    assert [r.status for r in rows] == ["pass", "fail", "error"], [r.message for r in rows]
    assert "hidden in --strict grading" in rows[2].message


def test_in_ci_the_sandbox_is_bubblewrap():
    """CI installs bubblewrap (make test runs scripts/ensure_bwrap.sh), so the sandbox tests run there."""
    iso = sandbox.isolation()
    if not sandbox.os.environ.get("CI"):
        pytest.skip(f"not CI; here: {iso.describe()}")
    assert iso.level == "bwrap", iso.describe()
