"""What Gradescope runs for every submission: ``python -m sa_course.grade.autograder --root /autograder``.

``run_autograder`` (written by :mod:`~sa_course.grade.gradescope`) calls it with the root Gradescope
gives (``GRADESCOPE_ROOT`` in tests). It reads the instructor's choices from
``ROOT/source/sa-course-autograder.json`` and the points per check from ``ROOT/source/points.json``
(:mod:`~.points`), finds the notebooks under ``ROOT/submission`` (in sub-folders too: students
upload zips; links, hidden folders and ``__MACOSX`` are skipped), matches each to an exercise and
picks one per exercise as class grading does (:func:`~.classroom.exercise_of`,
:func:`~.classroom.choose`), grades them with the grader's ``--strict`` mode, each in a fresh
sandboxed kernel, and writes ``ROOT/results/results.json`` in Gradescope's format (its field names):

- ``score``: the total, the sum of the tests' scores; ``execution_time``: seconds;
- ``output``: the course's version, the protection the grader found (bwrap, setuid or none) and
  every notebook that was not graded, with the reason; ``visibility`` and ``stdout_visibility``:
  the instructor's; ``extra_data``: the audit (time, version, protection) and each graded
  notebook's SHA-256;
- ``tests``: one per exercise of the assignment, in the course's order: ``name``, ``number``,
  ``score`` (per check that passed), ``max_score`` (the exercise's points), ``status`` (``passed``
  or ``failed``), ``output`` (the grader's status and message with its hint, with no reference
  value, as on a strict feedback page: :func:`~.feedback.message`) and ``visibility``. An exercise
  with no notebook scores 0 and says it was not submitted;
- every text is shown as text (``output_format``, ``test_output_format``, ``test_name_format``:
  ``text``), so a file name or message is never read as HTML.

Whatever the submission holds (nothing, a file that is not JSON or too big, a hostile notebook),
results.json is written; if the grader itself fails, it still is, with a message that says so.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from ..checks import EXERCISES
from . import classroom, feedback, notebook, points, report, sandbox
from .cli import grade_all
from .gradescope import CONFIG, DISTRIBUTION, POINTS, VISIBILITIES
from .names import shown
from .runner import Options, Row, clean

JOBS = 2                  # notebooks graded at once, at most: one where the container has less than two cores
MAX_ENTRIES = 2000        # files and folders of a submission looked at
MAX_DEPTH = 12            # folders inside folders


def cores(cgroup: Path = Path("/sys/fs/cgroup")) -> float:
    """The CPUs this process may use: its cgroup's CPU quota where one is set (Gradescope gives a
    container a fraction of a CPU by default), else the CPUs it may run on."""
    count = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]                  # cgroup v2
    except (OSError, ValueError):
        try:
            quota, period = ((cgroup / "cpu" / f"cpu.cfs_{n}_us").read_text().strip() for n in ("quota", "period"))
        except OSError:
            return count
    if quota in ("max", "-1") or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return count
    return min(count, int(quota) / int(period))


def read_config(path: Path) -> dict:
    """The autograder's configuration, checked; ValueError names the first problem."""
    cfg = json.loads(path.read_text())
    for key in ("visibility", "stdout_visibility"):
        if cfg.get(key) not in VISIBILITIES:
            raise ValueError(f"{path.name}: {key}={cfg.get(key)!r} is not one of {', '.join(VISIBILITIES)}")
    for key in ("timeout", "memory_gib"):
        if not isinstance(cfg.get(key), (int, float)) or cfg[key] <= 0:
            raise ValueError(f"{path.name}: {key}={cfg.get(key)!r} must be a positive number")
    exercises = cfg.get("exercises")
    if not isinstance(exercises, list) or not exercises or not set(exercises) <= set(EXERCISES) \
            or len(set(exercises)) < len(exercises):
        raise ValueError(f"{path.name}: 'exercises' must list some of {', '.join(EXERCISES)}, each once")
    return cfg


def _shown(path: Path, folder: Path) -> str:
    """A submitted file's name as the student sees it: relative to the submission, escaped."""
    return shown(str(path.relative_to(folder)))


def submitted(folder: Path) -> tuple[list[Path], list[str]]:
    """The notebooks under ``folder`` (sorted, bounded), and a note for each one skipped."""
    found, notes, entries = [], [], 0
    for here, dirs, files in os.walk(folder):
        depth = len(Path(here).relative_to(folder).parts)
        entries += len(dirs) + len(files)
        if entries > MAX_ENTRIES:
            notes.append(f"more than {MAX_ENTRIES} files and folders: the rest were not looked at")
            break
        if depth >= MAX_DEPTH and dirs:
            notes.append(f"{_shown(Path(here), folder)}: folders more than {MAX_DEPTH} deep were not looked at")
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(files):
            path = Path(here) / name
            if not name.endswith(".ipynb") or name.startswith("."):
                continue
            if path.is_symlink():
                notes.append(f"{_shown(path, folder)}: not graded: a link, not a file")
            elif not path.is_file():
                notes.append(f"{_shown(path, folder)}: not graded: not a regular file")
            elif len(found) == classroom.MAX_NOTEBOOKS:
                notes.append(f"{_shown(path, folder)}: not graded: more than {classroom.MAX_NOTEBOOKS} notebooks")
            else:
                found.append(path)
    return found, notes


def match(paths: list[Path], folder: Path) -> tuple[dict[str, Path], list[str]]:
    """One notebook per exercise, chosen as in class grading; a note for every other notebook."""
    candidates, notes = {}, []
    for path in paths:
        exercise, problem = classroom.exercise_of(path)
        if exercise is None:
            why = problem or ("not an exercise notebook: no sa_course metadata, and its name does not start "
                              f"like one of {', '.join(EXERCISES)}")
            notes.append(f"{_shown(path, folder)}: not graded: {why}")
            continue
        candidates.setdefault(exercise, []).append((path, exercise, problem, path.lstat().st_mtime))
    chosen = {}
    for exercise in [e for e in EXERCISES if e in candidates]:
        (path, *_), why, others = classroom.choose(exercise, candidates[exercise])
        chosen[exercise] = path
        notes += [f"{_shown(p, folder)}: not graded: another notebook for exercise {exercise} counted "
                  f"({_shown(path, folder)}: {why})" for p, *_ in others]
    return chosen, notes


def exercise_test(number: int, exercise: str, most: float, row: Row | None, shown_as: str, visibility: str) -> dict:
    """One exercise as a Gradescope test, worth ``most`` points."""
    if row is None:
        score, status = 0.0, "failed"
        output = (f"not submitted: no notebook in your submission is exercise {exercise} (the course's "
                  f"exercises/{exercise}.ipynb, with your code in it)")
    else:
        score, status = float(min(row.points, most)), "passed" if row.status == "pass" else "failed"
        output = f"{row.status}: {feedback.message(row.message, strict=True)}\n(graded: {shown_as})"
    return {"name": f"{exercise}: {EXERCISES[exercise].title}", "number": str(number), "score": score,
            "max_score": float(most), "status": status, "output": output, "visibility": visibility}


def results(cfg: dict, table: points.Table, rows: dict[str, Row], graded: dict[str, dict], notes: list[str],
            iso, seconds: float) -> dict:
    """results.json: the total, one test per exercise of the assignment, and what Gradescope shows when."""
    tests = [exercise_test(i, name, points.number(sum(table[name].values())), rows.get(name),
                         graded.get(name, {}).get("file", ""), cfg["visibility"])
             for i, name in enumerate(cfg["exercises"], start=1)]
    total, most = sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)
    lines = [f"{DISTRIBUTION} {cfg['version']}, strict grading: {points.number(total)}/{points.number(most)} "
             f"points.", report.protection(iso)]
    lines += [f"{graded[name]['file']}: exercise {name}, {row.status}" for name, row in rows.items()]
    lines += notes
    if not rows:
        lines.append("No exercise notebook was found in your submission: upload the exercise notebooks "
                     "(for example 04_shuffle.ipynb), with your code in them.")
    return {"score": total, "execution_time": round(seconds), "output": "\n".join(lines),
            "output_format": "text", "test_output_format": "text", "test_name_format": "text",
            "visibility": cfg["visibility"], "stdout_visibility": cfg["stdout_visibility"],
            "extra_data": {**report.audit(iso, True), "graded": graded}, "tests": tests}


def grade_submission(root: Path, start: float) -> dict:
    """Grade ROOT/submission with ROOT/source's configuration; results.json's content."""
    cfg = read_config(root / "source" / CONFIG)
    table = points.load(root / "source" / POINTS)
    folder = root / "submission"
    paths, notes = submitted(folder) if folder.is_dir() else ([], ["the submission folder is missing"])
    chosen, more = match(paths, folder)
    notes += more + [f"{_shown(p, folder)}: not graded: exercise {e} is not part of this assignment"
                     for e, p in chosen.items() if e not in cfg["exercises"]]
    chosen = {e: p for e, p in chosen.items() if e in cfg["exercises"]}
    iso = sandbox.isolation()
    options = Options(timeout=cfg["timeout"], memory_gib=cfg["memory_gib"], strict=True, points=table)
    names = list(chosen)
    rows = dict(zip(names, grade_all([chosen[e] for e in names], options, max(1, min(JOBS, int(cores()))))))
    print(report.format_table(list(rows.values()), 100, report.protection(iso)))
    graded = {e: {"file": _shown(p, folder), "status": rows[e].status,
                  "sha256": classroom.sha256(p) if p.stat().st_size <= notebook.MAX_BYTES else None}
              for e, p in chosen.items()}
    return results(cfg, table, rows, graded, notes, iso, time.monotonic() - start)


def failure(exc: BaseException, start: float) -> dict:
    """results.json when the grader itself failed: no points, and a message that says whose fault it is."""
    return {"score": 0.0, "execution_time": round(time.monotonic() - start), "output_format": "text",
            "output": (f"The autograder itself failed ({type(exc).__name__}: {clean(exc, 300)}). This is not your "
                       f"notebook's fault: ask your instructor to look at the autograder's output and regrade it."),
            "stdout_visibility": "hidden", "tests": []}


def write(path: Path, data: dict) -> None:
    """Write results.json whole (a temporary file, then a rename), into its folder made anew if a
    kernel without a sandbox removed it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sa_course.grade.autograder",
                                     description="Grade a Gradescope submission and write results/results.json.")
    parser.add_argument("--root", type=Path, default=Path("/autograder"), help="the autograder's root (default /autograder)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    out = args.root / "results"
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)                 # a kernel running as another user cannot touch the results
    try:
        data = grade_submission(args.root, start)
    except BaseException as exc:         # results.json is written whatever happens
        traceback.print_exc(file=sys.stdout)
        data = failure(exc, start)
    write(out / "results.json", data)
    print(f"{out / 'results.json'}: {data['score']:g} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
