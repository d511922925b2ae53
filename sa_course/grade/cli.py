"""The command line: ``python -m sa_course.grade [notebooks or folders]``, or ``--class DIR``
(:mod:`~.class_run`).

Exit status: 0 when every notebook passes (with ``--class``: every student passes every
exercise), 1 when one does not (fail, not attempted, error, timeout; with ``--class`` also an
exercise not handed in or a student folder skipped), 2 for a usage error (a missing path, an
existing gradebook without ``--overwrite``, notebooks named together with ``--class``, a bad
points file): nothing graded, nothing written; 3 when the grader itself failed on a notebook
(grader-error).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from sa_course.cli.parser import Parser

from . import class_run, feedback, gradebook, gradescope, points, report, sandbox, tags
from .classroom import Student, sha256
from .runner import Options, Row, grade_notebook

EXIT_PASS, EXIT_NOT_YET, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3
EPILOG = ("exit status: 0 every notebook passed (with --class: every student passed every exercise); 1 graded, "
          "and some notebook did not pass (with --class: or an exercise was not handed in, or a student folder "
          "was skipped); 2 usage error: nothing graded, nothing written; 3 the grader itself failed on a "
          "notebook (grader-error: grade it again).")


class _Default(list):
    """The default notebook list, told apart from the same list typed on the command line."""


DEFAULT_PATHS = _Default(["exercises"])


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


def grade_all(paths: list[Path], options: Options, jobs: int, progress=None) -> list[Row]:
    """Grade notebooks, ``jobs`` at a time; every notebook gets its row, whatever happens, in the
    order given. ``progress(row)`` is called as each one is done."""
    def one(path: Path) -> Row:
        try:
            return tags.explain(grade_notebook(path, options=options), options.strict)
        except BaseException as exc:          # a last guard: the batch always finishes
            return Row(path.stem, str(path), "grader-error", 0, 0, f"the grader failed: {type(exc).__name__}: {exc}")
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {pool.submit(one, path): i for i, path in enumerate(paths)}
        rows = [None] * len(paths)
        for future in as_completed(futures):
            rows[futures[future]] = future.result()
            if progress is not None:
                progress(rows[futures[future]])
        return rows


def _say(text: str, width: int) -> None:
    """Print a line of the grader's own, wrapped at word boundaries to the terminal's width."""
    print("\n".join(report.wrapped(text, width)))


def exit_code(rows: list[Row]) -> int:
    if any(r.status == "grader-error" for r in rows):
        return EXIT_GRADER
    return EXIT_PASS if all(r.status == "pass" for r in rows) else EXIT_NOT_YET


def _feedback(rows: list[Row], folder: Path, table, strict: bool) -> None:
    """A feedback page (Markdown and HTML) per notebook graded, named after the notebook."""
    for row in rows:
        stem = Path(row.path).stem
        res = gradebook.Result(Student(stem), {row.exercise: row}, {row.exercise: table.get(row.exercise, {})}, stem)
        gradebook.atomic_write(folder / f"{stem}.md", feedback.markdown(res, strict))
        gradebook.atomic_write(folder / f"{stem}.html", feedback.page(res, strict))


def _arguments(parser) -> None:
    parser.add_argument("paths", nargs="*", default=DEFAULT_PATHS, help="notebooks or folders (default: exercises/)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per notebook for its cells and checks (default 60)")
    parser.add_argument("--report", default="grade-report.json", help="JSON report path (default grade-report.json)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="notebooks graded at once")
    parser.add_argument("--memory", type=float, default=4.0, metavar="GIB", help="address-space limit per kernel (default 4)")
    parser.add_argument("--strict", action="store_true", help="hide the exercise's reference from the kernel (instructors; "
                                                              "learners: grade as your instructor will)")
    parser.add_argument("--points", metavar="FILE", help="points per check, a TOML or JSON file (docs/instructors.md; "
                                                         "default: the course's)")
    parser.add_argument("--feedback", metavar="DIR", help="a feedback page per student (with --class; default "
                                                          "feedback/) or per notebook, in Markdown and HTML")
    group = parser.add_argument_group("a class (instructors; see docs/instructors.md)")
    group.add_argument("--class", dest="class_dir", metavar="DIR", help="grade DIR/<student>/*.ipynb")
    group.add_argument("--only", metavar="STUDENT", help="with --class: grade this student folder only, and replace "
                                                         "its row of the gradebook (the others are kept)")
    group.add_argument("--gradebook", default="gradebook.csv", help="the CSV (default gradebook.csv)")
    group.add_argument("--reports", default="grade-reports", help="one JSON per student (default grade-reports/)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing gradebook, reports and pages "
                                                                "(copied to grade-backups/<time>/ first)")
    group.add_argument("--lms-csv", metavar="PATH", help="also write the totals for the LMS, with the ids of --lms-ids")
    group.add_argument("--lms-ids", metavar="MAP.csv", help="with --lms-csv: a CSV with columns student (the folder) "
                                                            "and id (the LMS's)")


def _check(args, parser) -> None:
    """Refuse what cannot be meant, before anything runs (exit 2, one line)."""
    if args.timeout <= 0:
        parser.error(f"--timeout={args.timeout} must be positive")
    if args.memory <= 0:
        parser.error(f"--memory={args.memory} must be positive")
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs} must be at least 1")
    if args.class_dir and args.paths is not DEFAULT_PATHS:
        parser.error(f"--class {args.class_dir} grades every student folder in it: leave out the notebooks "
                     f"({' '.join(args.paths)[:60]}), or pass --only STUDENT to grade one student")
    needs_class = [flag for flag, value in (("--only", args.only), ("--lms-csv", args.lms_csv)) if value]
    if needs_class and not args.class_dir:
        parser.error(f"{needs_class[0]} goes with --class DIR")
    if bool(args.lms_csv) != bool(args.lms_ids):
        parser.error("--lms-csv PATH and --lms-ids MAP.csv go together: the map gives each student folder its LMS id")


def main(argv=None, prog: str = "python -m sa_course.grade", parser_class=Parser) -> int:
    """The grader's command line; ``sa-course grade`` passes its own name and one-line-error parser."""
    parser = parser_class(prog=prog, description="Grade exercise notebooks in fresh, sandboxed kernels.", epilog=EPILOG)
    _arguments(parser)
    gradescope.add_arguments(parser)
    args = parser.parse_args(argv)
    _check(args, parser)
    if args.gradescope_autograder:
        return gradescope.main(args, parser)
    try:
        table = points.load(args.points)
    except points.PointsError as exc:
        parser.error(f"--points {exc}")
    options = Options(timeout=args.timeout, memory_gib=args.memory, strict=args.strict, points=table)
    iso = sandbox.isolation()
    if args.class_dir:
        args.feedback = args.feedback or "feedback"
        return class_run.run(args, parser, options, iso, grade_all)
    try:
        paths = notebooks(args.paths)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if not paths:
        parser.error(f"no notebooks found in {args.paths}")
    rows = grade_all(paths, options, args.jobs)
    width = report.terminal_width()
    print(report.format_table(rows, width, report.protection(iso)))
    records = [report.row_record(row, report.relative(path), sha256(path)) for row, path in zip(rows, paths)]
    gradebook.atomic_write(Path(args.report), report.json_text(report.report(rows, iso, args.strict, records)))
    if args.feedback:
        _feedback(rows, Path(args.feedback), table, args.strict)
    if iso.level != "bwrap":
        _say(f"note: {iso.describe()}", width)
    _say(report.summary(rows), width)
    return exit_code(rows)
