"""The class's results: one :class:`Result` per student, the gradebook CSV, the LMS export, and
files written whole (a temporary file, then a rename) with a copy of whatever they replace.

The gradebook has a row for every student folder, graded or skipped, with the points of the
notebook that counted for each exercise (0 for one not handed in), the total out of the whole
assignment, the status and notes (identical submissions, names that read alike, notebooks not
graded). Names and messages are text (:func:`~sa_course.grade.names.csv_cell`); numbers are written
bare and every text quoted, so ``0031337`` stays text.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import EXERCISES
from . import points
from .classroom import Student
from .names import csv_cell, one_line, shown
from .runner import Row

COLUMNS = ["student", *EXERCISES, "total", "max", "status", "notes"]
LMS_COLUMNS = ["id", "student", "total", "max", *EXERCISES]


@dataclass
class Result:
    """One student: the row of each exercise's counted notebook, and the notes the gradebook carries."""
    student: Student
    rows: dict[str, Row]
    table: points.Table
    file: str                               # the stem of their report and feedback files
    notes: list[str] = field(default_factory=list)
    error: str = ""                         # the grader failed on this student (not on a notebook)

    @property
    def total(self):
        return points.number(sum(r.points for r in self.rows.values()))

    @property
    def max(self):
        return points.number(sum(sum(checks.values()) for checks in self.table.values()))

    @property
    def missing(self) -> list[str]:
        return [e for e in EXERCISES if e not in self.rows]

    @property
    def status(self) -> str:
        """pass (every exercise passed), or what kept them from it: "1 fail, 3 missing"."""
        if self.student.skipped:
            return self.student.skipped
        if self.error or any(r.status == "grader-error" for r in self.rows.values()):
            return "grader-error"
        counts = {}
        for r in self.rows.values():
            if r.status != "pass":
                counts[r.status] = counts.get(r.status, 0) + 1
        if self.missing:
            counts["missing"] = len(self.missing)
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "pass"


def gradebook_line(result: Result) -> list:
    cells = [result.rows[e].points if e in result.rows else 0 for e in EXERCISES]
    return [csv_cell(result.student.shown), *cells, result.total, result.max, csv_cell(one_line(result.status)),
            csv_cell(one_line("; ".join(result.notes)))]


def to_csv(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    return out.getvalue()


def gradebook(results: list[Result]) -> str:
    """The CSV: student, points per exercise, total, max, status, notes."""
    return to_csv([COLUMNS] + [gradebook_line(r) for r in results])


def merge(old: str, result: Result) -> str:
    """``old`` gradebook with the row of ``result``'s student replaced (appended when it has none);
    every other line stays as it was, byte for byte."""
    lines = old.splitlines(keepends=True)
    if not lines or next(csv.reader(lines[:1])) != COLUMNS:
        raise ValueError("its first row is not this grader's header: grade the whole class again (without --only)")
    new, key, done = to_csv([gradebook_line(result)]), csv_cell(result.student.shown), False
    out = lines[:1]
    for line in lines[1:]:
        if next(csv.reader([line]), [None])[0] == key:
            line, done = new, True
        out.append(line)
    return "".join(out) + ("" if done else new)


def read_ids(path: Path) -> dict[str, str]:
    """The instructor's map from student folder to LMS id: a CSV whose header names ``student`` and
    ``id`` (any case, any other columns). ValueError names the first problem."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "student" not in header or "id" not in header:
        raise ValueError(f"{path.name}: its first row must name the columns student and id, got {rows[:1]}")
    s, i = header.index("student"), header.index("id")
    ids = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(s, i) or not row[s].strip():
            raise ValueError(f"{path.name}: row {n} has no student or no id")
        ids[row[s]] = row[i].strip()
    return ids


def lms(gradebook_text: str, ids: dict[str, str]) -> tuple[str, list[str]]:
    """The LMS export from the gradebook: id (the instructor's, as text), student, total, max, points
    per exercise; and a note for each student without an id and each id without a student."""
    book = list(csv.DictReader(io.StringIO(gradebook_text)))
    by_cell = {}
    for key, value in ids.items():
        by_cell.setdefault(csv_cell(shown(key)), value)
        by_cell.setdefault(csv_cell(key), value)        # the folder name typed as the gradebook shows it
    rows, notes, used = [LMS_COLUMNS], [], set()
    for line in book:
        lms_id = by_cell.get(line["student"])
        if lms_id is None:
            notes.append(f"{line['student']}: no id in the map, so not in the LMS file")
            continue
        used.add(lms_id)
        rows.append([lms_id, line["student"], *(float(line[c]) for c in ("total", "max", *EXERCISES))])
    notes += [f"id {v} ({shown(k)}): no student folder of that name, so not in the LMS file"
              for k, v in ids.items() if v not in used]
    return to_csv([[points.number(c) if isinstance(c, float) else c for c in row] for row in rows]), notes


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``path`` whole or not at all (text as UTF-8, a lone surrogate as ``\\udc80``): a temporary
    file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def backup(paths: list[Path], folder: Path) -> list[Path]:
    """Copy each existing file of ``paths`` into ``folder`` (kept under its parent folder's name);
    the copies made."""
    made = []
    for path in paths:
        if path.is_file():
            copy = folder / path.parent.name / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            made.append(copy)
    return made
