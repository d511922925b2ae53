"""Gradescope's autograder for the course: ``python -m sa_course.grade --gradescope-autograder OUT.zip``.

Gradescope builds an Ubuntu image from the zip once (it runs ``setup.sh`` there, as root, with the
zip's files in ``/autograder/source``), then runs ``run_autograder`` for every submission, with
the student's files in ``/autograder/submission``, and shows ``/autograder/results/results.json``.
The zip holds, at its root:

    setup.sh                       Python, bubblewrap, the course and its pinned dependencies
                                   (torch's CPU build) into the virtual environment VENV
    run_autograder                 runs :mod:`sa_course.grade.autograder` with VENV's Python
    shuffle_attention_course-*.whl the course, built here from its source
    constraints.txt                the pins the stored outputs were made with
    sa-course-autograder.json      the assignment's exercises, the time and memory limits, and the
                                   visibility the instructor chose (CONFIG)
    points.json                    points per check (POINTS): ``--points FILE``'s table, else the
                                   course's (:mod:`~.points`)

The wheel is built from the source tree this module belongs to (a clone, or an editable
install): the sdist first, then the wheel from it, as ``python -m build`` does, so nothing
left in a ``build/`` folder slips in. Without a source tree, or without setuptools 70.1 or newer
to build it offline, the command refuses with one line that says what to do.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from ..checks import EXERCISES
from . import points

DISTRIBUTION = "shuffle-attention-course"
CONFIG = "sa-course-autograder.json"
POINTS = "points.json"
VENV = "/opt/shuffle-attention-course"          # where setup.sh installs the course on Gradescope
PYTHON_VARIABLE = "SA_GRADESCOPE_PYTHON"        # run_autograder's Python, when not VENV's (tests)
ROOT_VARIABLE = "GRADESCOPE_ROOT"               # the autograder's root, when not /autograder (tests)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")   # Gradescope's words
SOURCE = Path(__file__).resolve().parents[2]

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu), with the
# zip's files in /autograder/source. It installs Python {python_min} or newer, bubblewrap (the
# grader's sandbox) and the course with its pinned dependencies into {venv}.
set -euo pipefail
source_dir="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
venv={venv}
export DEBIAN_FRONTEND=noninteractive

apt-get update
apt-get install -y --no-install-recommends bubblewrap python3 ca-certificates
if python3 -c 'import sys; sys.exit(sys.version_info < {python_tuple})'; then
    python=python3
    apt-get install -y --no-install-recommends python3-venv
else
    # Ubuntu 22.04's python3 is 3.10; its python{python_min} package is new enough
    python=python{python_min}
    apt-get install -y --no-install-recommends python{python_min} python{python_min}-venv
fi
"$python" -m venv "$venv"

# torch and torchvision: their CPU builds (grading needs no GPU), at the pinned versions
"$venv/bin/python" -m pip install --index-url {cpu_index} "torch=={torch}" "torchvision=={torchvision}"
"$venv/bin/python" -m pip install -c "$source_dir/constraints.txt" "$source_dir/{wheel}"
"$venv/bin/python" -m pip check

# Grading needs neither the solutions nor this folder (it holds the wheel, solutions included):
# a kernel running as another user cannot read them.
package="$("$venv/bin/python" -I -c 'import pathlib, sa_course; print(pathlib.Path(sa_course.__file__).parent)')"
rm -rf "$package/content/solutions"
chmod 700 "$source_dir"

# The build log says which protection the grader finds here (bwrap, setuid or none).
"$venv/bin/python" -I -c 'from sa_course.grade import sandbox; i = sandbox.isolation(); print("protection:", i.level, "-", i.describe())'
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, in /autograder: it grades the notebooks in
# submission/ with the course's sandboxed grader in --strict mode and writes results/results.json.
# {root_variable} and {python_variable} replace /autograder and the course's Python (for tests).
set -u
root="${{{root_variable}:-/autograder}}"
python="${{{python_variable}:-{venv}/bin/python}}"
cd "$root" || exit 1
"$python" -I -m sa_course.grade.autograder --root "$root"
status=$?
if [ ! -s "$root/results/results.json" ]; then
    # The grader could not even start: say so, rather than leave Gradescope without results
    mkdir -p "$root/results"
    cat > "$root/results/results.json" <<EOF
{{"score": 0.0, "output": "The autograder itself failed (exit status $status) before it could grade this submission. This is not your notebook's fault: ask your instructor to look at the autograder's output and regrade it.", "output_format": "text", "stdout_visibility": "hidden", "tests": []}}
EOF
fi
"""


class AutograderError(Exception):
    """The zip cannot be written; the message says why and what to do."""


def source_tree() -> Path:
    """The course's source tree (a clone, or an editable install), where the wheel is built."""
    pyproject = SOURCE / "pyproject.toml"
    try:
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
    except (OSError, ValueError, KeyError):
        name = None
    if name != DISTRIBUTION or not (SOURCE / "constraints.txt").is_file():
        raise AutograderError(f"the course's source is not here ({SOURCE} has no pyproject.toml and "
                              f"constraints.txt of {DISTRIBUTION}): run this from a clone of the course "
                              f"(pip install -e . inside it)")
    return SOURCE


def _run(argv: list[str], cwd: Path, what: str) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise AutograderError(f"cannot build the course's wheel: {what} exited {done.returncode} ({tail}). "
                              f"It is built offline and needs setuptools 70.1 or newer here: "
                              f"pip install -c constraints.txt -e '.[test]'")
    return done.stdout


def build_wheel(source: Path, folder: Path) -> Path:
    """The course's wheel in ``folder``: the sdist from ``source``, then the wheel from the sdist."""
    sdist_script = f"from setuptools import build_meta; print(build_meta.build_sdist({str(folder)!r}))"
    sdist = folder / _run([sys.executable, "-c", sdist_script], source, "building the sdist").split()[-1]
    with tarfile.open(sdist) as tar:
        tar.extractall(folder, filter="data")
    tree = folder / sdist.name.removesuffix(".tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(folder / "wheel"), str(tree)], folder, "pip wheel")
    wheels = sorted((folder / "wheel").glob("*.whl"))
    if len(wheels) != 1:
        raise AutograderError(f"cannot build the course's wheel: pip wheel made {len(wheels)} wheels, not one")
    return wheels[0]


def pins(constraints: str) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by lower-case name."""
    found = {}
    for line in constraints.splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", line)
        if m:
            found[m[1].lower()] = m[2]
    return found


def python_minimum(wheel: Path) -> tuple[int, int]:
    """The oldest Python the wheel declares (``Requires-Python: >=3.11`` gives (3, 11))."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(z.read(meta).decode()).get("Requires-Python", "")
    m = re.fullmatch(r"\s*>=\s*3\.(\d+)\s*", requires)
    if not m:
        raise AutograderError(f"the wheel's Requires-Python is {requires!r}; setup.sh needs the form '>=3.N'")
    return 3, int(m[1])


def setup_script(wheel: str, pinned: dict[str, str], python: tuple[int, int]) -> str:
    missing = [n for n in ("torch", "torchvision") if n not in pinned]
    if missing:
        raise AutograderError(f"constraints.txt pins no version of {', '.join(missing)}: setup.sh installs "
                              f"their CPU builds at the pinned versions")
    return SETUP_SH.format(python_min="%d.%d" % python, python_tuple=repr(python), venv=VENV, wheel=wheel,
                           cpu_index=CPU_INDEX, torch=pinned["torch"], torchvision=pinned["torchvision"])


def run_script() -> str:
    return RUN_AUTOGRADER.format(root_variable=ROOT_VARIABLE, python_variable=PYTHON_VARIABLE, venv=VENV)


def config(version: str, visibility: str, stdout_visibility: str, timeout: float, memory_gib: float) -> dict:
    """What run_autograder reads besides the points: the assignment's exercises and the instructor's choices."""
    return {"course": DISTRIBUTION, "version": version, "strict": True,
            "visibility": visibility, "stdout_visibility": stdout_visibility,
            "timeout": timeout, "memory_gib": memory_gib, "exercises": list(EXERCISES)}


def _exists(out: Path) -> AutograderError:
    return AutograderError(f"{out} exists: pass --overwrite to replace it, or choose another name")


def write_zip(out: Path, files: dict[str, tuple[bytes, int]], overwrite: bool) -> None:
    """The zip, with every file at its root (name -> (bytes, mode)), written whole or not at all;
    an existing ``out`` is replaced only with ``overwrite``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, (data, mode) in files.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)           # fails on an existing file, whoever wrote it meanwhile
    except FileExistsError:
        raise _exists(out) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def build(out: Path, visibility: str = "visible", stdout_visibility: str = "hidden", timeout: float = 60,
          memory_gib: float = 4, table: points.Table | None = None, overwrite: bool = False) -> list[str]:
    """Write the autograder zip to ``out``, with the points ``table`` (None: the course's); returns
    the names in it."""
    out = Path(out)
    if out.exists() and not overwrite:       # before the build: a refusal costs nothing
        raise _exists(out)
    if not out.parent.is_dir():
        raise AutograderError(f"{out.parent} is not a folder: create it first")
    source = source_tree()
    constraints = (source / "constraints.txt").read_bytes()
    with tempfile.TemporaryDirectory(prefix="sa-gradescope-") as tmp:
        wheel = build_wheel(source, Path(tmp))
        version = wheel.name.split("-")[1]
        files = {
            "setup.sh": (setup_script(wheel.name, pins(constraints.decode()), python_minimum(wheel)).encode(), 0o755),
            "run_autograder": (run_script().encode(), 0o755),
            wheel.name: (wheel.read_bytes(), 0o644),
            "constraints.txt": (constraints, 0o644),
            CONFIG: (_json(config(version, visibility, stdout_visibility, timeout, memory_gib)), 0o644),
            POINTS: (_json(points.defaults() if table is None else table), 0o644),
        }
    write_zip(out, files, overwrite)
    return list(files)


def add_arguments(parser) -> None:
    """The grader's options for the autograder zip."""
    group = parser.add_argument_group("Gradescope (instructors; see docs/instructors.md)")
    group.add_argument("--gradescope-autograder", metavar="OUT.zip",
                       help="write Gradescope's autograder zip (strict grading, with --timeout and --memory) "
                            "and grade nothing; --overwrite replaces an existing OUT.zip")
    group.add_argument("--visibility", choices=VISIBILITIES, default="visible",
                       help="with --gradescope-autograder: when students see each exercise's result "
                            "(default visible: at once, as they would grading themselves)")
    group.add_argument("--stdout-visibility", choices=VISIBILITIES, default="hidden",
                       help="with --gradescope-autograder: when students see the grader's printed table "
                            "(default hidden: instructors only)")


def main(args, parser) -> int:
    """``--gradescope-autograder OUT.zip``: write the zip, say what is in it."""
    if args.class_dir or list(args.paths) != ["exercises"]:
        parser.error("--gradescope-autograder writes the autograder and grades nothing: leave out --class "
                     "and the notebooks")
    out = Path(args.gradescope_autograder)
    try:
        table = points.load(args.points)
        names = build(out, args.visibility, args.stdout_visibility, args.timeout, args.memory, table, args.overwrite)
    except (AutograderError, points.PointsError) as err:
        parser.error(str(err))
    total = points.number(sum(sum(checks.values()) for checks in table.values()))
    print(f"wrote {out}: {', '.join(names)}")
    print(f"{len(table)} exercises, {total} points (the assignment's total on Gradescope); strict grading, "
          f"{args.timeout:g} s and {args.memory:g} GiB per notebook; results visible: {args.visibility}, "
          f"printed output: {args.stdout_visibility}. Upload it as the assignment's autograder "
          f"(docs/instructors.md, Gradescope).")
    return 0
