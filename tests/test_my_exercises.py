"""Grade your own exercises with pytest, the same way `make grade` does:

    python -m pytest tests/test_my_exercises.py -k exercises

Each notebook in exercises/ runs in a fresh, sandboxed kernel. A notebook you have not
started is skipped ("not attempted"); one you have started must pass its checks, and a
failure shows the check's message with its hint. The same test runs on solutions/, which
must pass: that keeps this file honest in CI, where exercises/ holds only the stubs.
"""
from pathlib import Path

import pytest

from sa_course.grade import Options, grade_all

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [p for folder in ("exercises", "solutions") for p in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))]


@pytest.fixture(scope="module")
def rows():
    """Every notebook graded in one batch, two at a time."""
    return dict(zip(NOTEBOOKS, grade_all(NOTEBOOKS, Options(timeout=120), jobs=2)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_my_exercise(rows, path):
    row = rows[path]
    if path.parent.name == "exercises" and row.status == "not attempted":
        pytest.skip(f"not attempted: {row.message}")
    assert row.status == "pass", f"{row.status}: {row.message}"
