"""What the grader prints and writes: the table (one notebook per row, or a class with a student
column), the summary line, and the JSON reports with their audit fields.

Every report says what was graded and how: each notebook's SHA-256, the time (UTC), the course's
version, the protection the grader found and whether ``--strict`` was on. Paths in it are relative
(to the class folder, or to the folder the grader ran in), never the instructor's absolute ones.
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ..cli.course_folder import installed_version
from . import points
from .names import printable, shown
from .runner import Row, clean


MIN_WIDTH = 60          # narrower terminals still get the table at this width
MIN_MESSAGE = 40        # a message column narrower than this goes under its row instead


def terminal_width() -> int:
    """The terminal's width in columns (100 when it cannot be told, as in a pipe), at least MIN_WIDTH."""
    return max(MIN_WIDTH, shutil.get_terminal_size((100, 20)).columns)


def wrapped(text: str, width: int, indent: str = "") -> list[str]:
    """Every line of ``text`` wrapped at word boundaries to ``width`` columns, none cut, none split
    inside a word; a hint's continuation lines line up after ``hint: ``."""
    out = []
    for line in printable(text).splitlines() or [""]:
        lead = indent + " " * (len(line) - len(line.lstrip()))
        follow = lead + " " * 6 if line.lstrip().startswith("hint:") else lead
        out += textwrap.wrap(line.strip(), width, initial_indent=lead, subsequent_indent=follow,
                             break_long_words=False, break_on_hyphens=False) or [lead]
    return out


def protection(iso) -> str:
    """The table's first line: which protection the grader found (bwrap, setuid or none), and what it means."""
    return f"protection: {iso.level} ({iso.describe()})"


def render(head: list[str], lines: list[tuple[list[str], str]], total: list[str], width: int = 100,
           protection: str | None = None) -> str:
    """A table of ``head`` columns then a message column: each line's cells (already text, one line
    each) and message, printed whole and wrapped at word boundaries to ``width``, beside its row, or
    under it when the message column would be narrower than MIN_MESSAGE; ``total`` is the last row."""
    lines = [([printable(c) for c in cells], message) for cells, message in lines]
    widths = [max([len(h), *(len(cells[i]) for cells, _ in lines), len(total[i])]) for i, h in enumerate(head)]

    def row(cells):
        return "  ".join(f"{c:>{w}}" if h == "points" else f"{c:<{w}}" for c, w, h in zip(cells, widths, head))
    pad = " " * (len(row(head)) + 2)
    beside = width - len(pad) >= MIN_MESSAGE
    out = textwrap.wrap(protection, width, subsequent_indent="  ", break_long_words=False,
                        break_on_hyphens=False) if protection else []
    out += [f"{row(head)}  message", "-" * min(width, len(pad) + 60)]
    for cells, message in lines:
        if beside:
            msg = wrapped(clean(message), width - len(pad))
            out.append(f"{row(cells)}  {msg[0].lstrip()}".rstrip())
            out += [pad + m for m in msg[1:]]
        else:
            out += [row(cells).rstrip()] + wrapped(clean(message), width, indent="  ")
    out.append(row(total).rstrip())
    return "\n".join(out)


def format_table(rows: list[Row], width: int = 100, protection: str | None = None) -> str:
    """The table the grader prints: exercise (the file's name) | status | points | message, with
    ``protection`` (:func:`protection`) as its first line."""
    lines = [([shown(Path(r.path).stem), r.status, f"{r.points}/{r.max_points}"], r.message) for r in rows]
    last = ["total", "", f"{total(r.points for r in rows)}/{total(r.max_points for r in rows)}"]
    return render(["exercise", "status", "points"], lines, last, width, protection)


def class_table(results, width: int = 100, protection: str | None = None) -> str:
    """The class's table: student | exercise | status | points | message, every exercise of every
    student (those not handed in as ``missing``), each student's total, and the class's: the same
    numbers as the gradebook."""
    lines = []
    for res in results:
        name = res.student.shown
        if res.student.skipped:
            lines.append(([name, "", "skipped", f"0/{res.max}"], res.student.skipped))
            continue
        for exercise, most in ((e, sum(c.values())) for e, c in res.table.items()):
            r = res.rows.get(exercise)
            lines.append(([name, exercise, r.status, f"{r.points}/{r.max_points}"], r.message) if r else
                         ([name, exercise, "missing", f"0/{total([most])}"], "no notebook for this exercise"))
        lines.append(([name, "total", "", f"{res.total}/{res.max}"], res.status))
    last = ["class", "total", "", f"{total(r.total for r in results)}/{total(r.max for r in results)}"]
    return render(["student", "exercise", "status", "points"], lines, last, width, protection)


def total(values):
    """A sum of points as the reports write it (2, not 2.0)."""
    return points.number(sum(values))


def summary(rows: list[Row]) -> str:
    """One line: how many notebooks pass, the points, and what to look at."""
    passed = sum(r.status == "pass" for r in rows)
    line = f"{passed} of {len(rows)} notebook{'s' if len(rows) != 1 else ''} pass, " \
           f"{total(r.points for r in rows)}/{total(r.max_points for r in rows)} points."
    broken = sum(r.status == "grader-error" for r in rows)
    if broken:
        return line + f" The grader itself failed on {broken} (grader-error): grade again."
    if passed < len(rows):
        counts = {}
        for r in rows:
            if r.status != "pass":
                counts[r.status] = counts.get(r.status, 0) + 1
        return line + " Not yet: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + \
            " (the table says which, and why)."
    return line + " Well done!"


def audit(iso, strict: bool) -> dict:
    """How the grading was done: when (UTC), by which version of the course, with which protection."""
    return {"graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "course_version": installed_version(), "protection": iso.level, "sandbox": iso.describe(),
            "strict": strict}


def relative(path, base: Path | None = None) -> str:
    """A path as the reports write it: relative to ``base`` (the folder the grader ran in by default),
    or only the file's name when it is elsewhere: never an absolute path of this machine."""
    base = Path(base or os.getcwd()).resolve()
    full = Path(os.path.abspath(path))
    return shown(str(full.relative_to(base)) if full.is_relative_to(base) else full.name)


def row_record(row: Row, path: str, sha256: str) -> dict:
    """A row as the reports write it: its relative ``path`` and the notebook's SHA-256."""
    return {**asdict(row), "path": path, "sha256": sha256}


def report(rows: list[Row], iso, strict: bool, records: list[dict] | None = None) -> dict:
    """The JSON report of notebooks graded one by one (``records``: the rows as :func:`row_record`)."""
    return {"passed": bool(rows) and all(r.status == "pass" for r in rows),
            "points": total(r.points for r in rows), "max_points": total(r.max_points for r in rows),
            **audit(iso, strict), "rows": records if records is not None else [asdict(r) for r in rows]}


def student_report(res, iso, strict: bool, records: dict[str, dict]) -> dict:
    """One student's JSON report: each exercise's counted notebook (why it counted, its SHA-256, its
    row), the files not graded and why, the notes, the total, and the audit fields."""
    exercises = {}
    for exercise in res.table:
        row = res.rows.get(exercise)
        sub = res.student.counted.get(exercise)
        exercises[exercise] = {"status": row.status, "points": row.points, "max_points": row.max_points,
                               "notebook": sub.shown, "sha256": sub.sha256, "counted_because": sub.why,
                               "message": row.message, "checks": row.checks} if row else \
            {"status": "missing", "points": 0, "max_points": total(res.table[exercise].values()),
             "message": "no notebook for this exercise"}
    return {"student": res.student.shown, "status": res.status, "passed": res.status == "pass",
            "points": res.total, "max_points": res.max, **audit(iso, strict), "exercises": exercises,
            "rows": [records[e] for e in res.rows], "notes": res.notes,
            "not_graded": [{"path": p, "reason": why} for p, why in res.student.not_graded]}


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def write_json(path: Path, data: dict, overwrite: bool = True) -> None:
    with open(path, "w" if overwrite else "x") as f:
        f.write(json_text(data))
