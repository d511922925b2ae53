"""Execute notebooks in place, each in a fresh kernel, so that their stored outputs are current.

    python -m sa_course.run_notebooks notebooks/*.ipynb        (the `make notebooks` target)

The kernel gets the same environment as the tests (see conftest.py): SA_COURSE_STATIC=1
(widgets render as static figures) and MPLBACKEND=Agg. Execution timestamps are not
recorded, so re-running an unchanged notebook changes nothing but what really changed.
A failing cell stops the run with the notebook, the cell and the error; the failing
notebook is left as it was on disk. Lessons 06 and 07 also store what their data-dependent
cells print without CIFAR-10, and need the course's copy of it (see :mod:`sa_course.lesson_data`).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from . import lesson_data
from .notebook_meta import KERNEL_NAME, notebook_metadata

#: What conftest.py sets for the notebooks run under nbval: keep the two in step.
KERNEL_ENV = {"SA_COURSE_STATIC": "1", "MPLBACKEND": "Agg"}


def clean_metadata(nb: nbformat.NotebookNode) -> None:
    """Keep only what a reader needs: the kernel and language as the kernel reports them
    (so that JupyterLab finds nothing to update on opening), no per-cell timings."""
    nb.metadata = nbformat.from_dict(notebook_metadata())
    for cell in nb.cells:
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)


def execute(nb: nbformat.NotebookNode, path: Path, timeout: int, env: dict[str, str] | None = None) -> None:
    """Run every cell of ``nb`` (read from ``path``) in a fresh kernel started in its folder."""
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, record_timing=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute(env={**os.environ, **KERNEL_ENV, **(env or {})})


def run_notebook(path: Path, timeout: int) -> float:
    """Execute ``path`` top to bottom in a fresh kernel and write it back. Returns seconds.

    A lesson with cells tagged ``depends-on-data`` (:mod:`sa_course.lesson_data`) runs twice:
    first with CIFAR-10 hidden, to store what those cells print on the stand-in data, then with
    the course's JPEG copy of CIFAR-10 (which it needs) for the outputs everyone sees."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    if any(lesson_data.depends_on_data(cell) for cell in nb.cells):
        lesson_data.require_jpeg_copy(path)
        on_stand_in = copy.deepcopy(nb)
        with tempfile.TemporaryDirectory() as folder:
            execute(on_stand_in, path, timeout, lesson_data.hidden_data_env(folder))
        lesson_data.store_stand_in_outputs(nb, on_stand_in)
    execute(nb, path, timeout)
    seconds = time.perf_counter() - start
    clean_metadata(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def failed_cell(nb_path: Path, exc: Exception) -> str:
    """A short message: which notebook, which cell, and the error's last lines."""
    text = str(exc).strip().splitlines()
    tail = "\n".join(text[-15:])
    return f"{nb_path}: a cell failed, the notebook was not written.\n{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks (.ipynb) to execute in place")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    args = parser.parse_args(argv)
    for path in args.paths:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file (.ipynb)")
    total = 0.0
    for path in args.paths:
        try:
            seconds = run_notebook(path, args.timeout)
        except (CellExecutionError, CellTimeoutError) as exc:
            print(failed_cell(path, exc), file=sys.stderr)
            return 1
        except lesson_data.DataMissing as exc:
            print(exc, file=sys.stderr)
            return 1
        total += seconds
        print(f"{path}: executed in {seconds:.1f} s")
    print(f"{len(args.paths)} notebook(s) executed in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
