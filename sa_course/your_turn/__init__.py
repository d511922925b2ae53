"""Instant feedback for the lessons' short "your turn" cells.

A "your turn" cell asks for something small: a shape to predict, a loop to vectorise, one
gradient term to add. It starts with a placeholder (``...``); the cell under it calls
:func:`check` with the learner's value, which prints one line and never raises, so that
*Run All* still works on an untouched lesson:

- ``Your turn (grouping shape): not tried yet ...`` while the value is still ``...``;
- ``Correct ...`` with what the result means;
- for a value that matches a known mistake (to tolerance), that mistake's lesson;
- otherwise what differs (type, shape, dtype, or the largest difference), never the answer.

The per-lesson tasks live next to this module (``lesson01`` ...): each defines the
expected value and its known mistakes, so a lesson cell reads
``your_turn.lesson01.half_shape(my_shape)``. ``your_turn.lessonNN`` is imported on first use.

In IPython (a notebook's kernel), importing this module starts an :class:`AnswerRuns`, which
notes after every cell the names it bound and whether it raised. A check told the name of
its answer (``answer="my_shape"``) then judges only the learner's latest run: when the cell
that last set that name raised, or has not run again since the previous check, the check says
so instead of judging the older value the name still holds.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable

import numpy as np

from ..cell_names import bound_names

#: What an untouched "your turn" cell holds.
PLACEHOLDER = Ellipsis

_LESSON_MODULE = re.compile(r"lesson\d\d")


def __getattr__(name: str):
    """``your_turn.lesson01`` imports ``sa_course.your_turn.lesson01`` the first time it is used."""
    if _LESSON_MODULE.fullmatch(name):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AnswerRuns:
    """What each cell run did to the names it binds, in one IPython shell.

    ``runs[name]`` is (the number of the run that last bound ``name``, its error or None);
    runs are counted from 1 as cells finish. ``checked[name]`` is the number of runs finished
    when ``name`` was last checked. ``running`` holds the names bound by the cell now running
    (None between cells), so that an answer and its check in one cell count as fresh.
    """

    def __init__(self, shell):
        self.shell = shell
        self.finished = 0
        self.runs: dict[str, tuple[int, str | None]] = {}
        self.checked: dict[str, int] = {}
        self.running: frozenset[str] | None = None

    def pre_run_cell(self, info) -> None:
        self.running = frozenset(bound_names(info.raw_cell or ""))

    def post_run_cell(self, result) -> None:
        self.finished += 1
        error = result.error_before_exec or result.error_in_exec
        for name in bound_names(result.info.raw_cell or ""):
            self.runs[name] = (self.finished, None if error is None else _error_line(error))
        self.running = None

    def problem(self, answer: str) -> tuple[str, str] | None:
        """Why ``answer``'s value is not the learner's latest: ("raised", the error) or
        ("stale", ""); None when it is (or when nothing is known about it). Notes the check."""
        if self.running is None:                  # called outside a cell: nothing to go by
            return None
        last = self.runs.get(answer)
        previous_check = self.checked.get(answer)
        self.checked[answer] = self.finished
        if answer in self.running or last is None:
            return None
        run, error = last
        if error is not None:
            return "raised", error
        if previous_check is not None and run <= previous_check:
            return "stale", ""
        return None


def _error_line(error: BaseException, limit: int = 90) -> str:
    lines = str(error).strip().splitlines()
    text = type(error).__name__ + (f": {lines[0]}" if lines else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def install(shell=None) -> AnswerRuns | None:
    """Start following answer cells in ``shell`` (default: the running IPython, if any), in
    place of any earlier :class:`AnswerRuns` there. Returns it, or None outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        shell = get_ipython()
        if shell is None:
            return None
    old = getattr(shell, "_sa_course_answer_runs", None)
    if old is not None:
        shell.events.unregister("pre_run_cell", old.pre_run_cell)
        shell.events.unregister("post_run_cell", old.post_run_cell)
    runs = AnswerRuns(shell)
    shell.events.register("pre_run_cell", runs.pre_run_cell)
    shell.events.register("post_run_cell", runs.post_run_cell)
    shell._sa_course_answer_runs = runs
    return runs


def _answer_runs() -> AnswerRuns | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else getattr(shell, "_sa_course_answer_runs", None)


def _as_array(value) -> np.ndarray | None:
    """``value`` as a NumPy array, or None when it cannot be one (ragged lists, odd objects)."""
    try:
        return np.asarray(value)
    except Exception:
        return None


def _same(yours, expected, rtol: float) -> bool:
    """Equal for ints, tuples and strings; same shape and close values for arrays. Never raises."""
    try:
        if isinstance(expected, np.ndarray) or isinstance(yours, np.ndarray):
            a, b = _as_array(yours), _as_array(expected)
            if a is None or b is None or a.shape != b.shape:
                return False
            if not (np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number)):
                return False
            scale = float(np.abs(b).max(initial=0.0))
            return bool(np.allclose(a, b, rtol=rtol, atol=rtol * (1.0 + scale)))
        if isinstance(expected, tuple):
            return isinstance(yours, (tuple, list)) and tuple(yours) == expected
        return bool(yours == expected)
    except Exception:
        return False


def _short(value, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _difference(yours, expected) -> str:
    """What differs, in words, without giving the expected value away."""
    try:
        if isinstance(expected, np.ndarray):
            a = _as_array(yours)
            if a is None or a.dtype == object:
                return f"yours is {_short(yours)}, expected an array"
            if a.shape != expected.shape:
                return f"yours has shape {a.shape}, expected {expected.shape}"
            if not np.issubdtype(a.dtype, np.number):
                return f"yours has dtype {a.dtype}, expected numbers ({expected.dtype})"
            diff = np.abs(a.astype(np.float64) - expected)
            if not np.isfinite(diff).all():
                return "the shapes agree but yours holds nan or inf"
            return f"the shapes agree but the values differ (largest difference {diff.max():.2g})"
        if isinstance(expected, tuple) and not isinstance(yours, (tuple, list)):
            return f"yours is {_short(yours)}, expected a tuple of {len(expected)} numbers"
        if isinstance(expected, tuple) and len(yours) != len(expected):
            return f"yours has {len(yours)} entries, expected {len(expected)}"
    except Exception:
        pass
    return f"yours is {_short(yours)}"


def _value(mistake) -> object:
    return mistake() if callable(mistake) else mistake


def check(task: str, yours, expected, mistakes: Iterable[tuple[str, object | Callable[[], object]]] = (),
          *, right: str = "", rtol: float = 1e-9, answer: str | None = None) -> bool:
    """Print one line about the learner's value for ``task`` and return whether it is right.

    ``mistakes`` are (lesson, value) pairs, the value or a function computing it: a hint is
    given only when the learner's value matches that mistake's value, never as a guess.
    A mistake whose value cannot be computed is skipped; nothing here raises.
    ``answer`` names the variable the answer cell binds: in IPython, a value that cell did not
    bind in a successful run since the last check is not judged (see :class:`AnswerRuns`).
    """
    runs = _answer_runs() if answer else None
    problem = runs.problem(answer) if runs is not None else None
    if problem is not None and problem[0] == "raised":
        print(f"Your turn ({task}): your answer cell stopped with {problem[1]} the last time it ran, so "
              f"{answer} still holds an older value. Fix the error shown under that cell, run it again, "
              "then this one.")
        return False
    if yours is PLACEHOLDER:
        print(f"Your turn ({task}): not tried yet. Replace the ... above, run that cell, then this one.")
        return False
    if problem is not None:
        print(f"Your turn ({task}): your answer cell has not run since the last check, so there is "
              "nothing new to check. Change it, run it (Shift-Enter), then this cell.")
        return False
    if _same(yours, expected, rtol):
        print(f"Correct ({task}).{' ' + right if right else ''}")
        return True
    for lesson, mistake in mistakes:
        try:
            value = _value(mistake)
        except Exception:
            continue
        if _same(yours, value, rtol):
            print(f"Not yet ({task}): {lesson}")
            return False
    print(f"Not yet ({task}): {_difference(yours, expected)}. "
          "The worked answer below is folded; try once more first.")
    return False


if _answer_runs() is None:
    install()
