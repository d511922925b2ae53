"""From an LMS download to a class folder: ``sa-course collect SRC DIR`` (or ``python -m sa_course.grade.collect``).

SRC is a zip or a folder. Each file in it is put in ``DIR/<student>/`` under its own name, or
listed as not taken, with the reason. The student is told by where the file is:

- Canvas ("Download Submissions"): flat files ``<name>_<userid>_<submissionid>_<file>``
  (``<name>_LATE_<userid>_...`` for late ones): student ``<name>``, the file ``<file>``;
- Moodle ("Download all submissions"): folders ``<Full Name>_<id>_assignsubmission_file_/`` with
  the files inside: student ``<Full Name>``;
- any folder of student folders, ``SRC/<student>/*.ipynb``;
- a flat folder of ``<student>_<exercise>.ipynb`` (``ada_04_shuffle.ipynb``).

A notebook is taken when its metadata (else its name, as the grader reads it) makes it one of the
course's exercises. Not taken, each listed: a file in a sub-folder of a student's folder, one that
is not a notebook, one that is no exercise notebook (``Untitled.ipynb`` with no course metadata), a
link, a file over the grader's size limit, one whose student cannot be told, and the zip tool's own
files. The LMS's ids (Canvas user id, Moodle participant number) go to ``<DIR>-lms-ids.csv`` beside
DIR, ready for ``--lms-ids``. Nothing existing is overwritten unless ``--overwrite`` is given;
files keep their modification time (the grader's "modified last" rule reads it).
"""
from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..checks import EXERCISES
from . import gradebook, notebook
from .names import shown

CANVAS = re.compile(r"(?P<name>.+?)_(?:LATE_)?(?P<id>\d+)_\d+_(?P<file>.+)")
MOODLE = re.compile(r"(?P<name>.+)_(?P<id>\d+)_assignsubmission_\w+?_")
FLAT = re.compile(r"(?P<name>.+?)[_\- ]+(?P<file>(?:%s).*)" % "|".join(re.escape(e[:3]) for e in EXERCISES))
JUNK = ("__MACOSX", ".DS_Store", ".ipynb_checkpoints")
MAX_FILES = 20000         # files of a download looked at
MAX_TOTAL = 8 << 30       # bytes of notebooks taken


class CollectError(Exception):
    """Bad input; the message names the problem and the fix (exit status 2)."""


@dataclass
class Entry:
    """A file of the download: its path inside SRC (parts), and how to read it."""
    parts: tuple[str, ...]
    size: int
    mtime: float
    link: bool
    read: callable


@dataclass
class Plan:
    taken: dict[Path, Entry] = field(default_factory=dict)      # destination -> source
    not_taken: list[tuple[str, str]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)           # student folder -> LMS id


def _from_folder(src: Path) -> list[Entry]:
    entries = []
    for here, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
            path = Path(here) / name
            info = path.lstat()
            entries.append(Entry(path.relative_to(src).parts, info.st_size, info.st_mtime, stat.S_ISLNK(info.st_mode),
                                 lambda path=path: path.read_bytes()))
            if len(entries) > MAX_FILES:
                raise CollectError(f"{src} holds more than {MAX_FILES} files: is it the download?")
    return entries


def _from_zip(src: Path) -> list[Entry]:
    archive = zipfile.ZipFile(src)
    entries = []
    for info in archive.infolist()[:MAX_FILES + 1]:
        parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p)
        if info.is_dir() or not parts:
            continue
        link = stat.S_ISLNK(info.external_attr >> 16)
        entries.append(Entry(parts, info.file_size, datetime(*info.date_time).timestamp(), link,
                             lambda info=info: archive.open(info).read(notebook.MAX_BYTES + 1)))
    if len(entries) > MAX_FILES:
        raise CollectError(f"{src} holds more than {MAX_FILES} files: is it the download?")
    return entries


def _student(parts: tuple[str, ...]) -> tuple[str | None, str | None, str, str]:
    """(student, LMS id, file name, reason it cannot be taken) from where a file is."""
    if any(p in (".", "..") for p in parts):
        return None, None, parts[-1], "a path that leaves the download"
    if len(parts) > 2:
        return None, None, parts[-1], "in a sub-folder of the student's folder: only the notebooks directly in it are taken"
    if len(parts) == 2:
        folder = MOODLE.fullmatch(parts[0])
        return (folder["name"], folder["id"], parts[1], "") if folder else (parts[0], None, parts[1], "")
    if m := CANVAS.fullmatch(parts[0]):
        return m["name"], m["id"], m["file"], ""
    if m := FLAT.fullmatch(parts[0]):
        return m["name"], None, m["file"], ""
    return None, None, parts[0], ("whose notebook this is cannot be told: put it in a folder named after the "
                                  "student, or name it <student>_<exercise>.ipynb")


def _check(entry: Entry, file: str) -> str:
    """Why this file is not taken ("" when it is)."""
    if entry.link:
        return "a link, not a file"
    if not file.endswith(".ipynb"):
        return "not a notebook (.ipynb)"
    if entry.size > notebook.MAX_BYTES:
        return f"{entry.size} bytes, more than the grader reads ({notebook.MAX_BYTES})"
    try:
        exercise = notebook.parse(entry.read(), Path(file)).exercise
    except notebook.BadNotebook as exc:
        exercise = next((e for e in EXERCISES if file[:3] == e[:3]), None)
        if exercise is None:
            return str(exc)
    if exercise is None:
        return (f"not an exercise notebook: no sa_course metadata, and its name does not start like one of "
                f"{', '.join(EXERCISES)}")
    return ""


def plan(entries: list[Entry], dest: Path) -> Plan:
    """Where each file goes, and why each other one does not."""
    out, seen_ids, total = Plan(), {}, 0
    for entry in entries:
        where = shown("/".join(entry.parts))
        if any(p in JUNK or p.startswith("._") for p in entry.parts):
            continue                                    # the zip tool's and Jupyter's own files
        student, lms_id, file, why = _student(entry.parts)
        why = why or _check(entry, file)
        if student is not None and not why:
            folder = student.lstrip(".") or "_"
            if lms_id is not None and seen_ids.setdefault(folder, lms_id) != lms_id:
                folder = f"{folder}_{lms_id}"          # two students of one name
            target = dest / folder / file
            if target in out.taken:
                why = f"another file of the same name was taken for this student ({shown('/'.join(out.taken[target].parts))})"
            elif total + entry.size > MAX_TOTAL:
                why = f"the notebooks taken would be more than {MAX_TOTAL >> 30} GiB"
            else:
                total += entry.size
                out.taken[target] = entry
                if lms_id is not None:
                    out.ids[folder] = lms_id
                continue
        out.not_taken.append((where, why))
    return out


def write(p: Plan, dest: Path, ids_path: Path, overwrite: bool) -> None:
    existing = [t for t in [*p.taken, ids_path] if t.exists()] if not overwrite else []
    if existing:
        raise CollectError(f"would overwrite {', '.join(shown(str(t)) for t in existing[:3])}"
                           f"{' ...' if len(existing) > 3 else ''}: pass --overwrite, or collect into a new folder")
    for target, entry in p.taken.items():
        gradebook.atomic_write(target, entry.read()[:notebook.MAX_BYTES])
        os.utime(target, (entry.mtime, entry.mtime))
    if p.ids:
        gradebook.atomic_write(ids_path, gradebook.to_csv([["student", "id"], *sorted(p.ids.items())]))


def collect(src: Path, dest: Path, overwrite: bool = False) -> Plan:
    if not src.exists():
        raise CollectError(f"{src} does not exist: name the LMS download (a zip or a folder)")
    if src.is_dir():
        entries = _from_folder(src)
    elif zipfile.is_zipfile(src):
        entries = _from_zip(src)
    else:
        raise CollectError(f"{src} is neither a folder nor a zip: name the LMS download")
    if Path(os.path.realpath(dest)).is_relative_to(os.path.realpath(src)) and src.is_dir():
        raise CollectError(f"{dest} is inside {src}: collect into a folder outside the download")
    p = plan(entries, dest)
    write(p, dest, ids_path(dest), overwrite)
    return p


def ids_path(dest: Path) -> Path:
    return dest.parent / f"{dest.name}-lms-ids.csv"


def report(p: Plan, dest: Path) -> str:
    """What was taken per student, and every file not taken with its reason."""
    students = {}
    for target in p.taken:
        students.setdefault(target.parent.name, []).append(target.name)
    lines = [f"{shown(name)}: {', '.join(shown(f) for f in sorted(files))}" for name, files in sorted(students.items())]
    lines += [f"not taken: {where}: {why}" for where, why in p.not_taken]
    lines.append(f"{sum(map(len, students.values()))} notebooks of {len(students)} students in {shown(str(dest))}/, "
                 f"{len(p.not_taken)} files not taken" + (f"; LMS ids in {shown(str(ids_path(dest)))}" if p.ids else ""))
    if students:
        lines.append(f"grade them with: sa-course grade --strict --class {shown(str(dest))}")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m sa_course.grade.collect") -> int:
    """The same as ``sa-course collect`` (whose parser is :mod:`sa_course.cli`'s)."""
    parser = argparse.ArgumentParser(prog=prog, description="Turn an LMS download (Canvas, Moodle, or any folder of "
                                                            "notebooks) into a class folder DIR/<student>/*.ipynb.")
    parser.add_argument("src", type=Path, metavar="SRC", help="the LMS download: a zip or a folder")
    parser.add_argument("dest", type=Path, metavar="DIR", help="the class folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist in DIR")
    return run(parser.parse_args(argv), prog)


def run(args, prog: str) -> int:
    try:
        p = collect(args.src, args.dest, args.overwrite)
    except (CollectError, zipfile.BadZipFile, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(report(p, args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
