"""What the grader prints and writes: the table, the summary line, the JSON report, the gradebook."""
from __future__ import annotations

import csv
import io
import json
import shutil
import textwrap
from dataclasses import asdict
from pathlib import Path

from ..checks import EXERCISES
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
    for line in text.splitlines() or [""]:
        lead = indent + " " * (len(line) - len(line.lstrip()))
        follow = lead + " " * 6 if line.lstrip().startswith("hint:") else lead
        out += textwrap.wrap(line.strip(), width, initial_indent=lead, subsequent_indent=follow,
                             break_long_words=False, break_on_hyphens=False) or [lead]
    return out


def protection(iso) -> str:
    """The table's first line: which protection the grader found (bwrap, setuid or none), and what it means."""
    return f"protection: {iso.level} ({iso.describe()})"


def format_table(rows: list[Row], width: int = 100, protection: str | None = None) -> str:
    """The table the grader prints: exercise (the file's name) | status | points | message.

    ``protection`` (:func:`protection`) is its first line. Every message is printed whole, wrapped
    at word boundaries to ``width``: beside its row, or under it when the message column would be
    narrower than MIN_MESSAGE."""
    names = [clean(Path(r.path).stem, 80) for r in rows]
    name_w = max([len("exercise"), *map(len, names)])
    head = f"{'exercise':<{name_w}}  {'status':<13}  {'points':>6}  message"
    pad = " " * (name_w + 2 + 13 + 2 + 6 + 2)
    beside = width - len(pad) >= MIN_MESSAGE
    lines = textwrap.wrap(protection, width, subsequent_indent="  ", break_long_words=False,
                          break_on_hyphens=False) if protection else []
    lines += [head, "-" * min(width, len(head) + 60)]
    for name, r in zip(names, rows):
        row = f"{name:<{name_w}}  {clean(r.status, 13):<13}  {f'{r.points}/{r.max_points}':>6}"
        if beside:
            msg = wrapped(clean(r.message), width - len(pad))
            lines.append(f"{row}  {msg[0].lstrip()}".rstrip())
            lines += [pad + m for m in msg[1:]]
        else:
            lines += [row] + wrapped(clean(r.message), width, indent="  ")
    total, most = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines.append(f"{'total':<{name_w}}  {'':<13}  {f'{total}/{most}':>6}")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """One line: how many notebooks pass, the points, and what to look at."""
    passed = sum(r.status == "pass" for r in rows)
    points, most = sum(r.points for r in rows), sum(r.max_points for r in rows)
    line = f"{passed} of {len(rows)} notebook{'s' if len(rows) != 1 else ''} pass, {points}/{most} points."
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


def report(rows: list[Row], sandbox: str, strict: bool) -> dict:
    return {"passed": all(r.status == "pass" for r in rows),
            "points": sum(r.points for r in rows), "max_points": sum(r.max_points for r in rows),
            "sandbox": sandbox, "strict": strict, "rows": [asdict(r) for r in rows]}


def write_json(path: Path, data: dict, overwrite: bool = True) -> None:
    with open(path, "w" if overwrite else "x") as f:
        f.write(json.dumps(data, indent=2) + "\n")


def _cell(text: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = clean(text, 200).replace("\n", " ")
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def student_status(rows: list[Row]) -> str:
    """The gradebook's status for one student: pass, or what kept them from it."""
    best = best_rows(rows)
    missing = [e for e in EXERCISES if e not in best]
    if any(r.status == "grader-error" for r in rows):
        return "grader-error"
    if not missing and all(r.status == "pass" for r in best.values()):
        return "pass"
    counts = {}
    for r in best.values():
        if r.status != "pass":
            counts[r.status] = counts.get(r.status, 0) + 1
    parts = [f"{n} {s}" for s, n in counts.items()] + ([f"{len(missing)} missing"] if missing else [])
    return ", ".join(parts)


def best_rows(rows: list[Row]) -> dict[str, Row]:
    """Per exercise, the row with the most points (the first one on a tie)."""
    best = {}
    for r in rows:
        if r.exercise in EXERCISES and (r.exercise not in best or r.points > best[r.exercise].points):
            best[r.exercise] = r
    return best


def gradebook(students: dict[str, list[Row]]) -> str:
    """The CSV: student, points per exercise, total, status."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", *EXERCISES, "total", "max", "status"])
    most = sum(e.points for e in EXERCISES.values())
    for student, rows in students.items():
        best = best_rows(rows)
        points = [best[e].points if e in best else 0 for e in EXERCISES]
        writer.writerow([_cell(student), *points, sum(points), most, _cell(student_status(rows))])
    return out.getvalue()
