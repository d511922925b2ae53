"""Optional parts never stop an exercise notebook: with every graded function written and every
cell tagged ``optional`` left as its stub, Restart & Run All reaches the last cell, and the optional
part's check says it was not attempted.

The notebook runs in this process with a fresh namespace (tests/lesson_cells.py). Exercise 05's
finale trains SA-ResNet-20 for half a minute; here its ``check_training`` is replaced by one that
only records its call, since the solution notebook under nbval runs the same finale in full."""
from pathlib import Path

import pytest

from lesson_cells import LessonShell
from sa_course import numpy_in_torch
from sa_course.build_exercises import SOURCES, build

OPTIONAL = "optional"
EXERCISES = sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def with_optional_stubs(source: Path):
    """The solution notebook of ``source`` with its optional cells as the exercise has them."""
    solution, exercise = build(source, "solution"), build(source, "exercise")
    stubs = {cell.id: cell.source for cell in exercise.cells}
    optional = [cell for cell in solution.cells if OPTIONAL in cell.metadata.get("tags", [])]
    for cell in optional:
        cell.source = stubs[cell.id]
    return solution, optional


WITH_OPTIONAL = [source for source in EXERCISES if with_optional_stubs(source)[1]]


def test_the_optional_parts_are_the_bonus_of_exercise_05():
    assert {source.stem: [cell.source.split("(")[0] for cell in with_optional_stubs(source)[1]]
            for source in WITH_OPTIONAL} == {"05_sa_layer": ["def sa_forward_fused"]}


@pytest.mark.parametrize("source", WITH_OPTIONAL, ids=lambda p: p.stem)
def test_restart_and_run_all_reaches_the_last_cell_with_optional_parts_untouched(source, monkeypatch):
    finale = []
    monkeypatch.setattr(numpy_in_torch, "check_training", lambda *functions: finale.append(functions))
    nb, optional = with_optional_stubs(source)
    assert all("raise NotImplementedError(" in cell.source for cell in optional)
    shell = LessonShell()
    try:
        printed = [shell.run(cell.source) for cell in nb.cells if cell.cell_type == "code"]   # raises on an error
        assert [f.__name__ for f in finale[0]] == ["sa_forward", "sa_backward"]
        assert shell.shell.user_ns["sa_forward"] is finale[0][0]
    finally:
        shell.close()
    assert any(text.startswith("Optional, not attempted: sa_forward_fused") for text in printed)
