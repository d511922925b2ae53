"""The lessons as the tests read them: sections with the cells they say they need, and "your
turn" cells with their worked answers.

- A section starts at a markdown line ``## ...``; code cells above the first one are the
  lesson's top cells (the set-up cell and the imports). A section with code says, on the line
  under its title, what it needs: ``*Needs: the top cells and sections 1 and 3.*``.
- A "your turn" is an answer cell (a line ``my_... = ...``), the check cell under it (it calls
  ``your_turn.lessonNN``) and a folded worked answer whose first ```python block is the code
  that replaces that line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NEEDS = re.compile(r"^\*Needs: the top cells(?: and sections? (?P<sections>\d+(?:(?:, | and )\d+)*))?\.\*$")
HEADING = re.compile(r"^## (?:(?P<number>\d+)\. )?(?P<title>.+)$")
PLACEHOLDER = re.compile(r"^(?P<name>my_\w+) = \.\.\.(?:\s*#.*)?$", re.MULTILINE)
WORKED_CODE = re.compile(r"```python\n(.*?)\n```", re.DOTALL)


@dataclass
class Section:
    title: str
    number: str | None
    needs: list[str] | None            # None: the section does not say
    cells: list[int] = field(default_factory=list)   # indices of its code cells


@dataclass
class Lesson:
    path: Path
    cells: list
    top: list[int]                      # code cells above the first section
    sections: list[Section]

    @property
    def name(self) -> str:
        return self.path.stem

    def source(self, index: int) -> str:
        return self.cells[index].source

    def section(self, number: str) -> Section:
        return next(s for s in self.sections if s.number == number)


def read_lesson(path: Path) -> Lesson:
    cells = nbformat.read(path, as_version=4).cells
    top, sections = [], []
    for i, cell in enumerate(cells):
        if cell.cell_type == "code":
            (sections[-1].cells if sections else top).append(i)
            continue
        lines = cell.source.splitlines()
        for j, line in enumerate(lines):
            heading = HEADING.match(line)
            if heading:
                after = next((rest for rest in lines[j + 1:] if rest.strip()), "")
                declared = NEEDS.match(after)
                needs = None if declared is None else re.findall(r"\d+", declared["sections"] or "")
                sections.append(Section(heading["title"], heading["number"], needs))
    return Lesson(path, cells, top, sections)


@dataclass
class YourTurn:
    answer: int          # the answer cell's index
    check: int           # the check cell's index
    name: str            # the variable the answer cell binds
    worked: str          # the answer cell with the worked answer in place of its placeholder line

    def label(self, lesson: Lesson) -> str:
        return f"{lesson.name} cell {self.answer} ({self.name})"


def your_turns(lesson: Lesson) -> list[YourTurn]:
    found = []
    for i, cell in enumerate(lesson.cells):
        if cell.cell_type != "code" or not re.search(r"\byour_turn\.lesson\d\d\.", cell.source):
            continue
        answer = lesson.source(i - 1)
        placeholder = PLACEHOLDER.search(answer)
        worked = WORKED_CODE.search(lesson.source(i + 1))
        assert placeholder and worked, f"{lesson.name} cell {i}: no placeholder line above or no worked code below"
        found.append(YourTurn(i - 1, i, placeholder["name"],
                              answer[:placeholder.start()] + worked[1] + answer[placeholder.end():]))
    return found


class CellFailed(AssertionError):
    """A cell raised; the message holds what it printed, traceback included."""


class LessonShell:
    """Cells run in this process, in one IPython shell, from the lessons' folder. ``restart``
    empties the namespace, as a kernel restart does (imported modules stay loaded, which only
    saves time). ``%matplotlib`` does nothing here: figures go to the Agg backend and are closed."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance()
        self.shell.register_magic_function(lambda line: None, "line", "matplotlib")
        self.restart()

    def restart(self) -> None:
        import matplotlib.pyplot as plt

        from sa_course import your_turn

        self.shell.reset(new_session=False)
        plt.close("all")
        your_turn.install(self.shell)        # as importing it in a new kernel does

    def run(self, source: str) -> str:
        """Run one cell; return what it printed, or raise CellFailed."""
        import contextlib
        import io

        printed = io.StringIO()
        with contextlib.chdir(ROOT / "notebooks"), contextlib.redirect_stdout(printed):
            result = self.shell.run_cell(source, store_history=True)
        if not result.success:
            raise CellFailed(f"{source[:200]}\n---\n{printed.getvalue()[-3000:]}")
        return printed.getvalue().strip()

    def close(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        runs = self.shell._sa_course_answer_runs
        self.shell.events.unregister("pre_run_cell", runs.pre_run_cell)
        self.shell.events.unregister("post_run_cell", runs.post_run_cell)
        InteractiveShell.clear_instance()
