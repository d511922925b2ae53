"""How long each lesson and its exercise take a learner: an estimate computed from the notebooks.

    python -m sa_course.time_estimates      (prints a Markdown table, one row per lesson)

The estimate is a model, not a measurement of learners. Every assumption is one constant below;
change one and run the command again.

- **Reading.** Every word of every markdown cell (worked answers and hints included; a LaTeX
  token counts as one word) at ``READING_WPM`` words per minute, a careful pace for technical
  prose with equations (ordinary prose is read at about 200 to 250), plus ``EQUATION_MIN`` per
  display equation (``$$ ... $$``), to follow a step of a derivation.
- **Code cells.** ``CODE_CELL_MIN`` minutes per code cell: read it, run it, look at the output.
  The set-up cell that opens every notebook does not count: where the course is installed it
  does nothing.
- **Your turn.** ``YOUR_TURN_MIN`` more per "your turn" cell (a code cell with a placeholder line
  ``name = ...``): think, try, check, perhaps unfold the worked answer.
- **Questions.** ``QUESTION_MIN`` per numbered question under "Questions to think about" (lessons)
  or "Questions" (exercises).
- **Exercise.** The exercise notebook's prose, code cells and questions as above, plus
  ``FUNCTION_MIN`` per function to write and ``SOLUTION_LINE_MIN`` per line of its worked solution
  (the lines between the SOLUTION markers in ``course/exercises/NN_*.py``), for writing it,
  reading the check's message and fixing it.

The time a cell spends computing is not counted (the lessons run in seconds to a few minutes on a
CPU). Each total is rounded to the nearest 5 minutes.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from sa_course.build_exercises import BEGIN, DEF, END, parse
from sa_course.setup_cell import is_setup_cell

ROOT = Path(__file__).resolve().parent.parent

READING_WPM = 100         # words per minute, technical prose with equations
EQUATION_MIN = 2.0        # per display equation, on top of its words
CODE_CELL_MIN = 1.0       # per code cell
YOUR_TURN_MIN = 5.0       # per "your turn" cell, on top of its code-cell time
QUESTION_MIN = 2.0        # per question to think about
FUNCTION_MIN = 5.0        # per exercise function
SOLUTION_LINE_MIN = 2.0   # per line of the worked solution

PLACEHOLDER_LINE = re.compile(r"^\s*\w+\s*=\s*\.\.\.\s*(#.*)?$", re.MULTILINE)
QUESTIONS = re.compile(r"^#+\s*Questions( to think about)?\s*$", re.MULTILINE)
NUMBERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
WORD = re.compile(r"\S+")
DISPLAY_EQUATION = re.compile(r"\$\$.+?\$\$", re.DOTALL)


@dataclass
class Parts:
    """Minutes of one notebook, by kind of work."""
    reading: float = 0.0
    code: float = 0.0
    your_turn: float = 0.0
    questions: float = 0.0
    writing: float = 0.0

    @property
    def total(self) -> float:
        return self.reading + self.code + self.your_turn + self.questions + self.writing


def count_questions(markdown: str) -> int:
    """Numbered questions after the questions heading, not counting folded hints (<details>)."""
    match = QUESTIONS.search(markdown)
    if not match:
        return 0
    return len(NUMBERED.findall(markdown[match.end():].split("<details>")[0]))


def estimate_cells(cells) -> Parts:
    """Reading, code, your-turn and question minutes of a list of {cell_type, source} cells."""
    parts = Parts()
    for cell in cells:
        source = cell["source"]
        if cell["cell_type"] == "markdown":
            parts.reading += len(WORD.findall(source)) / READING_WPM
            parts.reading += len(DISPLAY_EQUATION.findall(source)) * EQUATION_MIN
            parts.questions += count_questions(source) * QUESTION_MIN
        elif cell["cell_type"] == "code":
            parts.code += CODE_CELL_MIN
            parts.your_turn += len(PLACEHOLDER_LINE.findall(source)) * YOUR_TURN_MIN
    return parts


def solution_lines(source: str) -> tuple[int, int]:
    """(functions to write, lines of worked solution) in one exercise cell's source."""
    functions, lines, inside = set(), 0, False
    current = None
    for line in source.splitlines():
        if DEF.match(line):
            current = DEF.match(line).group(1)
        stripped = line.strip()
        if stripped == BEGIN:
            inside = True
            functions.add(current)
        elif stripped == END:
            inside = False
        elif inside and stripped and not stripped.startswith("#"):
            lines += 1
    return len(functions), lines


def estimate_exercise(source: Path) -> Parts:
    cells = parse(source)
    parts = estimate_cells(cells)
    for cell in cells:
        if "exercise" in cell["tags"]:
            functions, lines = solution_lines(cell["source"])
            parts.writing += functions * FUNCTION_MIN + lines * SOLUTION_LINE_MIN
    return parts


def rounded(minutes: float) -> int:
    return 0 if minutes == 0 else max(5, 5 * math.floor(minutes / 5 + 0.5))


def fmt(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{minutes} min" if not hours else f"{hours} h {rest:02d}" if rest else f"{hours} h"


@dataclass
class Row:
    lesson: str
    exercise: str
    lesson_min: int
    exercise_min: int

    @property
    def total(self) -> int:
        return self.lesson_min + self.exercise_min


def estimate(root: Path = ROOT) -> list[Row]:
    rows = []
    exercises = {p.stem[:2]: p for p in (root / "course" / "exercises").glob("[0-9][0-9]_*.py")}
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        lesson = estimate_cells([cell for cell in nb.cells if not is_setup_cell(cell)])
        source = exercises.get(path.stem[:2])
        exercise = estimate_exercise(source) if source else Parts()
        rows.append(Row(path.stem, source.stem if source else "", rounded(lesson.total), rounded(exercise.total)))
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| lesson | lesson | exercise | total |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.lesson} | {fmt(row.lesson_min)} | {fmt(row.exercise_min) if row.exercise else '-'} "
                     f"| {fmt(row.total)} |")
    total = sum(r.total for r in rows)
    lines.append(f"| all | {fmt(sum(r.lesson_min for r in rows))} | {fmt(sum(r.exercise_min for r in rows))} "
                 f"| {fmt(total)} ({total / 60:.1f} h) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print(f"Assumptions: reading {READING_WPM} words/min, +{EQUATION_MIN:g} min per display equation; "
          f"{CODE_CELL_MIN:g} min per code cell, "
          f"+{YOUR_TURN_MIN:g} per your-turn cell; {QUESTION_MIN:g} min per question; per exercise "
          f"function {FUNCTION_MIN:g} min + {SOLUTION_LINE_MIN:g} min per solution line.\n")
    print(table(estimate()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
