"""The command line: ``python -m sa_course.grade [notebooks or folders]``, or ``--class DIR``.

Exit status: 0 when every notebook passes, 1 when one does not (fail, not attempted,
error, timeout), 2 for a usage error (a missing path, an existing gradebook without
``--overwrite``), 3 when the grader itself failed on a notebook (grader-error).
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import gradescope, report, sandbox
from .runner import Options, Row, grade_notebook

EXIT_PASS, EXIT_NOT_YET, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3


def notebooks(paths) -> list[Path]:
    """Notebook files named by paths (files, or folders searched for *.ipynb), each file once:
    the same file named twice, through another spelling of its path or a link, counts once."""
    found, seen = [], set()
    for p in map(Path, paths):
        if p.is_dir():
            candidates = sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.exists():
            candidates = [p]
        else:
            raise FileNotFoundError(f"{p} does not exist")
        for q in candidates:
            try:
                info = q.stat()
                key = (info.st_dev, info.st_ino)
            except OSError:
                key = os.path.realpath(q)
            if key not in seen:
                seen.add(key)
                found.append(q)
    return found


def grade_all(paths: list[Path], options: Options, jobs: int) -> list[Row]:
    """Grade notebooks, ``jobs`` at a time; every notebook gets its row, whatever happens."""
    def one(path: Path) -> Row:
        try:
            return grade_notebook(path, options=options)
        except BaseException as exc:          # a last guard: the batch always finishes
            return Row(path.stem, str(path), "grader-error", 0, 0, f"the grader failed: {type(exc).__name__}: {exc}")
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, paths))


def _say(text: str, width: int) -> None:
    """Print a line of the grader's own, wrapped at word boundaries to the terminal's width."""
    print("\n".join(report.wrapped(text, width)))


def exit_code(rows: list[Row]) -> int:
    if any(r.status == "grader-error" for r in rows):
        return EXIT_GRADER
    return EXIT_PASS if all(r.status == "pass" for r in rows) else EXIT_NOT_YET


def _students(folder: Path) -> dict[str, list[Path]]:
    """DIR/<student>/*.ipynb; a notebook that is a link out of its student's folder is refused."""
    students = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        own = sub.resolve()
        students[sub.name] = [p for p in notebooks([sub]) if p.resolve().is_relative_to(own)]
    return students


def _class(args, parser, options: Options, iso) -> int:
    folder = Path(args.class_dir)
    if not folder.is_dir():
        parser.error(f"--class {folder}: not a folder")
    students = _students(folder)
    if not students:
        parser.error(f"--class {folder}: no student folders in it")
    gradebook, reports = Path(args.gradebook), Path(args.reports)
    targets = [gradebook] + [reports / f"{name}.json" for name in students]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        parser.error(f"would overwrite {', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}; "
                     f"pass --overwrite, or choose --gradebook/--reports elsewhere")
    flat = [(name, p) for name, paths in students.items() for p in paths]
    rows = grade_all([p for _, p in flat], options, args.jobs)
    by_student = {name: [] for name in students}
    for (name, _), row in zip(flat, rows):
        by_student[name].append(row)
    reports.mkdir(parents=True, exist_ok=True)
    for name, student_rows in by_student.items():
        data = {"student": name, "status": report.student_status(student_rows),
                **report.report(student_rows, iso.describe(), options.strict)}
        report.write_json(reports / f"{name}.json", data, overwrite=args.overwrite)
    with open(gradebook, "w" if args.overwrite else "x", newline="") as f:
        f.write(report.gradebook(by_student))
    width = report.terminal_width()
    print(report.format_table(rows, width, report.protection(iso)))
    passed = sum(report.student_status(r) == "pass" for r in by_student.values())
    _say(f"gradebook: {gradebook}, reports: {reports}/ (sandbox: {iso.describe()})", width)
    _say(f"{len(students)} students, {passed} with every exercise passed. {report.summary(rows)}", width)
    return EXIT_GRADER if any(r.status == "grader-error" for r in rows) else EXIT_PASS


def main(argv=None, prog: str = "python -m sa_course.grade", parser_class=argparse.ArgumentParser) -> int:
    """The grader's command line; ``sa-course grade`` passes its own name and one-line-error parser."""
    parser = parser_class(prog=prog, description="Grade exercise notebooks in fresh, sandboxed kernels.")
    parser.add_argument("paths", nargs="*", default=["exercises"], help="notebooks or folders (default: exercises/)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per notebook for its cells and checks (default 60)")
    parser.add_argument("--report", default="grade-report.json", help="JSON report path (default grade-report.json)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="notebooks graded at once")
    parser.add_argument("--memory", type=float, default=4.0, metavar="GIB", help="address-space limit per kernel (default 4)")
    parser.add_argument("--strict", action="store_true", help="hide the exercise's reference from the kernel (instructors)")
    parser.add_argument("--class", dest="class_dir", metavar="DIR", help="grade DIR/<student>/*.ipynb (instructors)")
    parser.add_argument("--gradebook", default="gradebook.csv", help="with --class: the CSV (default gradebook.csv)")
    parser.add_argument("--reports", default="grade-reports", help="with --class: one JSON per student (default grade-reports/)")
    parser.add_argument("--overwrite", action="store_true", help="with --class: replace an existing gradebook and reports")
    gradescope.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout={args.timeout} must be positive")
    if args.memory <= 0:
        parser.error(f"--memory={args.memory} must be positive")
    if args.gradescope_autograder:
        return gradescope.main(args, parser)
    options = Options(timeout=args.timeout, memory_gib=args.memory, strict=args.strict)
    iso = sandbox.isolation()
    if args.class_dir:
        return _class(args, parser, options, iso)
    try:
        paths = notebooks(args.paths)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if not paths:
        parser.error(f"no notebooks found in {args.paths}")
    rows = grade_all(paths, options, args.jobs)
    width = report.terminal_width()
    print(report.format_table(rows, width, report.protection(iso)))
    report.write_json(Path(args.report), report.report(rows, iso.describe(), args.strict))
    if iso.level != "bwrap":
        _say(f"note: {iso.describe()}", width)
    _say(report.summary(rows), width)
    return exit_code(rows)
