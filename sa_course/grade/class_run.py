"""Grading a class: ``--class DIR`` (every student) or ``--class DIR --only STUDENT`` (one, in place).

1. :func:`~.classroom.scan` reads the folder: the notebook that counts for each exercise of each
   student, and everything that is not graded, with the reason.
2. Nothing is written over without being asked: without ``--overwrite`` a run that would replace
   the gradebook, a report, a feedback page or the LMS file is refused before grading (exit 2).
   With it, and with ``--only``, every file replaced is first copied to
   ``grade-backups/<UTC time>/`` beside the gradebook.
3. The notebooks are graded ``--jobs`` at a time, with a progress bar on a terminal.
4. Each student gets a report (``reports/<student>.json``) and a feedback page
   (``feedback/<student>.md`` and ``.html``), the gradebook a row per student folder (with
   ``--only``: that student's row replaced, every other line kept), and with ``--lms-csv`` the LMS
   export. Every file is written whole (a temporary file, then a rename); a student whose report
   could not be written still gets a gradebook row, ``grader-error``.

Exit status (also in ``--help`` and docs/instructors.md): 0 every student passed every exercise;
1 graded, and some exercise did not pass or was not handed in (or a folder was skipped);
2 usage (nothing graded, nothing written); 3 the grader itself failed on some notebook or student.
"""
from __future__ import annotations

import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from . import classroom, feedback, gradebook, report
from .gradebook import Result
from .names import file_name, lookalikes, shown
from .runner import Options

EXIT_PASS, EXIT_NOT_YET, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3


def _notes(student: classroom.Student, alike: dict, same: dict) -> list[str]:
    notes = [f"the name reads like {', '.join(shown(o) for o in alike[student.name])}: check the folders"
             ] if student.name in alike else []
    notes += same.get(student.name, [])
    several = [s for s in student.counted.values() if not s.why.startswith("the only")]
    notes += [f"{s.exercise}: counted {s.shown} ({s.why})" for s in several]
    if student.not_graded:
        notes.append(f"{len(student.not_graded)} file{'s' if len(student.not_graded) != 1 else ''} not graded "
                     f"(the report says which, and why)")
    return notes


def _files(res: Result, args) -> list[Path]:
    """The report and feedback pages of one student."""
    base = Path(args.feedback)
    return [Path(args.reports) / f"{res.file}.json", base / f"{res.file}.md", base / f"{res.file}.html"]


def _outputs(results, args) -> list[Path]:
    paths = [Path(args.gradebook)] + [p for res in results for p in _files(res, args)]
    return paths + ([Path(args.lms_csv)] if args.lms_csv else [])


def _grade(flat, options: Options, jobs: int, grade_all) -> list:
    """Grade every (student, submission), with a progress bar when both outputs are terminals."""
    quiet = not (sys.stdout.isatty() and sys.stderr.isatty())
    passed = 0
    with tqdm(total=len(flat), unit="notebook", disable=quiet, file=sys.stderr, dynamic_ncols=True) as bar:
        def done(row):
            nonlocal passed
            passed += row.status == "pass"
            bar.set_postfix_str(f"{passed} pass", refresh=False)
            bar.update(1)
        return grade_all([sub.path for _, sub in flat], options, jobs, progress=done)


def _write_student(res: Result, args, iso, strict: bool, records: dict) -> None:
    data = report.student_report(res, iso, strict, records)
    json_path, md_path, html_path = _files(res, args)
    gradebook.atomic_write(json_path, report.json_text(data))
    gradebook.atomic_write(md_path, feedback.markdown(res, strict))
    gradebook.atomic_write(html_path, feedback.page(res, strict))


def _say(text: str, width: int) -> None:
    print("\n".join(report.wrapped(text, width)))


def summary(results: list[Result]) -> str:
    """One line: students, points (the gradebook's), and what did not pass, counted per status."""
    counts = {}
    for res in results:
        for status in [r.status for r in res.rows.values()] + ["missing"] * len(res.missing) * (not res.student.skipped):
            counts[status] = counts.get(status, 0) + 1
        if res.student.skipped:
            counts["folders skipped"] = counts.get("folders skipped", 0) + 1
    passed = sum(r.status == "pass" for r in results)
    total, most = report.total(r.total for r in results), report.total(r.max for r in results)
    line = (f"{len(results)} student{'s' if len(results) != 1 else ''}, {passed} with every exercise passed; "
            f"{total}/{most} points, as in the gradebook; {counts.pop('pass', 0)} exercises pass.")
    return line + (" Not yet: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "." if counts else "")


def run(args, parser, options: Options, iso, grade_all) -> int:
    folder = Path(args.class_dir)
    if not folder.is_dir():
        parser.error(f"--class {shown(str(folder))}: not a folder")
    room = classroom.scan(folder)
    own = {os.path.realpath(p) for p in (args.reports, args.feedback, Path(args.gradebook).parent / "grade-backups")}
    room.not_graded += [(s.shown, "not graded: the grader's own output folder") for s in room.students
                        if os.path.realpath(room.folder / s.name) in own]
    room.students = [s for s in room.students if os.path.realpath(room.folder / s.name) not in own]
    if not room.students:
        parser.error(f"--class {shown(str(folder))}: no student folders in it (DIR/<student>/*.ipynb)")
    alike = lookalikes([s.name for s in room.students])
    results = [Result(s, {}, options.points, file_name(s.name, s.name in alike)) for s in room.students]
    if args.only is not None:
        results = [r for r in results if args.only in (r.student.name, r.student.shown)]
        if not results:
            parser.error(f"--only {shown(args.only)}: no student folder of that name in {shown(str(folder))}")
        if not Path(args.gradebook).is_file():
            parser.error(f"--only: no gradebook at {args.gradebook} to update: grade the whole class first")
    ids = None
    if args.lms_csv:
        try:
            ids = gradebook.read_ids(Path(args.lms_ids))
        except (OSError, ValueError, IndexError) as exc:
            parser.error(f"--lms-ids {args.lms_ids}: {exc}")
    replaced = [p for p in _outputs(results, args) if p.exists()]
    if replaced and not (args.overwrite or args.only is not None):
        parser.error(f"would overwrite {', '.join(shown(str(p)) for p in replaced[:3])}{' ...' if len(replaced) > 3 else ''}; "
                     f"pass --overwrite (a copy of each goes to grade-backups/), or choose --gradebook, --reports, "
                     f"--feedback elsewhere")
    flat = [(res, sub) for res in results for sub in res.student.counted.values()]
    for (res, sub), row in zip(flat, _grade(flat, options, args.jobs, grade_all)):
        res.rows[sub.exercise] = row
    if replaced:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        kept = Path(args.gradebook).parent / "grade-backups" / stamp
        gradebook.backup(replaced, kept)
    return _finish(room, results, args, options, iso, ids, replaced and kept)


def _finish(room, results, args, options, iso, ids, kept) -> int:
    same = classroom.identical(room.students)
    alike = lookalikes([s.name for s in room.students])
    for res in results:
        res.rows = {e: res.rows[e] for e in res.table if e in res.rows}
        res.notes = _notes(res.student, alike, same)
        try:
            records = {e: report.row_record(row, res.student.counted[e].shown, res.student.counted[e].sha256)
                       for e, row in res.rows.items()}
            _write_student(res, args, iso, options.strict, records)
        except Exception as exc:                    # the student still gets a gradebook row
            traceback.print_exc(file=sys.stderr)
            res.error = f"the grader failed writing this student's report ({type(exc).__name__})"
            res.notes.append(res.error)
    book = Path(args.gradebook)
    text = gradebook.merge(book.read_text(encoding="utf-8"), results[0]) if args.only is not None \
        else gradebook.gradebook(results)
    gradebook.atomic_write(book, text)
    width = report.terminal_width()
    print(report.class_table(results, width, report.protection(iso)))
    for path, why in room.not_graded:
        _say(f"{path}: {why}", width)
    if ids is not None:
        lms_text, missing = gradebook.lms(text, ids)
        gradebook.atomic_write(Path(args.lms_csv), lms_text)
        for line in missing:
            _say(f"LMS: {line}", width)
        _say(f"LMS file: {args.lms_csv} ({lms_text.count(chr(10)) - 1} students)", width)
    _say(f"gradebook: {book}, reports: {args.reports}/, feedback: {args.feedback}/"
         + (f", the files replaced copied to {kept}/" if kept else ""), width)
    passed = sum(r.status == "pass" for r in results)
    _say(summary(results), width)
    if any(r.status == "grader-error" for r in results):
        return EXIT_GRADER
    return EXIT_PASS if passed == len(results) else EXIT_NOT_YET
