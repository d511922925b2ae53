"""The class folder: who the students are, which of their notebooks count, and what is not graded.

``DIR/<student>/*.ipynb``: one folder per student, named as the instructor likes (a login, an id, a
name; any bytes the file system holds). :func:`scan` reads it without following anything out of it:

- a student folder that is a link is skipped with a row that says where it points: a link to
  another student's folder would grade the same work twice, one out of the class folder would grade
  files that are not a student's submission;
- the notebooks directly in a student's folder are theirs. A notebook that is a link to a file
  outside that folder, one in a sub-folder, one that is not an exercise notebook, and a file that is
  not a notebook are listed as not graded, each with the reason;
- one notebook per exercise counts (:func:`choose`); the others are listed "not graded: another
  notebook for this exercise counted";
- at most MAX_ENTRIES entries of a student's folder, and MAX_NOTEBOOKS notebooks, are looked at.

Each notebook's SHA-256 is taken here, for the audit and to flag identical submissions
(:func:`identical`): the same file under two students (a hard link or a copy), or a copy of the
course's own solution.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .. import resources
from ..checks import EXERCISES
from . import notebook
from .names import shown

MAX_ENTRIES = 500         # entries of one student's folder looked at
MAX_NOTEBOOKS = 20        # notebooks of one student read to find their exercises
MAX_DEPTH = 4             # sub-folders looked into, to list the notebooks there as not graded
SKIP = ("__MACOSX",)      # folders a zip tool adds


@dataclass
class Submission:
    """A notebook that counts for an exercise."""
    path: Path            # the file graded
    shown: str            # its path relative to the class folder, as text
    exercise: str
    sha256: str
    why: str              # why this one counted for its exercise


@dataclass
class Student:
    """One student folder: the notebook counted per exercise, what was not graded and why."""
    name: str                                   # the folder's name as listed (surrogateescape)
    counted: dict[str, Submission] = field(default_factory=dict)
    not_graded: list[tuple[str, str]] = field(default_factory=list)    # (shown path, reason)
    skipped: str = ""                           # why the whole folder was not graded

    @property
    def shown(self) -> str:
        return shown(self.name)


@dataclass
class Classroom:
    folder: Path
    students: list[Student]
    not_graded: list[tuple[str, str]]           # entries of the class folder that are not student folders


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def exercise_of(path: Path) -> tuple[str | None, str]:
    """The notebook's exercise by its metadata (else its file name, as the grader does), and the
    reason it cannot be read ("" when it can)."""
    try:
        return notebook.read(path).exercise, ""
    except notebook.BadNotebook as exc:
        return next((e for e in EXERCISES if path.name[:3] == e[:3]), None), str(exc)


def _link_target(path: Path, root: Path) -> str:
    """Where a link points, in words, without naming anything outside the class folder."""
    target = Path(os.path.realpath(path))
    if not target.exists():
        return "a link to nothing"
    if target.is_relative_to(root):
        return f"a link to {shown(str(target.relative_to(root)))}"
    return "a link out of the class folder"


def _rank(candidate) -> tuple:
    path, exercise, problem, mtime = candidate
    return problem != "", path.name != f"{exercise}.ipynb", -mtime, path.name


def choose(exercise: str, candidates: list) -> tuple:
    """Of a student's notebooks for one exercise ((path, exercise, problem, mtime) each), the one
    that counts and why: a readable one before one that is not, then the one named exactly like the
    exercise, then the one modified last, then the first by name."""
    ordered = sorted(candidates, key=_rank)
    best, n = ordered[0], len(candidates)
    if n == 1:
        why = "the only notebook for this exercise"
    elif best[2] == "" and ordered[1][2] != "":
        why = f"the readable one of {n} notebooks for this exercise"
    elif best[0].name == f"{exercise}.ipynb":
        why = f"named exactly like the exercise ({exercise}.ipynb), of {n} notebooks for it"
    else:
        why = f"the one modified last of {n} notebooks for this exercise (none is named {exercise}.ipynb)"
    return best, why, ordered[1:]


def _nested(folder: Path, root: Path, depth: int, budget: list) -> list[tuple[str, str]]:
    """Notebooks in a student's sub-folders: listed, not graded."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        budget[0] -= 1
        if budget[0] < 0 or entry.name.startswith(".") or entry.name in SKIP:
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH:
            found += _nested(path, root, depth + 1, budget)
        elif entry.name.endswith(".ipynb"):
            found.append((shown(str(path.relative_to(root))), "not graded: in a sub-folder of the student's "
                          "folder (sa-course collect flattens a download; or move it up)"))
    return found


def _student(folder: Path, root: Path) -> Student:
    student = Student(folder.name)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        student.skipped = f"skipped: the folder cannot be read ({exc.strerror})"
        return student
    if len(entries) > MAX_ENTRIES:
        student.not_graded.append((student.shown + "/", f"not graded: {len(entries) - MAX_ENTRIES} entries after "
                                                         f"the first {MAX_ENTRIES} were not looked at"))
    own, seen, candidates, budget = Path(os.path.realpath(folder)), set(), {}, [MAX_ENTRIES]
    for entry in entries[:MAX_ENTRIES]:
        path = Path(entry.path)
        rel = shown(str(path.relative_to(root)))
        if entry.name.startswith(".") or entry.name in SKIP:
            continue
        if entry.is_dir(follow_symlinks=False):
            student.not_graded += _nested(path, root, 1, budget)
            continue
        if not entry.name.endswith(".ipynb"):
            student.not_graded.append((rel, "not graded: not a notebook (.ipynb)"))
            continue
        if entry.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(own):
            student.not_graded.append((rel, f"not graded: {_link_target(path, root)}, outside the student's folder"))
            continue
        try:
            info = path.stat()
        except OSError:
            student.not_graded.append((rel, f"not graded: {_link_target(path, root)}"))
            continue
        if not stat.S_ISREG(info.st_mode):
            student.not_graded.append((rel, "not graded: not a regular file"))
            continue
        if (info.st_dev, info.st_ino) in seen:
            student.not_graded.append((rel, "not graded: another name of a notebook graded above"))
            continue
        seen.add((info.st_dev, info.st_ino))
        if len(seen) > MAX_NOTEBOOKS:
            student.not_graded.append((rel, f"not graded: more than {MAX_NOTEBOOKS} notebooks in this folder"))
            continue
        exercise, problem = exercise_of(path)
        if exercise is None:
            student.not_graded.append((rel, "not graded: " + (problem or "not an exercise notebook: no sa_course "
                                       f"metadata, and its name does not start like one of {', '.join(EXERCISES)}")))
            continue
        candidates.setdefault(exercise, []).append((path, exercise, problem, info.st_mtime))
    for exercise in [e for e in EXERCISES if e in candidates]:
        (path, *_), why, others = choose(exercise, candidates[exercise])
        rel = shown(str(path.relative_to(root)))
        try:
            student.counted[exercise] = Submission(path, rel, exercise, sha256(path), why)
        except OSError as exc:
            student.not_graded.append((rel, f"not graded: it cannot be read ({exc.strerror})"))
            continue
        student.not_graded += [(shown(str(p.relative_to(root))), f"not graded: another notebook for this exercise "
                                f"counted ({rel}: {why})") for p, *_ in others]
    return student


def scan(folder: Path) -> Classroom:
    """Read the class folder: one :class:`Student` per sub-folder (links skipped, with the reason)."""
    root = Path(os.path.realpath(folder))
    students, loose = [], []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in SKIP:
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            students.append(Student(entry.name, skipped=f"skipped: the folder is {_link_target(path, root)}; "
                                                        f"links are not followed (copy the folder in to grade it)"))
        elif entry.is_dir():
            students.append(_student(path, root))
        else:
            loose.append((shown(entry.name), "not graded: not in a student's folder (DIR/<student>/*.ipynb)"))
    return Classroom(root, students, loose)


def shipped_hashes() -> dict[str, str]:
    """SHA-256 -> what it is, for the course's own exercise and solution notebooks."""
    known = {}
    for where, what in ((resources.solutions_dir, "the course's solution"), (resources.exercises_dir, "the stub")):
        for path in sorted(where().glob("*.ipynb")):
            known[sha256(path)] = f"{what} {path.name}"
    return known


def identical(students: list[Student]) -> dict[str, list[str]]:
    """Per student name, a note for each counted notebook that is byte for byte another student's
    (a hard link or a copy) or the course's solution. Untouched stubs are not flagged."""
    by_hash, notes, known = {}, {}, shipped_hashes()
    for student in students:
        for sub in student.counted.values():
            by_hash.setdefault(sub.sha256, []).append((student.name, sub))
    for digest, owners in by_hash.items():
        if known.get(digest, "").startswith("the stub"):
            continue
        for name, sub in owners:
            others = [o.shown for n, o in owners if n != name]
            if others:
                notes.setdefault(name, []).append(f"{sub.shown} is identical to {', '.join(others)} (same SHA-256)")
            if digest in known:
                notes.setdefault(name, []).append(f"{sub.shown} is identical to {known[digest]}")
    return notes
