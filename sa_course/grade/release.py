"""A student copy of the course: ``sa-course release DIR``.

It writes ``DIR/notebooks/`` (the lessons), ``DIR/exercises/`` (the notebooks students fill in and
hand in: in a ``--strict`` class, the ones the grader grades) and ``DIR/HANDIN.md`` (what to hand
in, and how to check it as the grader will), from this install, without ``solutions/``. A folder
that already holds any of them is refused (exit 2); nothing is overwritten.

What it does not hide: the course's package carries its solutions too (a student who runs
``pip install shuffle-attention-course`` has them), and ``sa_numpy`` is the reference itself. The
release keeps the answers out of the folder students work in; ``--strict`` grading is what keeps
the reference out of the grade (docs/instructors.md).
"""
from __future__ import annotations

from pathlib import Path

from ..checks import EXERCISES
from ..cli.course_folder import UsageError, installed_version, shipped
from .gradebook import atomic_write

FOLDERS = ("notebooks", "exercises")
HANDIN = """# Handing in the exercises

Fill in the notebooks in `exercises/` and hand them in as they are, one file per exercise, under
their own names:

{names}

Check your work as your instructor's grader will (it hides the course's reference):

    sa-course grade --strict exercises/

or, in a clone of the course, `make grade STRICT=1`. Each notebook gets a row: its status, its
points and what to fix. A cell that still raises `NotImplementedError` counts as not attempted.

Course version: {version}.
"""


def release(folder: Path) -> int:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder: name a new or empty folder")
    present = [name for name in (*FOLDERS, "HANDIN.md") if (folder / name).exists()]
    if present:
        raise UsageError(f"{folder} already holds {', '.join(present)}: name a new or empty folder")
    files = {name: path for name, path in shipped().items() if name.split("/")[0] in FOLDERS}
    for name, source in files.items():
        atomic_write(folder / name, source.read_bytes())
    names = "\n".join(f"- `{e}.ipynb`: {x.title}" for e, x in EXERCISES.items())
    atomic_write(folder / "HANDIN.md", HANDIN.format(names=names, version=installed_version()))
    lessons = sum(n.startswith("notebooks/") for n in files)
    print(f"wrote {lessons} lessons, {len(files) - lessons} exercises and HANDIN.md to {folder.resolve()}, "
          f"without solutions/ (course {installed_version()})")
    return 0
