"""The checks' shared machinery: call a learner's function, compare, report.

Every exercise module builds its inputs with :func:`rng` and :func:`away_from_zero`, calls
the learner's functions through :func:`call` (which also catches in-place writes),
compares each output with :class:`Report` (reference and numerical gradient; a failure is
described by :mod:`sa_course.checks.diagnose`, with a hint when the output matches a known
mistake from :mod:`sa_course.checks.mistakes` or a generic diagnosis) and ends with one line
of praise.

The same code serves two places. In a notebook's check cell the functions are the
learner's own. In the grader (:mod:`sa_course.grade`) they are stand-ins that run the
learner's function in the learner's kernel and bring back plain arrays; the grader then
installs a :class:`Grading` context, which draws the inputs from a seed of its own, answers
"do these two arrays share memory" from what the kernel reported, and collects the praise
instead of printing it.
"""
from __future__ import annotations

import contextvars
import functools
import os
import sys
import textwrap
import traceback
from dataclasses import dataclass, field

import numpy as np

from sa_numpy.gradcheck import compare, numerical_gradient

from .diagnose import a_kind, failure, hinted
from .mistakes import in_place_hint

NUMERIC_RTOL = 1e-7   # analytic vs centred differences with h = 1e-6, in float64
EPS = 1e-3            # the checks pass eps explicitly, larger than the default, so eps mistakes show


WIDTH = 100          # a check failure's box wraps at this many characters, at word boundaries
FULL_TRACEBACK = "full traceback: `from sa_course.checks import full_traceback; full_traceback()`"


class Feedback(Exception):
    """An outcome of a check that IPython shows as its message and hint alone, in a short box.

    IPython asks an exception for ``_render_traceback_()`` and shows the lines it returns
    instead of a traceback: here the message, then its ``hint:``, wrapped at word boundaries,
    and one line on how to see the full traceback (:func:`full_traceback`). ``str()`` of the
    exception is unchanged, so the grader and pytest read the same message.
    """
    full_traceback_line = True

    def _render_traceback_(self) -> list[str]:
        return render(self)


class NotAttempted(Feedback, NotImplementedError):
    """A function of the exercise still raises NotImplementedError."""
    full_traceback_line = False     # nothing to see: the stub raised where it says


class LearnerError(Feedback, AssertionError):
    """A function of the exercise raised an exception while being checked."""


class CheckFailure(Feedback, AssertionError):
    """A check failed. Its ``mistake`` is the id of what the hint diagnoses (None without a hint);
    raised as is by :func:`call` (the grader's stand-ins raise it with a complete message)."""

    def __init__(self, message: str, mistake: str | None = None):
        super().__init__(message)
        self.mistake = mistake


def _wrapped(line: str, width: int) -> list[str]:
    """One line of a message wrapped at word boundaries; a hint's lines keep its indent."""
    indent = " " * (len(line) - len(line.lstrip()))
    follow = indent + " " * 6 if line.lstrip().startswith("hint:") else indent + "  "
    return textwrap.wrap(line, width, subsequent_indent=follow, break_long_words=False,
                         break_on_hyphens=False) or [""]


def render(error: BaseException, width: int = WIDTH) -> list[str]:
    """The lines IPython shows for a check's outcome: ``Name: message``, its hint, and how to
    see the full traceback; no frame of the checks."""
    lines = f"{type(error).__name__}: {error}".splitlines()
    shown = [part for line in lines for part in _wrapped(line, width)]
    if getattr(error, "full_traceback_line", False):
        shown.append(FULL_TRACEBACK)
    return shown


def full_traceback(error: BaseException | None = None) -> None:
    """Print the full traceback of ``error`` (default: the last exception the notebook showed),
    with the frames of the checks and, for an exception of your own code, where it started."""
    error = error if error is not None else getattr(sys, "last_value", None)
    if error is None:
        print("no exception to show yet: run the check cell first")
        return
    traceback.print_exception(error, file=sys.stdout)


@dataclass
class Grading:
    """Set by the grader while it runs the checks on stand-ins for the learner's functions."""
    seed: int
    shares: callable            # shares(out, arr) -> bool, from what the learner's kernel reported
    praise: list = field(default_factory=list)


_GRADING: contextvars.ContextVar[Grading | None] = contextvars.ContextVar("sa_course_grading", default=None)


def grading(context: Grading):
    """Install a grading context for the current thread: ``with grading(ctx): run_exercise(...)``."""
    class _Scope:
        def __enter__(self):
            self.token = _GRADING.set(context)
            return context

        def __exit__(self, *exc):
            _GRADING.reset(self.token)
    return _Scope()


_COURSE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_traceback(check):
    """A check as learners call it: whatever fails comes out as :class:`Feedback` (a failed
    comparison as a :class:`CheckFailure` with its ``mistake``), which IPython shows as the
    message and the hint alone, while the traceback stays on the exception for
    :func:`full_traceback`."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True     # pytest hides this frame
        try:
            return check(*args, **kwargs)
        except Feedback:
            raise
        except AssertionError as exc:
            failure = CheckFailure(str(exc), getattr(exc, "mistake", None))
            raise failure.with_traceback(exc.__traceback__.tb_next) from exc.__cause__
    return wrapper


def where(tb) -> str:
    """The innermost frame of the learner's own code in a traceback, as ' (line N: `src`)'."""
    frames = [f for f in traceback.extract_tb(tb)
              if not f.filename.startswith(_COURSE_DIR) and "site-packages" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    src = f" `{f.line.strip()}`" if f.line else ""
    return f"\n  at line {f.lineno} of your {f.name}:{src}"


def arrays(value):
    """Every ndarray inside a value (arrays, tuples and lists of them, dicts of them)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from arrays(v)


def call(fn, name: str, args: list[tuple[str, object]], returns: tuple[str, ...], watch=(), **kwargs):
    """Call a learner's function; check it left its array inputs alone and returned ``returns``.

    ``args`` are (label, value) pairs in positional order; arrays inside any argument
    except one labelled "cache", and inside the (label, value) pairs of ``watch`` (a
    backward's cache may hold the forward's inputs), must be unchanged after the call.
    """
    if not callable(fn):
        raise AssertionError(f"{name} should be a function; yours is {a_kind(fn)}")
    watched = [(label, a, a.copy()) for label, v in (*args, *watch) if label != "cache" for a in arrays(v)]
    try:
        result = fn(*(v for _, v in args), **kwargs)
    except NotImplementedError:
        raise NotAttempted(f"{name} is not written yet: it still raises NotImplementedError. "
                           f"Replace the `raise NotImplementedError(...)` line with your code.") from None
    except (LearnerError, CheckFailure):
        raise
    except Exception as exc:
        raise LearnerError(f"{name} raised {type(exc).__name__}: {exc}{where(exc.__traceback__)}") from exc
    for label, arr, before in watched:
        if not np.array_equal(arr, before, equal_nan=True):
            changed = np.argwhere(~((arr == before) | (np.isnan(arr) & np.isnan(before))))[0]
            raise hinted(f"{name} changed its input {label} in place (first at index "
                         f"{tuple(int(i) for i in changed)}).", "generic.in_place", in_place_hint(name, label))
    expected = returns[0] if len(returns) == 1 else f"a tuple ({', '.join(returns)})"
    if len(returns) > 1:
        if not isinstance(result, (tuple, list)):
            raise AssertionError(f"{name} should return {expected}; yours returned {a_kind(result)}")
        if len(result) != len(returns):
            raise AssertionError(f"{name} should return {expected} ({len(returns)} items); "
                                 f"yours returned {a_kind(result)} of {len(result)} items")
        return tuple(result)
    return result


def expect(name: str, ours, reference, candidates=(), rtol: float | None = None):
    """compare(); when it fails, the failure in the learner's terms, with a hint when one of the
    candidates (known mistakes, then generic diagnoses; see :mod:`sa_course.checks.diagnose`) matches."""
    if isinstance(ours, np.ndarray):
        try:
            return compare(name, ours, reference, rtol=rtol)
        except AssertionError:
            pass
    raise failure(name, ours, np.asarray(reference), candidates, rtol)


def shares_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """np.shares_memory, or, while grading, what the learner's kernel reported for the two."""
    context = _GRADING.get()
    return context.shares(a, b) if context is not None else bool(np.shares_memory(a, b))


def not_a_view(name: str, out: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
    for label, arr in inputs.items():
        if shares_memory(out, arr):
            raise AssertionError(
                f"{name} shares memory with the input {label}: it is a view of it, so writing into "
                f"one changes the other.\n  hint: reshape and slicing return views when they can; "
                f"return a new array (add .copy())")


def numeric(f, x: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """Numerical gradient of sum(f(x) * dout) on a private copy of x."""
    return numerical_gradient(f, np.array(x, dtype=np.float64, copy=True), dout)


@dataclass
class Report:
    """Collects the errors a check measured, for its one line of praise. An error is the largest
    absolute difference divided by the largest entry of the expected tensor."""
    title: str
    ref: float = 0.0
    num: float | None = None

    def expect(self, name: str, ours, expected, mistakes=(), numeric: bool = False):
        """expect() (at NUMERIC_RTOL against a numerical gradient), and record the error."""
        comparison = expect(name, ours, expected, mistakes, rtol=NUMERIC_RTOL if numeric else None)
        scale = float(np.max(np.abs(expected), initial=0.0))
        error = comparison.max_abs / scale if scale > 0 else comparison.max_abs
        if numeric:
            self.num = max(self.num or 0.0, error)
        else:
            self.ref = max(self.ref, error)

    def outputs(self, names, ours, refs, numerics, mistakes: dict, no_alias: dict) -> None:
        """Each output against its numerical gradient (when given), then against the reference.
        A wrong type, shape or dtype is reported against the reference alone: it is no matter
        of numerical gradients."""
        for name, mine, ref, num in zip(names, ours, refs, numerics):
            same_kind = isinstance(mine, np.ndarray) and mine.shape == ref.shape and mine.dtype == ref.dtype
            if num is not None and same_kind:
                self.expect(f"{name} (vs numerical gradient)", mine, num, mistakes.get(name, ()), numeric=True)
            self.expect(name, mine, ref, mistakes.get(name, ()))
            not_a_view(name, mine, no_alias)

    def praise(self) -> None:
        fmt = lambda v: f"{v:.0e}" if v else "0"
        num = "" if self.num is None else f", vs numerical gradients {fmt(self.num)}"
        text = f"Correct: {self.title}. Largest relative error vs sa_numpy {fmt(self.ref)}{num}. Well done!"
        context = _GRADING.get()
        if context is None:
            print(text)
        else:
            context.praise.append(text)


def _named_arrays(label: str, value):
    """(name, array) for every array in a returned item: "(x0, x1)" names a pair, a dict its keys."""
    if isinstance(value, np.ndarray):
        yield label, value
    elif isinstance(value, dict):
        for key, v in value.items():
            yield from _named_arrays(f"{label}[{key!r}]", v)
    elif isinstance(value, (tuple, list)):
        parts = label.strip("()").split(", ")
        for i, v in enumerate(value):
            yield from _named_arrays(parts[i] if len(parts) == len(value) else f"{label}[{i}]", v)


def keeps_float32(fn, name: str, args: list[tuple[str, object]], returns: tuple[str, ...], **kwargs):
    """Run a function on float32 inputs: every array it returns (not the cache) must be float32.
    Returns what the function returned, so that a backward can run on the forward's cache."""
    result = call(fn, name, args, returns, **kwargs)
    for label, item in zip(returns, result if len(returns) > 1 else (result,)):
        for part, arr in ([] if label == "cache" else _named_arrays(label, item)):
            if arr.dtype != np.float32:
                raise hinted(f"{part}: dtype {arr.dtype} for float32 input, expected float32", "generic.float32",
                             "keep the input's dtype: create arrays with dtype=x.dtype (np.zeros(shape) is "
                             "float64), avoid .astype(np.float64), and keep float64 values out of the cache")
    return result


def seed(base: int) -> int:
    """The seed a check uses: ``base`` in a notebook, one drawn by the grader while grading."""
    context = _GRADING.get()
    return base if context is None else int(np.random.default_rng([context.seed, base]).integers(2**63))


def rng(base: int):
    return np.random.default_rng(seed(base))


def away_from_zero(gen, shape) -> np.ndarray:
    """Random values with |v| in [0.5, 1.5] and random signs: never a trivial parameter."""
    return gen.uniform(0.5, 1.5, shape) * gen.choice([-1.0, 1.0], shape)
