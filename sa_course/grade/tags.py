"""Notebooks whose cell tags were lost: telling a check cell by what it holds.

The grader skips the cells tagged ``check``: they import the checks from ``sa_course`` and call
them on your functions, and the grader runs the same checks itself, outside your kernel. Some
tools drop cell metadata (a notebook rebuilt by copy and paste, a converter); such a check cell
would then run in the kernel, where ``--strict`` grading hides ``sa_course``, and fail with
``No module named 'sa_course'``. So a code cell that holds nothing but what the course's check
cells hold (comments, ``from sa_course.<module> import <names>`` and calls of those names on plain
names) counts as a check cell too. Anything more in it and it runs as your code; if it then stops
on the hidden package, :func:`explain` says why and what to do.
"""
from __future__ import annotations

import re

MAX_CHARS = 2000             # a check cell is a few lines; a longer cell is never one
IMPORT = re.compile(r"from\s+sa_course(?:\.\w+)*\s+import\s+(\w+(?:\s*,\s*\w+)*)\s*")
CALL = re.compile(r"(\w+)\(\s*(?:\w+\s*(?:,\s*\w+\s*)*,?)?\s*\)\s*")
HIDDEN = "No module named 'sa_course'"


def is_check_cell(source: str) -> bool:
    """True for a cell of only comments, imports from sa_course and calls of what they import."""
    if len(source) > MAX_CHARS:
        return False
    imported, called = set(), False
    for line in source.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if m := IMPORT.fullmatch(line):
            imported |= {name.strip() for name in m[1].split(",")}
        elif (m := CALL.fullmatch(line)) and m[1] in imported:
            called = True
        else:
            return False
    return called


def explain(row, strict: bool):
    """A row whose cell stopped on the package ``--strict`` hides gets a hint saying why. Returns the row."""
    if strict and row.status == "error" and HIDDEN in row.message:
        row.message += ("\n  hint: strict grading runs your code without the course's package (sa_course), as the "
                        "instructor's grader does. If this is a check cell that lost its 'check' tag, leave only "
                        "the check's import and call in it (or put the tag back); otherwise remove the import")
    return row
