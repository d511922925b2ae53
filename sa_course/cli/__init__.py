"""``sa-course`` (the same as ``python -m sa_course``): the course in one command.

    sa-course init [DIR]          write the lessons, exercises and solutions into DIR
    sa-course init --update DIR   refresh them to this install, keeping the exercises you changed
    sa-course lab [DIR]           JupyterLab on DIR at lesson 00
    sa-course grade [...]         the grader (the options of ``python -m sa_course.grade``)
    sa-course doctor              what this machine has for the course, and how to fix what it lacks
    sa-course release DIR         a student copy of the course, without solutions/ (instructors)
    sa-course collect SRC DIR     an LMS download (Canvas, Moodle, a folder) as DIR/<student>/*.ipynb

Exit status: 0 done; 1 a subcommand's own failure (``grade``: an exercise does not pass yet;
``doctor --strict``: a problem was found; ``lab``: JupyterLab is not installed); 2 bad input
(an unknown subcommand, a missing folder, a folder that already holds the course), said in one
line that names the problem and the fix, with nothing written.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from . import course_folder, doctor
from .course_folder import UsageError
from .parser import Parser

DEFAULT_DIR = Path("shuffle-attention-course")
FIRST_LESSON = "notebooks/00_overview.ipynb"
PROG = "sa-course"


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Shuffle Attention, from the paper to a trained SA-ResNet: the course's "
                                           "lessons and exercises, JupyterLab, the grader and a check of this machine.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {course_folder.installed_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    init = commands.add_parser("init", help="write the lessons, exercises and solutions into a folder",
                               description="Write DIR/notebooks/ (lessons 00-07), DIR/exercises/ and DIR/solutions/. "
                                           "A folder that already holds them is refused; --update refreshes them.")
    init.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, metavar="DIR",
                      help=f"the course folder (default: ./{DEFAULT_DIR})")
    init.add_argument("--update", action="store_true",
                      help="refresh the lessons and solutions to this install; exercises you changed are kept "
                           f"(your changed copy of a lesson stays beside it as *{course_folder.KEPT_SUFFIX})")

    lab = commands.add_parser("lab", help="open the course in JupyterLab, at lesson 00",
                              description="Start JupyterLab on DIR at lesson 00, with the course's JupyterLab defaults. "
                                          "Options it does not know go to JupyterLab (e.g. --no-browser --port=8890).")
    lab.add_argument("dir", nargs="?", type=Path, metavar="DIR",
                     help=f"the course folder (default: this folder if it holds {FIRST_LESSON}, else ./{DEFAULT_DIR})")

    commands.add_parser("grade", add_help=False, help="grade exercise notebooks (sa-course grade --help for its options)")

    check = commands.add_parser("doctor", help="check this machine for the course: versions, device, kernels, data",
                                description="One screen on this machine: Python and package versions, torch and "
                                            "its device, the precision training uses, the C kernels, Triton, "
                                            "bubblewrap for grading, CIFAR-10; each problem with its fix. Exits 0 "
                                            "even when it finds problems, unless --strict.")
    check.add_argument("--strict", action="store_true", help="exit with status 1 when a problem is found")

    release = commands.add_parser("release", help="a student copy of the course, without solutions/ (instructors)",
                                  description="Write DIR/notebooks/, DIR/exercises/ (what students hand in) and "
                                              "DIR/HANDIN.md, without solutions/. A folder that holds them is refused.")
    release.add_argument("dir", type=Path, metavar="DIR", help="a new or empty folder")
    gather = commands.add_parser("collect", help="an LMS download as a class folder DIR/<student>/*.ipynb (instructors)",
                                 description="Turn an LMS download (Canvas, Moodle, or any folder of notebooks) into "
                                             "DIR/<student>/*.ipynb, listing every file not taken and why.")
    gather.add_argument("src", type=Path, metavar="SRC", help="the LMS download: a zip or a folder")
    gather.add_argument("dest", type=Path, metavar="DIR", help="the class folder to write")
    gather.add_argument("--overwrite", action="store_true", help="replace files that already exist in DIR")
    return parser


def lab_folder(given: Path | None) -> Path:
    if given is None:
        given = Path(".") if Path(FIRST_LESSON).is_file() else DEFAULT_DIR
    if not (given / FIRST_LESSON).is_file():
        raise UsageError(f"{given} has no {FIRST_LESSON}: run `{PROG} init {given}` first, or name the course folder")
    return given.resolve()


def lab(folder: Path, jupyter_args: list[str]) -> int:
    """JupyterLab on ``folder`` at lesson 00. The course's JupyterLab defaults (no news pop-up, no
    update check) come with the install, in JupyterLab's overrides.d: the learner's settings win."""
    if importlib.util.find_spec("jupyterlab") is None:
        print(f"{PROG}: JupyterLab is not installed here: pip install 'shuffle-attention-course[lab]' "
              f"(or any JupyterLab 4), then run {PROG} lab again", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}",
               f"--LabApp.default_url=/lab/tree/{FIRST_LESSON}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")                  # JupyterLab refuses root otherwise (containers)
    command += jupyter_args
    if os.name == "posix":
        os.execv(sys.executable, command)               # JupyterLab gets the terminal's Ctrl-C itself
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["grade"]:
        from sa_course.grade import cli as grade
        return grade.main(argv[1:], prog=f"{PROG} grade")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "init":
            return course_folder.update(args.dir) if args.update else course_folder.init(args.dir)
        if args.command == "lab":
            return lab(lab_folder(args.dir), extra)
        if args.command == "doctor":
            return doctor.main(strict=args.strict)
        if args.command == "release":
            from sa_course.grade.release import release
            return release(args.dir)
        if args.command == "collect":
            from sa_course.grade import collect
            return collect.run(args, f"{PROG} collect")
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    parser.error("a command is needed: init, lab, grade, doctor, release or collect")
