"""Grading one notebook: read it, run its cells in a sandboxed kernel, run the checks here.

The checks (:mod:`sa_course.checks`) run in the grader's own process, on stand-ins for the
learner's functions (:class:`~sa_course.grade.wire.RemoteFunction`) and on inputs drawn
from a seed the grader draws now and never writes anywhere; references, numerical
gradients, comparisons, hints and the verdict never leave this process. Whatever the
notebook contains becomes one :class:`Row`; a failure of the grader itself (a kernel
that will not start) is a ``grader-error`` row, never blamed on the learner.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import EXERCISES
from ..checks.exercises import run_check
from ..checks.harness import Grading, LearnerError, NotAttempted, grading
from . import clock, notebook, points, sandbox, strict as strict_mode
from .kernel import KernelGone, KernelSession, KernelStartError, KernelTimeout
from .wire import GraderError, Remote, RemoteFunction

STATUSES = ("pass", "fail", "not attempted", "error", "timeout", "grader-error")
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
CELL_LINE = re.compile(r"(?:Cell In\[\d+\]|File <[^>]*>|input-\d+-\w+), line (\d+)")
MAX_MESSAGE = 3000


def clean(text: str, limit: int = MAX_MESSAGE) -> str:
    """Text safe to print: no escape sequences, no control characters but newlines, bounded."""
    text = CONTROL.sub("", ANSI.sub("", str(text).replace("\t", "    ").replace("\r\n", "\n").replace("\r", "\n")))
    return text if len(text) <= limit else text[:limit] + " [...]"


@dataclass
class Row:
    """One graded notebook."""
    exercise: str
    path: str
    status: str
    points: int
    max_points: int
    message: str
    seconds: float = 0.0
    checks: list = field(default_factory=list)     # each check's {"check", "status", "message"} (partial credit)

    def __post_init__(self):
        self.exercise, self.path, self.message = clean(self.exercise, 200), clean(self.path, 1000), clean(self.message)


@dataclass(frozen=True)
class Options:
    """How to grade: the per-notebook time limit, the memory cap, --strict, and the scratch space's size
    (where the grader can limit it: :mod:`~sa_course.grade.scratch`)."""
    timeout: float = 60.0
    memory_gib: float = 4.0
    strict: bool = False
    scratch_mib: int = sandbox.QUOTA >> 20
    points: dict | None = field(default=None, hash=False, compare=False)    # :mod:`~.points` (None: the course's)


def _first_lines(text: str, n: int = 3) -> str:
    return "\n".join(text.strip().splitlines()[:n])


def _location(traceback_lines) -> str:
    lines = CELL_LINE.findall(ANSI.sub("", "\n".join(traceback_lines or [])))
    return f" (line {lines[-1]})" if lines else ""


def _cell_error(reply, where: str) -> tuple[str, str]:
    """(status, message) for an exception raised in a learner's cell."""
    if reply.ename in ("NotImplementedError", "NotAttempted"):
        return "not attempted", f"{where}: {_first_lines(reply.evalue)}"
    if reply.ename == "SystemExit":
        return "error", (f"{where} called sys.exit(): remove it; a notebook must run top to bottom "
                         f"without stopping the kernel")
    return "error", f"{where} raised {reply.ename}: {_first_lines(reply.evalue, 2)}"


def _namespace(remote: Remote, exercise: str) -> dict:
    """Stand-ins for the exercise's functions that the notebook defined (missing ones are left out)."""
    found = remote.probe(EXERCISES[exercise].functions)
    return {name: RemoteFunction(remote, name) if is_callable else remote.types.of(kind)
            for name, (defined, is_callable, kind) in found.items() if defined}


def _checked(remote: Remote, run) -> tuple[str, str]:
    """(status, message): how ``run()`` (checks, on a seed drawn now) ended."""
    context = Grading(seed=secrets.randbits(64), shares=remote.shares)
    try:
        with grading(context):
            run()
    except NotAttempted as exc:
        return "not attempted", _first_lines(str(exc))
    except LearnerError as exc:
        return "error", _first_lines(str(exc))
    except AssertionError as exc:
        return "fail", _first_lines(str(exc))
    except Exception as exc:
        return "error", f"the checks stopped on {type(exc).__name__}: {_first_lines(str(exc), 2)}"
    return "pass", "\n".join(context.praise) or "all checks passed"


def _run_checks(remote: Remote, exercise: str, results: list) -> tuple[str, str, list]:
    """Each check of the exercise on its own, so that each earns its points (:mod:`~.points`): the
    row's status (the first that is not a pass) and message, and every check's result, appended to
    ``results`` as it ends (so that a later check's timeout keeps an earlier one's points)."""
    namespace = {}
    status, message = _checked(remote, lambda: namespace.update(_namespace(remote, exercise)))
    if status != "pass":
        return status, message, []
    for check, names in EXERCISES[exercise].checks:
        status, message = _checked(remote, lambda: run_check(check, names, namespace))
        results.append({"check": points.check_name(check), "status": status, "message": clean(message)})
    failed = [r for r in results if r["status"] != "pass"]
    if not failed or len(results) == 1:
        return (failed or results)[0]["status"], "\n".join(r["message"] for r in failed or results), results
    return failed[0]["status"], "\n".join(f"{r['check']}: {r['status']}: {r['message']}" for r in results), results


def _run(nb: notebook.Notebook, exercise: str, options: Options, iso: sandbox.Isolation) -> tuple:
    """(status, message), and each check's result when the checks ran."""
    limits = sandbox.Limits(int(options.memory_gib * (1 << 30)), int(options.timeout + 2 * 60 + 30),
                            scratch_bytes=options.scratch_mib << 20)
    session = KernelSession(iso, limits)
    try:
        if options.strict:
            session.strict, session.env_extra = strict_mode.prepare(
                exercise, session.scratch.base / "strict", iso.level == "bwrap")
        session.start()
        deadline = clock.now() + options.timeout
        labels = [f"code cell {i}" for i in range(1, len(nb.code) + 1)]
        where, checks = "the checks", []
        try:
            for label, source in zip(labels, nb.code):
                where = label
                reply = session.execute(source, deadline)
                if reply.status == "error":
                    status, message = _cell_error(reply, label + _location(reply.traceback))
                    return status, message
            where = "the checks"
            remote = Remote(session, deadline)
            remote.install()
            return _run_checks(remote, exercise, checks)
        except KernelTimeout:
            return "timeout", (f"stopped after {options.timeout:g} s, in {where}: an endless loop, or work too "
                               f"slow for the time limit (--timeout)"), checks
        except KernelGone:
            return "error", (f"the kernel died in {where}: exit(), os._exit(), a crash or running out of "
                             f"memory. A notebook must run top to bottom without stopping the kernel"), checks
        except LearnerError as exc:
            return "error", _first_lines(str(exc)), checks
    finally:
        session.close()


def grade_notebook(path, timeout: float = 60, options: Options | None = None) -> Row:
    """Grade one notebook in a fresh, sandboxed kernel; never raises for its content."""
    options = options or Options(timeout=timeout)
    path = Path(path)
    start = time.monotonic()
    exercise = None

    def row(status: str, message: str, checks=()) -> Row:
        return points.score(Row(exercise or path.stem, str(path), status, 0, 0, message,
                                round(time.monotonic() - start, 1), list(checks)), options.points)
    try:
        try:
            with clock.busy():
                nb = notebook.read(path)
        except notebook.BadNotebook as exc:
            exercise = next((e for e in EXERCISES if path.name[:3] == e[:3]), None)
            return row("error", str(exc))
        exercise = nb.exercise
        if exercise is None:
            return row("error", f"not an exercise notebook: no sa_course metadata, and the file name does not "
                                f"start like one of {list(EXERCISES)}")
        with clock.busy():
            untouched = notebook.untouched(nb)
        if untouched:
            return row("not attempted", "every function still raises NotImplementedError")
        return row(*_run(nb, exercise, options, sandbox.isolation()))
    except KernelStartError as exc:
        return row("grader-error", f"{exc}. This is the grader's problem, not your notebook's: grade it again")
    except GraderError as exc:
        return row("grader-error", f"{exc}: this is the grader's problem, not your notebook's; grade it again")
    except Exception as exc:
        return row("grader-error", f"the grader failed on this notebook ({type(exc).__name__}: {exc}); "
                                   f"this is the grader's problem, not your notebook's")
