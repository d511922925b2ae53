"""Reading a submitted notebook without trusting it: plain JSON, every field checked.

A notebook that is not JSON, or whose cells, tags or course metadata have the wrong
types or are missing, raises :class:`BadNotebook` with a message for the learner; the
grader turns it into that notebook's ``error`` row. So does one beyond the bounds on what
the grader reads in its own process: the file's size, its number of JSON items (counted
before it is parsed), its number of cells, and the size of each code cell and of all of
them (a cell's code is parsed by the grader only when the notebook's code is small enough
to be an untouched exercise).
"""
from __future__ import annotations

import ast
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..checks import EXERCISES
from .tags import is_check_cell

MAX_BYTES = 20 << 20
MAX_ITEMS = 500_000           # commas, braces and brackets in a notebook's JSON: a bound on its items
MAX_CELLS = 2_000
MAX_CELL = 256 << 10          # characters of one code cell
MAX_CODE = 1 << 20            # characters of all code cells together
UNTOUCHED_MAX = 32 << 10      # code small enough to be an exercise's stubs; bigger is never "untouched"


class BadNotebook(ValueError):
    """The file is not a notebook the grader can read."""


@dataclass(frozen=True)
class Notebook:
    """What the grader needs from a notebook: its exercise, and its code cells minus the check cells."""
    exercise: str | None
    code: tuple[str, ...]


def _source(cell: dict, where: str) -> str:
    source = cell.get("source")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    if isinstance(source, str):
        return source
    raise BadNotebook(f"{where}: 'source' must be a string or a list of strings, got {type(source).__name__}")


def parse(data: bytes, path: Path) -> Notebook:
    """Check the structure of a notebook's JSON; BadNotebook names the first problem."""
    items = data.count(b",") + data.count(b"{") + data.count(b"[")
    if items > MAX_ITEMS:
        raise BadNotebook(f"not a notebook the grader reads: {items:,} commas, braces and brackets in its JSON, "
                          f"more than {MAX_ITEMS:,} (huge outputs? clear them: Kernel > Restart & Clear Outputs, "
                          f"save, submit again)")
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadNotebook(f"not a readable notebook: not JSON ({type(exc).__name__})") from None
    if not isinstance(nb, dict):
        raise BadNotebook(f"not a readable notebook: the top level is a {type(nb).__name__}, not an object")
    if nb.get("nbformat") != 4:
        raise BadNotebook(f"not a readable notebook: nbformat is {nb.get('nbformat')!r}, expected 4")
    meta, cells = nb.get("metadata"), nb.get("cells")
    if not isinstance(meta, dict):
        raise BadNotebook(f"not a readable notebook: 'metadata' must be an object, got {type(meta).__name__}")
    if not isinstance(cells, list):
        raise BadNotebook(f"not a readable notebook: 'cells' must be a list, got {type(cells).__name__}")
    course = meta.get("sa_course", {})
    if not isinstance(course, dict):
        raise BadNotebook(f"metadata 'sa_course' must be an object, got {type(course).__name__}")
    exercise = course.get("exercise")
    if exercise is not None and not isinstance(exercise, str):
        raise BadNotebook(f"metadata 'sa_course.exercise' must be a string, got {type(exercise).__name__}")
    if len(cells) > MAX_CELLS:
        raise BadNotebook(f"not a notebook the grader reads: {len(cells):,} cells, more than {MAX_CELLS:,}")
    code, size = [], 0
    for i, cell in enumerate(cells, start=1):
        where = f"cell {i}"
        if not isinstance(cell, dict):
            raise BadNotebook(f"{where} is a {type(cell).__name__}, not an object")
        kind, cmeta = cell.get("cell_type"), cell.get("metadata")
        if kind not in ("code", "markdown", "raw"):
            raise BadNotebook(f"{where}: 'cell_type' must be code, markdown or raw, got {kind!r:.40}")
        if not isinstance(cmeta, dict):
            raise BadNotebook(f"{where}: 'metadata' must be an object, got {type(cmeta).__name__}")
        tags = cmeta.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadNotebook(f"{where}: metadata 'tags' must be a list of strings, got {tags!r:.60}")
        source = _source(cell, where)
        if kind == "code":
            size += len(source)
            if len(source) > MAX_CELL or size > MAX_CODE:
                raise BadNotebook(f"{where}: code of {len(source):,} characters, {size:,} so far, more than the grader "
                                  f"reads ({MAX_CELL:,} in one cell, {MAX_CODE:,} in all): shorten it")
        if kind == "code" and "check" not in tags and not is_check_cell(source):     # tags may be lost
            code.append(source)
    if exercise not in EXERCISES:
        exercise = next((e for e in EXERCISES if path.name[:3] == e[:3]), None)
    return Notebook(exercise, tuple(code))


def read(path: Path) -> Notebook:
    """Read and parse a notebook file (a regular file of at most 20 MB)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BadNotebook(f"not a readable notebook: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadNotebook("not a readable notebook: not a regular file")
        if info.st_size > MAX_BYTES:
            raise BadNotebook(f"not a readable notebook: {info.st_size} bytes, more than {MAX_BYTES}")
        data = f.read(MAX_BYTES + 1)
    return parse(data, path)


def _is_stub(function: ast.FunctionDef) -> bool:
    """A function whose body is only a docstring and ``raise NotImplementedError(...)``."""
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return (len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None
            and "NotImplementedError" in ast.unparse(body[0].exc))


def untouched(nb: Notebook) -> bool:
    """True when every function of the exercise is defined once, as the stub it started as.
    Such a notebook is "not attempted" without starting a kernel. Code of more than UNTOUCHED_MAX
    characters is not parsed here (the parse would cost the grader about 1 KB per character): the
    kernel judges it."""
    if sum(map(len, nb.code)) > UNTOUCHED_MAX:
        return False
    defs = {}
    for source in nb.code:
        try:
            tree = ast.parse(source)
        except Exception:    # magics, a syntax error, or a source too deep for the parser: the kernel judges
            return False
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                defs.setdefault(node.name, []).append(node)
    return all(len(defs.get(n, [])) == 1 and _is_stub(defs[n][0]) for n in EXERCISES[nb.exercise].functions)
