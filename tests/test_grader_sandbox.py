"""The kernel's start and its set-up: a failed start is retried and, if it keeps failing, is the
grader's own error; the kernel never comes from a kernelspec; the weaker set-ups still grade; the
scratch space is removed whatever it holds, and has a size limit."""
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from sa_course import grade
from sa_course.grade import cgroup, kernel, sandbox, wire

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
    for a plain import of the reference or of torch (it is advisory there: docs/instructors.md)."""
    monkeypatch.setattr(sandbox, "_FOUND", sandbox.Isolation("none", sandbox.os.geteuid() == 0, None, "test"))
    imports = {"copied": "from sa_numpy import channel_shuffle_forward, channel_shuffle_backward\n",
               "torch": "import torch.nn.functional\n"}
    for name, source in imports.items():
        (tmp_path / name).mkdir()
        nb = nbformat.read(SOLUTION, as_version=4)
        for cell in nb.cells:
            if "exercise" in cell.metadata.get("tags", []):
                cell.source = source
        nbformat.write(nb, tmp_path / name / "04_shuffle.ipynb")
    rows = grade.grade_all([SOLUTION, _wrong_copy(tmp_path), *(tmp_path / n / "04_shuffle.ipynb" for n in imports)],
                           grade.Options(timeout=60, strict=True), 2)
    assert [r.status for r in rows] == ["pass", "fail", "error", "error"], [r.message for r in rows]
    assert "hidden in --strict grading" in rows[2].message
    assert "torch is not available in --strict grading" in rows[3].message


def test_a_failure_of_the_graders_own_end_of_a_call_is_a_grader_error(monkeypatch):
    """Not "your function raised TypeError": the learner is not blamed for the grader's failure."""
    def broken(self, value, depth=0):
        raise TypeError("simulated: the checks cannot send this")
    monkeypatch.setattr(wire.Remote, "encode", broken)
    row = grade.grade_notebook(SOLUTION)
    assert row.status == "grader-error" and "simulated" in row.message and "not your notebook's" in row.message


def test_in_ci_the_sandbox_is_bubblewrap():
    """CI installs bubblewrap (make test runs scripts/ensure_bwrap.sh), so the sandbox tests run there."""
    iso = sandbox.isolation()
    if not sandbox.os.environ.get("CI"):
        pytest.skip(f"not CI; here: {iso.describe()}")
    assert iso.level == "bwrap", iso.describe()


# ---------------------------------------------------------------- the scratch space: removal and size limit

REMOVE_AS_USER = """
import os, sys
from pathlib import Path
from sa_course.grade.scratch import remove_tree
top, outside = Path(sys.argv[1]), Path(sys.argv[2])
os.mkdir(top)
fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
for _ in range(1500):                       # deeper than a path may be long
    os.mkdir("d", dir_fd=fd)
    fd, above = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
    os.close(above)
os.mkdir("locked", dir_fd=fd)
os.close(os.open("locked/file", os.O_CREAT | os.O_WRONLY, 0, dir_fd=fd))
os.chmod("locked", 0, dir_fd=fd)
os.close(os.open("unreadable", os.O_CREAT | os.O_WRONLY, 0, dir_fd=fd))
os.mkfifo("fifo", dir_fd=fd)
os.symlink(outside, "out", dir_fd=fd)
os.symlink(outside / "keep.txt", "file-out", dir_fd=fd)
os.chmod(fd, 0o500)
os.close(fd)
print(remove_tree(top), os.path.lexists(top))
"""


def _without_capabilities():
    """In the child, before exec: no capability survives exec, so root obeys permissions like any user."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    for cap in range(64):
        prctl(24, cap)                       # PR_CAPBSET_DROP


def test_removal_takes_apart_any_tree_and_never_follows_a_link(tmp_path):
    """1,500 folders deep, folders and files without permissions, a fifo, links out: all removed by a
    process that obeys permissions, what the links point to untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    done = subprocess.run([sys.executable, "-c", REMOVE_AS_USER, str(tmp_path / "tree"), str(outside)],
                          preexec_fn=_without_capabilities if os.geteuid() == 0 else None,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stderr
    assert (outside / "keep.txt").read_text() == "keep"


def test_a_kernel_fills_at_most_its_scratch_quota(tmp_path):
    """A notebook that asks for 160 MB of files in 5 files gets at most the quota (32 MB here, 512 MB
    by default); where no quota can be set (not root), the row and the protection line say so."""
    if os.geteuid() != 0:
        pytest.skip("a scratch quota needs root (a tmpfs per notebook)")
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []):
            cell.source = ("import os\nkept = 0\nfor i in range(5):\n    with open(f'fill{i}', 'wb') as f:\n"
                           "        try:\n            os.posix_fallocate(f.fileno(), 0, 32 << 20)\n"
                           "        except OSError:\n            pass\n    kept += os.stat(f'fill{i}').st_size\n"
                           "raise RuntimeError(f'kept {kept} bytes')\n")
    path = tmp_path / "04_shuffle.ipynb"
    nbformat.write(nb, path)
    row = grade.grade_notebook(path, options=grade.Options(timeout=30, scratch_mib=32))
    assert row.status == "error" and "kept " in row.message, row.message
    kept = int(row.message.split("kept ")[1].split()[0])
    assert kept <= 32 << 20, kept


# ---------------------------------------------------------------- limits: processes, open files, the kernel's cgroup

GREEDY = """
import os
kids, files = [], []
for _ in range(300):
    try:
        kids.append(os.posix_spawn("/bin/sleep", ["sleep", "60"], {}))
    except OSError:
        break
for _ in range(5000):
    try:
        files.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
for fd in files:
    os.close(fd)
raise RuntimeError(f"processes {len(kids)} files {len(files)}")
"""


def _graded(tmp_path, source: str, **options) -> grade.Row:
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []):
            cell.source = source
    path = tmp_path / "04_shuffle.ipynb"
    nbformat.write(nb, path)
    return grade.grade_notebook(path, options=grade.Options(**{"timeout": 30, **options}))


def test_a_kernel_starts_few_processes_and_opens_few_files(tmp_path):
    """The open-file limit is the grader's own (it was inherited: 20,000 here); the process limit holds
    where the kernel has a uid or a cgroup of its own."""
    row = _graded(tmp_path, GREEDY)
    assert row.status == "error" and "processes " in row.message, row.message
    words = row.message.split("processes ")[1].split()
    processes, files = int(words[0]), int(words[2])
    assert files < sandbox.OPEN_FILES, files
    if sandbox.isolation().root and sandbox.isolation().level != "none" or cgroup.support().pids:
        assert processes < sandbox.PROCESSES, processes


DAEMON = """
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open({pidfile!r}, "w").write(str(os.getpid()))
        os.execve("/bin/sleep", ["sleep", "300"], {{}})      # no environment: no marker to find it by
    os._exit(0)
os.wait()
while not os.path.exists({pidfile!r}):
    pass
"""


def test_the_kernels_cgroup_takes_every_process_it_started_with_it(monkeypatch, tmp_path):
    """Without bubblewrap or a uid of its own, a daemon that clears its environment escaped the marker;
    the kernel's cgroup still holds it, and its removal kills it."""
    found = cgroup.support()
    if found.root is None:
        pytest.skip(f"no cgroup v2 for kernels here: {found.why}")
    monkeypatch.setattr(sandbox, "_FOUND", sandbox.Isolation("none", os.geteuid() == 0, None, "test"))
    pidfile = tmp_path / "daemon.pid"
    session = kernel.KernelSession(sandbox.isolation(), sandbox.Limits(1 << 30, 60))
    try:
        session.start()
        assert session.execute(DAEMON.format(pidfile=str(pidfile)), time.monotonic() + 30).status == "ok"
        daemon = int(pidfile.read_text())
        assert daemon in session.kernel.group.pids()
    finally:
        session.close()
    deadline = time.monotonic() + 20
    while session.kernel.group.path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    assert not session.kernel.group.path.exists()


def test_where_cgroup_v2_has_the_controllers_a_kernels_group_carries_its_limits():
    found = cgroup.support()
    if not found.controllers:
        pytest.skip(f"no cgroup v2 controllers for kernels here: {found.describe()}")
    group = cgroup.Group(found, 3 << 30, sandbox.PROCESSES)
    try:
        read = lambda name: (group.path / name).read_text().strip()
        expected = {"memory": {"memory.max": str(3 << 30), "memory.swap.max": "0"},
                    "cpu": {"cpu.max": f"{cgroup.CPU_PERIOD} {cgroup.CPU_PERIOD}"},
                    "pids": {"pids.max": str(sandbox.PROCESSES)}}
        for name in found.controllers:
            assert {file: read(file) for file in expected[name]} == expected[name]
    finally:
        assert group.remove()
