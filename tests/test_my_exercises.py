"""Grade your own exercises with pytest, the same way `make grade` does:

    python -m pytest tests/test_my_exercises.py

Each notebook in exercises/ runs in a fresh kernel, on a copy. A notebook you have not
started is skipped ("not attempted"); one you have started must pass its checks, and a
failure shows the check's message with its hint.
"""
from pathlib import Path

import pytest

from sa_course.grade import grade_notebook

EXERCISES = sorted((Path(__file__).resolve().parent.parent / "exercises").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_my_exercise(path):
    row = grade_notebook(path, timeout=120)
    if row.status == "not attempted":
        pytest.skip(f"not attempted: {row.message}")
    assert row.status == "pass", f"{row.status}: {row.message}"
