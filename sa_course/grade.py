"""Grade exercise notebooks headless, each in a fresh kernel, on a copy.

    python -m sa_course.grade                      # every notebook in exercises/
    python -m sa_course.grade exercises/02_channel_gate.ipynb --timeout 60
    python -m sa_course.grade --report my-grades.json

For each notebook the grader copies it to a scratch directory (your file is only read),
runs its code cells top to bottom in a new kernel, skipping the check cells, and then runs
the exercise's checks from :mod:`sa_course.checks` on the functions your cells defined.
It prints one row per notebook:

    exercise | status | points | message

status is ``pass``, ``fail`` (a check found a wrong result), ``not attempted`` (a function
still raises NotImplementedError), ``error`` (your code raised, did not parse, exited or
killed the kernel) or ``timeout`` (the notebook ran longer than ``--timeout`` seconds).
It writes the same as JSON to ``--report`` (default grade-report.json) and exits 0 only
when every notebook passes. Nothing a notebook does can crash the grader: each notebook
runs in its own worker process, with a hard time limit and a cap on captured output.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .checks import EXERCISES

OUTPUT_CAP = 100_000          # characters of printed output kept per cell
GRACE_S = 60                  # kernel start and shutdown, on top of the notebook's timeout
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_LINE = re.compile(r"(?:Cell In\[\d+\]|File <[^>]*>|input-\d+-\w+), line (\d+)")


@dataclass
class Row:
    """One graded notebook."""
    exercise: str
    path: str
    status: str
    points: int
    max_points: int
    message: str
    seconds: float = 0.0


def _read(path: Path):
    return nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)


def exercise_of(path: Path, nb) -> str | None:
    """The exercise a notebook is for: its sa_course metadata, else its file name's number."""
    meta = nb.metadata.get("sa_course", {}) if nb is not None else {}
    if meta.get("exercise") in EXERCISES:
        return meta["exercise"]
    return next((e for e in EXERCISES if path.name[:3] == e[:3]), None)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and "check" not in c.metadata.get("tags", [])]


def _is_stub(function: ast.FunctionDef) -> bool:
    """A function whose body is only a docstring and ``raise NotImplementedError(...)``."""
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return (len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None
            and "NotImplementedError" in ast.unparse(body[0].exc))


def untouched(nb, exercise: str) -> bool:
    """True when every function of the exercise is defined once, as the stub it started as.
    Such a notebook is "not attempted" without starting a kernel."""
    defs = {}
    for cell in _code_cells(nb):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:      # magics, or a learner's syntax error: let the kernel judge
            return False
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                defs.setdefault(node.name, []).append(node)
    names = [n for _, names in EXERCISES[exercise].checks for n in names]
    return all(len(defs.get(n, [])) == 1 and _is_stub(defs[n][0]) for n in names)


def _location(traceback_lines) -> str:
    text = ANSI.sub("", "\n".join(traceback_lines or []))
    lines = CELL_LINE.findall(text)
    return f" (line {lines[-1]})" if lines else ""


def _first_lines(text: str, n: int = 3) -> str:
    return "\n".join(text.strip().splitlines()[:n])


def _classify(ename: str, evalue: str, where: str, in_check: bool) -> tuple[str, str]:
    """(status, message) for an exception raised in a learner cell or in the checks."""
    if ename in ("NotAttempted", "NotImplementedError"):
        return "not attempted", _first_lines(evalue) if in_check else f"{where}: {_first_lines(evalue)}"
    if in_check:
        return ("fail" if ename == "AssertionError" else "error"), _first_lines(evalue)
    if ename == "SystemExit":
        return "error", (f"{where} called sys.exit(): remove it; a notebook must run top to bottom "
                         f"without stopping the kernel")
    return "error", f"{where} raised {ename}: {_first_lines(evalue, 2)}"


class _CappedClient(NotebookClient):
    """nbclient with a cap on each cell's captured output and one time limit for the notebook."""

    def __init__(self, nb, timeout: float, cwd: str):
        super().__init__(nb, kernel_name="python3", record_timing=False, allow_errors=False,
                         shutdown_kernel="immediate", resources={"metadata": {"path": cwd}})
        self.chars, self.budget, self.deadline = {}, timeout, None
        self.timeout_func = self.remaining

    def remaining(self, cell) -> int:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.budget
        return max(1, int(self.deadline - time.monotonic() + 0.999))

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream":
            before = self.chars.get(cell_index, 0)
            self.chars[cell_index] = before + len(msg["content"].get("text", ""))
            if before > OUTPUT_CAP:
                return None
            if self.chars[cell_index] > OUTPUT_CAP:
                msg["content"]["text"] = f"\n[output cut by the grader after {OUTPUT_CAP} characters]\n"
        return super().output(outs, msg, display_id, cell_index)


def _run_in_kernel(copy: Path, exercise: str, timeout: float) -> tuple[str, str]:
    """Run one notebook copy and its checks; (status, message). Called in the worker process."""
    nb = _read(copy)
    cells = _code_cells(nb)
    labels = [f"code cell {i}" for i in range(1, len(cells) + 1)] + ["the checks"]
    run = nbformat.v4.new_notebook(metadata=nb.metadata)
    run.cells = [nbformat.v4.new_code_cell(c.source) for c in cells]
    run.cells.append(nbformat.v4.new_code_cell(
        f"from sa_course.checks import run_exercise as _sa_run_exercise\n"
        f"_sa_run_exercise({exercise!r}, globals())"))
    client = _CappedClient(run, timeout, str(copy.parent))
    current = lambda: labels[max([i for i, c in enumerate(run.cells) if c.get("execution_count")], default=0)]
    try:
        client.execute()
    except CellTimeoutError:
        return "timeout", (f"stopped after {timeout:g} s, in {current()}: an endless loop, or work too "
                           f"slow for the time limit (--timeout)")
    except DeadKernelError:
        return "error", (f"the kernel died in {current()}: exit(), os._exit(), a crash or running out "
                         f"of memory. A notebook must run top to bottom without stopping the kernel")
    except CellExecutionError as exc:
        errors = [(i, o.traceback) for i, c in enumerate(run.cells) for o in c.outputs if o.output_type == "error"]
        index, tb = errors[0] if errors else (len(cells), [])
        where = labels[index] + _location(tb)
        return _classify(exc.ename, exc.evalue, where, in_check=index == len(cells))
    praise = "".join(o.get("text", "") for o in run.cells[-1].outputs if o.output_type == "stream")
    return "pass", praise.strip() or "all checks passed"


def _worker(copy: Path, exercise: str, timeout: float, result: Path) -> None:
    try:
        status, message = _run_in_kernel(copy, exercise, timeout)
    except Exception as exc:   # a notebook nbclient cannot run at all: report it, never crash
        status, message = "error", f"could not run the notebook: {type(exc).__name__}: {exc}"
    result.write_text(json.dumps({"status": status, "message": message}))


def _max_points(exercise: str | None) -> int:
    return EXERCISES[exercise].points if exercise else 0


def grade_notebook(path, timeout: float = 60) -> Row:
    """Grade one notebook in a worker process and a fresh kernel; never raises for its content."""
    path = Path(path)
    start = time.monotonic()
    row = lambda exercise, status, message: Row(
        exercise or path.stem, str(path), status,
        _max_points(exercise) if status == "pass" else 0, _max_points(exercise), message,
        round(time.monotonic() - start, 1))
    try:
        nb = _read(path)
    except Exception as exc:
        return row(exercise_of(path, None), "error", f"not a readable notebook: {type(exc).__name__}: {exc}")
    exercise = exercise_of(path, nb)
    if exercise is None:
        return row(None, "error", f"not an exercise notebook: no sa_course metadata, and the file name "
                                  f"does not start like one of {list(EXERCISES)}")
    if untouched(nb, exercise):
        return row(exercise, "not attempted", "every function still raises NotImplementedError")
    with tempfile.TemporaryDirectory(prefix="sa-grade-") as tmp:
        copy, result = Path(tmp) / path.name, Path(tmp) / "result.json"
        shutil.copyfile(path, copy)
        cmd = [sys.executable, "-m", "sa_course.grade", "--worker", str(copy), "--exercise", exercise,
               "--timeout", str(timeout), "--result", str(result)]
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout + GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return row(exercise, "timeout", f"stopped after {timeout + GRACE_S:g} s: the kernel did not respond")
        if not result.exists():
            tail = log.decode(errors="replace").strip().splitlines()[-3:]
            return row(exercise, "error", "the grader's worker failed: " + " / ".join(tail))
        outcome = json.loads(result.read_text())
    return row(exercise, outcome["status"], outcome["message"])


def notebooks(paths) -> list[Path]:
    """Notebook files named by paths (files, or folders searched for *.ipynb)."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return found


def format_table(rows: list[Row], width: int = 100) -> str:
    """The table the grader prints: exercise (the file's name) | status | points | message."""
    names = [Path(r.path).stem for r in rows]
    name_w = max([len("exercise"), *map(len, names)])
    head = f"{'exercise':<{name_w}}  {'status':<13}  {'points':>6}  message"
    pad = " " * (name_w + 2 + 13 + 2 + 6 + 2)
    lines = [head, "-" * min(width, len(head) + 60)]
    for name, r in zip(names, rows):
        msg = [part for line in r.message.splitlines()[:3]
               for part in textwrap.wrap(line, max(40, width - len(pad)))][:6] or [""]
        lines.append(f"{name:<{name_w}}  {r.status:<13}  {f'{r.points}/{r.max_points}':>6}  {msg[0]}")
        lines += [pad + m for m in msg[1:]]
    total, most = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines.append(f"{'total':<{name_w}}  {'':<13}  {f'{total}/{most}':>6}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sa_course.grade",
                                     description="Grade exercise notebooks in fresh kernels.")
    parser.add_argument("paths", nargs="*", default=["exercises"], help="notebooks or folders (default: exercises/)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per notebook (default 60)")
    parser.add_argument("--report", default="grade-report.json", help="JSON report path (default grade-report.json)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="notebooks graded at once")
    for hidden in ("--worker", "--exercise", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(Path(args.worker), args.exercise, args.timeout, Path(args.result))
        return 0
    if args.timeout <= 0:
        parser.error(f"--timeout={args.timeout} must be positive")
    try:
        paths = notebooks(args.paths)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if not paths:
        parser.error(f"no notebooks found in {args.paths}")
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda p: grade_notebook(p, args.timeout), paths))
    print(format_table(rows, max(100, shutil.get_terminal_size((100, 20)).columns)))
    report = {"passed": all(r.status == "pass" for r in rows),
              "points": sum(r.points for r in rows), "max_points": sum(r.max_points for r in rows),
              "rows": [asdict(r) for r in rows]}
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
