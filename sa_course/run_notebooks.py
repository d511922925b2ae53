"""Execute notebooks in place, each in a fresh kernel, so that their stored outputs are current.

    python -m sa_course.run_notebooks notebooks/*.ipynb        (the `make notebooks` target)

The kernel gets the same environment as the tests (see conftest.py): SA_COURSE_STATIC=1
(widgets render as static figures) and MPLBACKEND=Agg. Execution timestamps are not
recorded, so re-running an unchanged notebook changes nothing but what really changed.
A failing cell stops the run with the notebook, the cell and the error; the failing
notebook is left as it was on disk.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

#: What conftest.py sets for the notebooks run under nbval: keep the two in step.
KERNEL_ENV = {"SA_COURSE_STATIC": "1", "MPLBACKEND": "Agg"}
KERNEL_NAME = "python3"


def clean_metadata(nb: nbformat.NotebookNode) -> None:
    """Keep only what a reader needs: the kernel, the language, no per-cell timings."""
    nb.metadata = nbformat.from_dict({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": KERNEL_NAME},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    })
    for cell in nb.cells:
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)


def run_notebook(path: Path, timeout: int) -> float:
    """Execute ``path`` top to bottom in a fresh kernel and write it back. Returns seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, record_timing=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    client.execute(env={**os.environ, **KERNEL_ENV})
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
        total += seconds
        print(f"{path}: executed in {seconds:.1f} s")
    print(f"{len(args.paths)} notebook(s) executed in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
