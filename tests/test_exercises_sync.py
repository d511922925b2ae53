"""exercises/ and solutions/ are generated from course/exercises/ and must stay in step with it."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sa_course import build_exercises
from sa_course.checks import EXERCISES, stub_message

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "course" / "exercises").glob("[0-9][0-9]_*.py"))


def test_exercises_and_solutions_are_up_to_date_with_their_sources():
    result = subprocess.run([sys.executable, "-m", "sa_course.build_exercises", "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_exercise_has_a_source_and_a_check():
    assert [s.stem for s in SOURCES] == list(EXERCISES)


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_the_check_notices_an_edited_notebook(tmp_path, source):
    exercise = build_exercises.build(source, "exercise")
    assert build_exercises.problems(ROOT / "exercises" / f"{source.stem}.ipynb", exercise) is None
    edited = nbformat.read(ROOT / "exercises" / f"{source.stem}.ipynb", as_version=4)
    next(c for c in edited.cells if c.cell_type == "code").source += "\nx = 1"
    nbformat.write(edited, tmp_path / "edited.ipynb")
    assert build_exercises.problems(tmp_path / "edited.ipynb", exercise) == "differs from its source"
    assert build_exercises.problems(tmp_path / "missing.ipynb", exercise) == "missing"


def test_the_check_notices_an_unexecuted_solution_and_an_exercise_with_outputs(tmp_path):
    source = SOURCES[0]
    solution = nbformat.read(ROOT / "solutions" / f"{source.stem}.ipynb", as_version=4)
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.execution_count, cell.outputs = None, []
    nbformat.write(solution, tmp_path / "solution.ipynb")
    assert build_exercises.problems(tmp_path / "solution.ipynb",
                                    build_exercises.build(source, "solution")) == "was not executed"
    executed = nbformat.read(ROOT / "solutions" / f"{source.stem}.ipynb", as_version=4)
    executed.metadata["sa_course"]["kind"] = "exercise"
    exercise = build_exercises.build(source, "exercise")
    for mine, clean in zip(executed.cells, exercise.cells):
        mine.source = clean.source
    nbformat.write(executed, tmp_path / "exercise.ipynb")
    assert build_exercises.problems(tmp_path / "exercise.ipynb", exercise).startswith("has outputs")


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_exercise_notebooks_hold_stubs_and_no_solution(source):
    nb = nbformat.read(ROOT / "exercises" / f"{source.stem}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code
    for _check, names in EXERCISES[source.stem].checks:
        for name in names:
            assert f'raise NotImplementedError("{stub_message(name)}")' in code
    solution_lines = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source.read_text(), re.S)
    assert solution_lines and not any(s.strip() in code for s in solution_lines)


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_each_exercise_cell_is_followed_by_its_check_cell(source):
    """The structure the JupyterLab browser test relies on: stubs, then the check, right after."""
    cells = nbformat.read(ROOT / "exercises" / f"{source.stem}.ipynb", as_version=4).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    exercise_cells = [i for i, t in enumerate(tags) if "exercise" in t]
    assert exercise_cells and all("check" in tags[i + 1] for i in exercise_cells)
    assert all(cells[i].cell_type == "code" and cells[i + 1].cell_type == "code" for i in exercise_cells)
