"""Checks for the exercises: they take *your* functions and tell you what is wrong.

Each ``check_*`` runs your functions on small random float64 inputs with random,
non-trivial parameters, in shapes whose axes all differ in size (so that nothing broadcast
against the wrong axis can pass), and compares every output with the reference in
``sa_numpy`` (to about 1e-10) and every gradient with a numerical gradient (centred
differences, about 1e-7); it runs each forward a second time before the backward, and
runs forward and backward on float32 inputs, where every array returned must stay float32.
On the first disagreement it raises :class:`CheckFailure` (an ``AssertionError``): the
message names the tensor, reports a wrong shape or dtype before any value, gives the largest
absolute and relative error and the first index that differs (yours and expected) and, only
when your output matches it to rounding error, a hint: a *known mistake* (the checks
recompute each one and compare), or what the difference is (outputs swapped, the right
values in the wrong order, a constant or a missing factor, ...). The error's ``mistake``
attribute is its id. In a notebook, IPython shows these outcomes as the message and its
hint alone, without the checks' own frames; :func:`full_traceback` prints the whole traceback.

Other outcomes, each its own exception so that the grader can tell them apart:

- :class:`NotAttempted` (a ``NotImplementedError``): a function still raises
  ``NotImplementedError``, so it has not been written yet;
- :class:`LearnerError` (an ``AssertionError``): your function raised an exception;
  the message quotes the line of your code that raised it.

A passing check prints one line with the largest errors it measured.

The package: :mod:`~sa_course.checks.harness` (calling your functions, comparing,
reporting), one module per exercise (:mod:`~sa_course.checks.grouping`,
:mod:`~sa_course.checks.channel_gate`, :mod:`~sa_course.checks.spatial_gate` with GroupNorm,
:mod:`~sa_course.checks.shuffle`, :mod:`~sa_course.checks.sa_layer`), the table of known
mistakes and their hints (:mod:`~sa_course.checks.mistakes`), the generic diagnoses and the
failure message (:mod:`~sa_course.checks.diagnose`) and the list of exercises
(:mod:`~sa_course.checks.exercises`).
"""
from .channel_gate import check_channel_gate
from .exercises import EXERCISES, Exercise, run_exercise, stub_message
from .grouping import check_grouping
from .harness import EPS, NUMERIC_RTOL, CheckFailure, Feedback, LearnerError, NotAttempted, full_traceback
from .sa_layer import check_sa_layer
from .shuffle import check_shuffle
from .spatial_gate import check_groupnorm, check_spatial_gate

__all__ = [
    "check_grouping", "check_channel_gate", "check_groupnorm", "check_spatial_gate", "check_shuffle",
    "check_sa_layer", "run_exercise", "stub_message", "EXERCISES", "Exercise",
    "NotAttempted", "LearnerError", "CheckFailure", "Feedback", "full_traceback", "NUMERIC_RTOL", "EPS",
]
