"""Settings for every test session, including the notebooks run under nbval.

The kernels that nbval starts inherit this process's environment, so these reach them.
"""
import os
from pathlib import Path

import nbformat
import pytest

from sa_course import lesson_data

# Interactive widgets become static figures wherever stored outputs are compared.
os.environ.setdefault("SA_COURSE_STATIC", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

_DATA_NOTE = pytest.StashKey[str]()

# Lessons 00-05 run under nbval in tests/test_install.py, from the installed wheel: the same
# files, tested where learners get them. Named on the command line, one still runs here too.
collect_ignore = [f"notebooks/{p.name}" for p in sorted(Path(__file__).parent.glob("notebooks/0[0-5]_*.ipynb"))]


def pytest_collection_modifyitems(config, items):
    """Cells of lessons 06 and 07 tagged ``depends-on-data`` are compared with the outputs
    stored for the data their kernel will find: the CIFAR-10 JPEG copy, or the stand-in data
    when there is none; with any other data they run uncompared (see sa_course.lesson_data)."""
    tagged = [item for item in items if isinstance(getattr(item, "cell", None), dict)   # nbval's cells
              and hasattr(item, "options") and lesson_data.depends_on_data(item.cell)]
    if not tagged:
        return
    source = lesson_data.data_source()
    for item in tagged:
        outputs = lesson_data.expected_outputs(item.cell, source)
        if outputs is None:
            item.options["check"] = False
        else:
            item.cell = nbformat.from_dict({**item.cell, "outputs": outputs})
    config.stash[_DATA_NOTE] = f"{len(tagged)} notebook cells depend on the data; found {lesson_data.DESCRIPTION[source]}"


def pytest_report_collectionfinish(config):
    note = config.stash.get(_DATA_NOTE, None)
    return [note] if note else []
