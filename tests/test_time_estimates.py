"""The time estimates: the counting rules, and the README and lesson 00 showing the same times."""
import re
from pathlib import Path

import nbformat
import pytest

from sa_course import time_estimates as te

ROOT = Path(__file__).resolve().parents[1]


def cells(*pairs):
    return [{"cell_type": kind, "source": source} for kind, source in pairs]


def test_words_equations_code_cells_and_your_turn_cells_are_counted():
    parts = te.estimate_cells(cells(
        ("markdown", " ".join(["word"] * 200) + "\n$$a$$"),
        ("code", "x = 1"),
        ("code", "my_shape = ...   # your turn"),
    ))
    assert parts.reading == pytest.approx(201 / te.READING_WPM + te.EQUATION_MIN)
    assert parts.code == 2 * te.CODE_CELL_MIN
    assert parts.your_turn == te.YOUR_TURN_MIN


def test_questions_are_counted_without_the_folded_hints():
    text = ("## Questions to think about\n\n1. One?\n2. Two?\n\n<details><summary>Hints</summary>\n\n"
            "1. Answer.\n2. Answer.\n\n</details>")
    assert te.count_questions(text) == 2
    assert te.count_questions("## Key ideas\n\n1. Not a question.") == 0


def test_exercise_writing_time_counts_functions_and_solution_lines():
    source = ("def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    # a comment\n    return y\n"
              "    ### END SOLUTION\n\n\ndef g(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION")
    assert te.solution_lines(source) == (2, 3)


def test_every_lesson_gets_a_row_and_the_table_adds_up(capsys):
    rows = te.estimate()
    assert [r.lesson for r in rows] == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert all(r.lesson_min > 0 for r in rows)
    assert [r.lesson[:2] for r in rows if r.exercise_min] == ["01", "02", "03", "04", "05"]
    te.main([])
    assert capsys.readouterr().out.count("\n| 0") == len(rows)


def map_times(markdown: str) -> dict[str, str]:
    """Lesson number -> the last column of its row in a course-map table."""
    times = {}
    for line in markdown.splitlines():
        match = re.match(r"^\|\s*\[?(0\d) [^|]*\|.*\|\s*([^|]+?)\s*\|$", line)
        if match:
            times[match[1]] = match[2]
    return times


def test_the_readme_and_lesson_00_show_the_same_times():
    readme = (ROOT / "README.md").read_text()
    course_map = readme[readme.index("## Course map"):readme.index("## Grade yourself")]
    lesson = "\n".join(c.source for c in nbformat.read(ROOT / "notebooks" / "00_overview.ipynb", as_version=4).cells
                       if c.source.startswith("## 4. The course map"))
    readme_times, lesson_times = map_times(course_map), map_times(lesson)
    assert sorted(readme_times) == [f"0{i}" for i in range(8)]
    assert readme_times == lesson_times
    total = re.search(r"about (\d+\.\d) hours", course_map)[1]
    assert total == re.search(r"about (\d+\.\d) hours", lesson)[1]
