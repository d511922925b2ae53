"""Grade exercise notebooks headless, each in a fresh, sandboxed kernel; the verdict is the grader's own.

    python -m sa_course.grade                      # every notebook in exercises/
    python -m sa_course.grade exercises/02_channel_gate.ipynb --timeout 60
    python -m sa_course.grade --strict --class submissions/ --jobs 4     # instructors

For each notebook the grader reads it as plain JSON (your file is only read), starts a
kernel in a scratch directory of its own (:mod:`~sa_course.grade.sandbox`), runs your code
cells top to bottom, skipping the check cells, and then runs the exercise's checks from
:mod:`sa_course.checks` *in the grader's process*: the kernel only runs your functions on
inputs the grader sends and returns their results as plain arrays
(:mod:`~sa_course.grade.wire`), so nothing your notebook does inside its kernel can change
the verdict. It prints one row per notebook:

    exercise | status | points | message

status is ``pass``, ``fail`` (a check found a wrong result), ``not attempted`` (a function
still raises NotImplementedError), ``error`` (your code raised, did not parse, exited or
killed the kernel, or the kernel sent back something the grader does not accept),
``timeout`` (longer than ``--timeout`` seconds) or ``grader-error`` (the grader itself
failed, for example a kernel that would not start twice: grade again). It writes the same
as JSON to ``--report`` and exits 0 only when every notebook passes (see
:mod:`~sa_course.grade.cli` for the other codes).

The modules: :mod:`~.notebook` (reading a notebook without trusting it), :mod:`~.sandbox`
and :mod:`~.launch` (limits, bubblewrap), :mod:`~.scratch` (the scratch directory, its size
limit and removal), :mod:`~.cgroup` (a cgroup per kernel), :mod:`~.kernel` and
:mod:`~.zmtp` (the kernel's start, cells, its socket), :mod:`~.clock` (the deadlines' clock),
:mod:`~.driver` and :mod:`~.wire` (the two ends of a call), :mod:`~.strict` (hiding the
reference and other array libraries), :mod:`~.runner` (one notebook), :mod:`~.report`
and :mod:`~.cli`; :mod:`~.gradescope` (the autograder zip, ``--gradescope-autograder``) and
:mod:`~.autograder` (what it runs on Gradescope for each submission). A class (``--class DIR``):
:mod:`~.classroom` (the folder: students, the notebook that counts per exercise, what is not
graded), :mod:`~.class_run` (the run), :mod:`~.gradebook` (the CSV, the LMS export),
:mod:`~.points` (points per check), :mod:`~.feedback` (the students' pages), :mod:`~.names`
(names as text); :mod:`~.tags` (check cells that lost their tags); around it :mod:`~.release` and
:mod:`~.collect` (``sa-course release`` and ``sa-course collect``).
"""
from .cli import grade_all, main, notebooks
from .report import format_table
from .runner import Options, Row, clean, grade_notebook

__all__ = ["main", "grade_notebook", "grade_all", "notebooks", "format_table", "Row", "Options", "clean"]
