"""Write exercises/ and solutions/ from the single sources in course/exercises/.

Each source ``course/exercises/NN_name.py`` is a notebook in the "percent" format: a line
``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell (its lines start with
``# ``), and ``tags=["exercise"]`` after either gives the cell tags. Inside a code cell,
the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` are the solution:

- ``exercises/NN_name.ipynb`` replaces each solution with
  ``raise NotImplementedError("...")`` and has no outputs;
- ``solutions/NN_name.ipynb`` keeps the solution (markers removed) and is executed in a
  fresh kernel, so its outputs are stored.

Both start with the set-up cell (:mod:`sa_course.setup_cell`), so that they run on Colab and Kaggle too.

    python -m sa_course.build_exercises           # rebuild what is out of date
    python -m sa_course.build_exercises --check   # exit 1, naming the files, if any is out of date

Out of date means: different cells (type, source, tags) or notebook metadata than the
source gives, or, for a solution, a code cell that was not executed.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from sa_course.checks import stub_message
from sa_course.notebook_meta import KERNEL_NAME, notebook_metadata
from sa_course.setup_cell import new_cell as setup_cell

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "course" / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")
DEF = re.compile(r"^\s*def (\w+)\(")


def parse(path: Path) -> list[dict]:
    """The cells of a percent-format source: dicts with cell_type, source, tags."""
    cells = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        match = CELL.match(line)
        if match:
            tags = re.findall(r'"([^"]+)"', match["tags"] or "")
            cells.append({"cell_type": "markdown" if match["markdown"] else "code", "lines": [], "tags": tags})
        elif not cells:
            raise ValueError(f"{path}:{lineno}: text before the first '# %%' cell marker")
        elif cells[-1]["cell_type"] == "markdown":
            if line and not line.startswith("#"):
                raise ValueError(f"{path}:{lineno}: a markdown line must start with '#': {line!r}")
            cells[-1]["lines"].append(line[2:] if line.startswith("# ") else line[1:])
        else:
            cells[-1]["lines"].append(line)
    for cell in cells:
        cell["source"] = "\n".join(cell.pop("lines")).strip("\n")
    return cells


def strip_solution(source: str, name: str) -> str:
    """Replace every BEGIN/END SOLUTION region by a stub naming its function."""
    out, function, inside = [], None, False
    for line in source.splitlines():
        stripped = line.strip()
        if DEF.match(line):
            function = DEF.match(line).group(1)
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{name}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if function is None:
                raise ValueError(f"{name}: {BEGIN} outside a function")
            out.append(f'{indent}raise NotImplementedError("{stub_message(function)}")')
        elif stripped == END:
            if not inside:
                raise ValueError(f"{name}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{name}: {BEGIN} without {END}")
    return "\n".join(out)


def keep_solution(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN, END))


def build(source: Path, kind: str) -> nbformat.NotebookNode:
    """The unexecuted notebook of one kind ("exercise" or "solution") for one source."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = notebook_metadata(sa_course={"exercise": source.stem, "kind": kind,
                                               "source": source.relative_to(ROOT).as_posix()})
    nb.cells.append(setup_cell())
    for i, cell in enumerate(parse(source)):
        text = cell["source"]
        if cell["cell_type"] == "markdown":
            new = nbformat.v4.new_markdown_cell(text)
        else:
            new = nbformat.v4.new_code_cell(strip_solution(text, source.name) if kind == "exercise"
                                            else keep_solution(text))
        new.id = f"cell-{i:02d}"
        if cell["tags"]:
            new.metadata["tags"] = cell["tags"]
        nb.cells.append(new)
    return nb


def execute(nb: nbformat.NotebookNode) -> None:
    """Run a notebook top to bottom in a fresh kernel, in a scratch directory."""
    with tempfile.TemporaryDirectory() as tmp:
        NotebookClient(nb, timeout=300, kernel_name=KERNEL_NAME, record_timing=False,
                       resources={"metadata": {"path": tmp}}).execute()


def normalised(nb: nbformat.NotebookNode) -> tuple:
    """What must agree with the source: metadata we set, and each cell's type, source, tags."""
    return (nb.metadata.get("kernelspec"), nb.metadata.get("language_info"), nb.metadata.get("sa_course"),
            [(c.cell_type, c.get("id"), c.source, c.metadata.get("tags", [])) for c in nb.cells])


def problems(path: Path, expected: nbformat.NotebookNode) -> str | None:
    """Why the notebook at path is out of date, or None when it is current."""
    if not path.exists():
        return "missing"
    current = nbformat.read(path, as_version=4)
    if normalised(current) != normalised(expected):
        return "differs from its source"
    code = [c for c in current.cells if c.cell_type == "code"]
    if expected.metadata["sa_course"]["kind"] == "exercise":
        if any(c.outputs or c.execution_count is not None for c in code):
            return "has outputs (an exercise notebook must be clean)"
    elif any(c.execution_count is None for c in code):
        return "was not executed"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date notebooks; exit 1 if any")
    parser.add_argument("--force", action="store_true", help="rebuild every notebook, even when current")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if not sources:
        print(f"no exercise sources in {SOURCES}", file=sys.stderr)
        return 1
    stale = []
    for source in sources:
        for kind, folder in (("exercise", "exercises"), ("solution", "solutions")):
            path = ROOT / folder / f"{source.stem}.ipynb"
            nb = build(source, kind)
            why = problems(path, nb)
            if why is None and not args.force:
                continue
            stale.append(f"{path.relative_to(ROOT)}: {why or 'rebuilt (--force)'}")
            if args.check:
                continue
            if kind == "solution":
                execute(nb)
            path.parent.mkdir(exist_ok=True)
            nbformat.validate(nb)
            path.write_text(nbformat.writes(nb) + "\n")
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        print("out of date with course/exercises/ (run `make exercises`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    if not stale:
        print("exercises/ and solutions/ are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
