"""Every "your turn" cell works in any order after Run All: after the whole lesson has run, each
answer cell, re-run as it is stored, gets "not tried yet"; with its worked answer, "Correct"; its
check run a second time says the answer cell has not run since. So no later cell may rebind a name
that an answer cell or its check reads (lesson 03's ``rows`` once did)."""
import pytest

from lesson_cells import LESSONS, LessonShell, read_lesson, your_turns

WITH_YOUR_TURN = [path for path in LESSONS if your_turns(read_lesson(path))]


def test_the_lessons_with_your_turn_cells_are_found():
    assert [path.name[:2] for path in WITH_YOUR_TURN] == ["01", "02", "03", "04"]


@pytest.fixture(scope="module")
def shell():
    shell = LessonShell()
    yield shell
    shell.close()


@pytest.mark.parametrize("path", WITH_YOUR_TURN, ids=lambda p: p.stem)
def test_every_your_turn_cell_works_after_run_all(shell, path):
    lesson = read_lesson(path)
    shell.restart()
    for cell in lesson.cells:
        if cell.cell_type == "code":
            shell.run(cell.source)
    for turn in reversed(your_turns(lesson)):          # come back to them, the last one first
        label, check = turn.label(lesson), lesson.source(turn.check)
        shell.run(lesson.source(turn.answer))
        assert "not tried yet" in shell.run(check), label
        shell.run(turn.worked)
        verdict = shell.run(check)
        assert verdict.startswith("Correct"), f"{label}: {verdict}"
        assert "has not run since the last check" in shell.run(check), label
