"""The notebook metadata the generators write: what the course's kernel itself reports.

JupyterLab overwrites a notebook's ``kernelspec`` and ``language_info`` with what the
kernel it starts reports, and marks the notebook modified when they differ: a learner
who only opened a lesson would see an unsaved change. So the lesson runner
(:mod:`sa_course.run_notebooks`) and the exercise builder (:mod:`sa_course.build_exercises`)
store exactly the kernelspec installed in this environment and the ``language_info`` that
ipykernel sends.
"""
from __future__ import annotations

KERNEL_NAME = "python3"


def kernelspec() -> dict:
    """{"name", "display_name", "language"} of the installed ``python3`` kernelspec."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    return {"display_name": spec.display_name, "language": spec.language, "name": KERNEL_NAME}


def language_info() -> dict:
    """What ipykernel reports as ``language_info`` (the Python version included)."""
    from ipykernel.ipkernel import IPythonKernel

    return dict(IPythonKernel.language_info)


def notebook_metadata(**extra) -> dict:
    """The metadata of a generated notebook; ``extra`` adds the course's own keys."""
    return {"kernelspec": kernelspec(), "language_info": language_info(), **extra}
