"""Instructor mode (--class DIR), the exit codes and `make grade`."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sa_course import grade
from sa_course.checks import EXERCISES

ROOT = Path(__file__).resolve().parent.parent


def _copy(src: Path, dest: Path, old: str | None = None, new: str | None = None) -> Path:
    nb = nbformat.read(src, as_version=4)
    if old is not None:
        for cell in nb.cells:
            if "exercise" in cell.metadata.get("tags", []):
                assert old in cell.source
                cell.source = cell.source.replace(old, new)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """Three students: ada (04 right, 02 untouched), bob (04 wrong, and a link to ada's notebook), cy (nothing)."""
    tmp = tmp_path_factory.mktemp("class")
    room = tmp / "submissions"
    _copy(ROOT / "solutions" / "04_shuffle.ipynb", room / "ada" / "04_shuffle.ipynb")
    _copy(ROOT / "exercises" / "02_channel_gate.ipynb", room / "ada" / "02_channel_gate.ipynb")
    _copy(ROOT / "solutions" / "04_shuffle.ipynb", room / "bob" / "04_shuffle.ipynb",
          "return out.copy() if np.shares_memory(out, x) else out, groups", "return x.copy(), groups")
    (room / "bob" / "04_borrowed.ipynb").symlink_to(room / "ada" / "04_shuffle.ipynb")
    (room / "=cy").mkdir()
    out = tmp / "out"
    args = ["--class", str(room), "--gradebook", str(out / "gradebook.csv"), "--reports", str(out / "reports"),
            "--jobs", "2", "--strict"]
    code = grade.main(args)
    return {"room": room, "out": out, "args": args, "code": code}


def test_the_gradebook_has_a_row_per_student_with_points_per_exercise(classroom):
    rows = list(csv.DictReader((classroom["out"] / "gradebook.csv").open()))
    assert [r["student"] for r in rows] == ["'=cy", "ada", "bob"]        # a name a spreadsheet would run is quoted
    assert list(rows[0]) == ["student", *EXERCISES, "total", "max", "status"]
    ada, bob = rows[1], rows[2]
    assert (ada["04_shuffle"], ada["02_channel_gate"], ada["total"], ada["max"]) == ("1", "0", "1", "10")
    assert ada["status"] == "1 not attempted, 3 missing"
    assert (bob["04_shuffle"], bob["total"]) == ("0", "0") and bob["status"] == "1 fail, 4 missing"
    assert rows[0]["status"] == "5 missing" and classroom["code"] == 0


def test_each_student_gets_a_json_report_and_a_link_out_of_the_folder_is_not_graded(classroom):
    bob = json.loads((classroom["out"] / "reports" / "bob.json").read_text())
    assert bob["student"] == "bob" and bob["strict"] is True and "bubblewrap" in bob["sandbox"] or bob["sandbox"]
    assert [Path(r["path"]).name for r in bob["rows"]] == ["04_shuffle.ipynb"]


def test_nothing_is_overwritten_without_being_asked(classroom, capsys):
    before = (classroom["out"] / "gradebook.csv").read_bytes()
    with pytest.raises(SystemExit) as info:
        grade.main(classroom["args"])
    assert info.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert (classroom["out"] / "gradebook.csv").read_bytes() == before


def test_exit_codes_keep_their_meaning(tmp_path, capsys):
    solution, stub = ROOT / "solutions" / "04_shuffle.ipynb", ROOT / "exercises" / "04_shuffle.ipynb"
    report = str(tmp_path / "r.json")
    assert grade.main([str(solution), "--report", report]) == 0
    assert grade.main([str(stub), "--report", report]) == 1
    with pytest.raises(SystemExit) as info:
        grade.main([str(tmp_path / "missing.ipynb")])
    assert info.value.code == 2


def test_make_grade_ends_with_the_summary_and_no_make_error(tmp_path):
    env = {**os.environ, "MAKEFLAGS": ""}
    venv = Path(sys.prefix)          # this environment, never rebuilt (-o: its stamp counts as current)
    done = subprocess.run(["make", "-s", "--no-print-directory", f"VENV={venv}", "-o", str(venv / ".installed"),
                           "grade", f"NB={ROOT / 'exercises' / '04_shuffle.ipynb'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1].startswith("0 of 1 notebook pass, 0/1 points. Not yet: 1 not attempted")
    assert "***" not in done.stdout + done.stderr        # make's "make: *** [grade] Error 1"
    assert subprocess.run([sys.executable, "-m", "sa_course.grade", str(ROOT / "exercises" / "04_shuffle.ipynb"),
                           "--report", str(tmp_path / "r.json")], cwd=tmp_path, capture_output=True).returncode == 1
