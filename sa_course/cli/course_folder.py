"""``sa-course init``: the lessons, exercises and solutions, written into a folder of the learner's.

``init DIR`` writes ``DIR/notebooks/``, ``DIR/exercises/`` and ``DIR/solutions/`` from this
install (:mod:`sa_course.resources`) and records in ``DIR/.sa-course.json`` the installed
version and the SHA-256 of every file as shipped. It refuses a folder that already holds any
of them. ``init --update DIR`` compares each file with that record:

- an exercise whose hash differs from the record is the learner's work: it stays as it is,
  and the update names it;
- a lesson or solution is refreshed to this install; where the learner changed it, their copy
  stays beside it as ``NAME.before-update.ipynb`` (``-2``, ``-3``... if that name is taken);
- a file the learner deleted, or one new in this install, is written.

Every file is written whole or not at all (a temporary file, then a rename), and the record is
saved after each one, so an interrupted update can simply be run again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

from sa_course import resources

DISTRIBUTION = "shuffle-attention-course"
RECORD = ".sa-course.json"
KEPT_SUFFIX = ".before-update.ipynb"
FOLDERS = {"notebooks": resources.lessons_dir, "exercises": resources.exercises_dir,
           "solutions": resources.solutions_dir}
NOUNS = {"notebooks": "lessons", "exercises": "exercises", "solutions": "solutions"}


class UsageError(Exception):
    """Bad input to a subcommand; its message names the problem and the fix (exit status 2)."""


def installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "(not installed: a clone on the Python path)"


def shipped() -> dict[str, Path]:
    """Each course file of this install by its path in a course folder, e.g. ``exercises/01_grouping.ipynb``."""
    return {f"{folder}/{path.name}": path for folder, where in FOLDERS.items() for path in sorted(where().glob("*.ipynb"))}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _save_record(folder: Path, files: dict[str, str]) -> None:
    record = {"distribution": DISTRIBUTION, "version": installed_version(), "files": dict(sorted(files.items()))}
    _write(folder / RECORD, (json.dumps(record, indent=1) + "\n").encode())


def _counts(names) -> str:
    by_folder = {folder: sum(name.startswith(folder + "/") for name in names) for folder in FOLDERS}
    return ", ".join(f"{n} {NOUNS[folder]}" for folder, n in by_folder.items() if n)


def init(folder: Path) -> int:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder: name a new or empty folder")
    present = [name for name in (*FOLDERS, RECORD) if (folder / name).exists()]
    if present:
        raise UsageError(f"{folder} already holds course files ({', '.join(present)}): "
                         f"`sa-course init --update {folder}` refreshes them, or name another folder")
    files = shipped()
    _save_record(folder, {name: sha256(source) for name, source in files.items()})   # first: see the docstring
    for name, source in files.items():
        _write(folder / name, source.read_bytes())
    print(f"wrote {_counts(files)} to {folder.resolve()} (course {installed_version()})")
    print(f"open them with: sa-course lab {folder}")
    return 0


def _read_record(folder: Path) -> dict:
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: `sa-course init {folder}` writes the course there first")
    fix = "`sa-course init` a new folder and copy your exercises into it"
    try:
        record = json.loads((folder / RECORD).read_text())
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in record["files"].items()):
            raise TypeError("file hashes are not strings")
    except FileNotFoundError:
        raise UsageError(f"{folder} has no {RECORD}, so the files you changed cannot be told apart: {fix}") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise UsageError(f"{folder / RECORD} is not readable ({type(err).__name__}: {err}): {fix}") from None
    return record


def _free_name(path: Path) -> Path:
    stem = path.name.removesuffix(".ipynb")
    candidate, n = path.with_name(stem + KEPT_SUFFIX), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}{KEPT_SUFFIX.removesuffix('.ipynb')}-{n}.ipynb")
    return candidate


def update(folder: Path) -> int:
    record = _read_record(folder)
    files = record["files"]
    refreshed, added, kept, moved, current = [], [], [], [], 0
    for name, source in shipped().items():
        target, new = folder / name, source.read_bytes()
        new_hash = hashlib.sha256(new).hexdigest()
        if target.exists():
            mine = sha256(target)
            if mine == new_hash:
                current += 1
                files[name] = new_hash
                continue
            learners = files.get(name) != mine          # a file the record does not know is the learner's too
            if learners and name.startswith("exercises/"):
                kept.append(name)
                continue
            if learners:
                copy = _free_name(target)
                os.replace(target, copy)
                moved.append((name, copy.relative_to(folder).as_posix()))
            refreshed.append(name)
        else:
            added.append(name)
        _write(target, new)
        files[name] = new_hash
        _save_record(folder, files)
    _save_record(folder, files)
    for name in kept:
        print(f"kept {name}: you changed it, so the update leaves it as it is")
    for name, copy in moved:
        print(f"refreshed {name}; your changed copy is {copy}")
    print(f"{folder.resolve()}: course {record.get('version', '?')} -> {installed_version()}: "
          f"{len(refreshed)} refreshed, {len(added)} added, {current} already current, "
          f"{len(kept)} of your exercises kept")
    return 0
