"""The set-up cell: the first cell of every lesson, exercise and solution notebook.

It makes a notebook runnable on Colab and Kaggle, where the course is not installed, and
does nothing (and prints nothing, so stored outputs stay empty) where ``sa_course`` imports:

- where ``sa_course`` imports (a clone, a ``pip install``, a ``sa-course init`` folder): nothing;
- in a hosted runtime (Colab sets ``COLAB_RELEASE_TAG`` or ``COLAB_GPU``, Kaggle
  ``KAGGLE_KERNEL_RUN_TYPE``): ``pip install`` of ``$SA_COURSE_INSTALL`` (a package name, a
  wheel, a folder or a VCS URL; by default the distribution ``shuffle-attention-course``) into
  this kernel's Python, pinning the runtime's own torch when it is at least :data:`TORCH_MIN`,
  then one line saying what it did, and one more when a module already imported was replaced
  (a restart is needed then). A source pip cannot install stops the notebook with one line
  naming the source and the fix;
- anywhere else: one line saying how to install the course; it installs nothing.

The cell runs before the course is importable, so it uses the standard library only, and this
module holds its text (:data:`SOURCE`) as the one copy: the exercise builder writes it into
exercises/ and solutions/, and a test checks that every notebook starts with exactly this text.
"""
from __future__ import annotations

import re

#: The cell's id in every notebook.
CELL_ID = "set-up"

SOURCE = '''\
# Set-up: on Colab or Kaggle this installs the course; where the course is installed it does nothing.
import importlib, importlib.metadata as metadata, importlib.util, os, re, subprocess, sys

if importlib.util.find_spec("sa_course") is None:
    SOURCE = os.environ.get("SA_COURSE_INSTALL", "shuffle-attention-course")  # a name, wheel, folder or VCS URL
    TORCH_MIN = "2.5"  # the oldest torch the course supports (its package metadata says the same)
    KAGGLE, COLAB = "KAGGLE_KERNEL_RUN_TYPE" in os.environ, {"COLAB_RELEASE_TAG", "COLAB_GPU"} & set(os.environ)
    if not (KAGGLE or COLAB):
        print(f"The course is not installed in this Python: `pip install {SOURCE}` (or `make course` in a clone).")
    else:
        release = lambda version: tuple(map(int, re.match(r"\\d+(\\.\\d+)*", version)[0].split(".")))
        torch = next((d.version for d in metadata.distributions(name="torch")), None)
        keep = torch is not None and release(torch) >= release(TORCH_MIN)  # then pinned, so pip keeps it
        owners = metadata.packages_distributions()  # the distribution and version of each module imported so far
        loaded = {d: metadata.version(d) for m in list(sys.modules) for d in owners.get(m.partition(".")[0], [])}
        print(f"Installing the course from {SOURCE}" + (f", keeping this runtime's torch {torch}" if keep else
              f", upgrading torch {torch} (the course needs {TORCH_MIN} or newer)" if torch else ""), end="... ")
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", SOURCE] + [f"torch=={torch}"] * keep,
                             capture_output=True, text=True)
        importlib.invalidate_caches()
        if pip.returncode or importlib.util.find_spec("sa_course") is None:
            why = ((pip.stderr.strip() if pip.returncode else "") or "no sa_course in it").splitlines()[-1]
            raise SystemExit(f"Could not install the course from SA_COURSE_INSTALL={SOURCE!r} ({why}): set it to the "
                             "course's name, wheel, folder or VCS URL (on Kaggle, turn Internet on in the notebook's "
                             "settings), then run this cell again.")
        replaced = ", ".join(sorted(d for d, version in loaded.items() if metadata.version(d) != version))
        restart = "Run > Restart & clear cell outputs" if KAGGLE else "Runtime > Restart session"
        print("done." + (f" Restart needed: {replaced} changed after it was imported. {restart}, then run all "
                         "cells again." if replaced else ""))'''

#: The oldest torch the course supports, as the cell states it (pyproject.toml must agree).
TORCH_MIN = re.search(r'^    TORCH_MIN = "([\d.]+)"', SOURCE, re.MULTILINE)[1]


def new_cell():
    """The set-up cell as a new, unexecuted notebook code cell."""
    import nbformat

    cell = nbformat.v4.new_code_cell(SOURCE)
    cell.id = CELL_ID
    return cell


def is_setup_cell(cell) -> bool:
    """Whether a notebook cell is the set-up cell (by its id)."""
    return cell.get("cell_type") == "code" and cell.get("id") == CELL_ID
