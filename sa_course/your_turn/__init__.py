"""Instant feedback for the lessons' short "your turn" cells.

A "your turn" cell asks for something small: a shape to predict, a loop to vectorise, one
gradient term to add. It starts with a placeholder (``...``); the cell under it calls
:func:`check` with the learner's value, which prints one line and never raises, so that
*Run All* still works on an untouched lesson:

- ``Your turn (grouping shape): not tried yet ...`` while the value is still ``...``;
- ``Correct ...`` with what the result means;
- for a value that matches a known mistake (to tolerance), that mistake's lesson;
- otherwise what differs (shape, dtype, or the largest difference), never the answer.

The per-lesson tasks live next to this module (``lesson01`` ...): each defines the
expected value and its known mistakes, so a lesson cell reads
``your_turn.lesson01.grouped_shape(my_answer)``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

#: What an untouched "your turn" cell holds.
PLACEHOLDER = Ellipsis


def _same(yours, expected, rtol: float) -> bool:
    """Equal for ints, tuples and strings; same shape and close values for arrays."""
    if isinstance(expected, np.ndarray) or isinstance(yours, np.ndarray):
        try:
            a, b = np.asarray(yours), np.asarray(expected)
        except Exception:
            return False
        if a.shape != b.shape or not np.issubdtype(a.dtype, np.number):
            return False
        return bool(np.allclose(a, b, rtol=rtol, atol=rtol * (1.0 + float(np.abs(b).max(initial=0.0)))))
    if isinstance(expected, tuple) and isinstance(yours, (tuple, list)):
        return tuple(yours) == expected
    return yours == expected


def _difference(yours, expected) -> str:
    if isinstance(expected, np.ndarray):
        a = np.asarray(yours) if not isinstance(yours, np.ndarray) else yours
        if a.shape != expected.shape:
            return f"yours has shape {a.shape}, expected {expected.shape}"
        if not np.issubdtype(a.dtype, np.number):
            return f"yours has dtype {a.dtype}, expected numbers ({expected.dtype})"
        diff = np.abs(a.astype(np.float64) - expected)
        return f"the shapes agree but the values differ (largest difference {diff.max():.2g})"
    return f"yours is {yours!r}"


def check(task: str, yours, expected, mistakes: Iterable[tuple[str, object | Callable[[], object]]] = (),
          *, right: str = "", rtol: float = 1e-9) -> bool:
    """Print one line about the learner's value for ``task`` and return whether it is right.

    ``mistakes`` are (lesson, value) pairs, the value or a function computing it: a hint is
    given only when the learner's value matches that mistake's value, never as a guess.
    """
    if yours is PLACEHOLDER:
        print(f"Your turn ({task}): not tried yet. Replace the ... above, run that cell, then this one.")
        return False
    if _same(yours, expected, rtol):
        print(f"Correct ({task}).{' ' + right if right else ''}")
        return True
    for lesson, value in mistakes:
        if _same(yours, value() if callable(value) else value, rtol):
            print(f"Not yet ({task}): {lesson}")
            return False
    print(f"Not yet ({task}): {_difference(yours, expected)}. The worked answer below is folded; try once more first.")
    return False
