"""Instructor mode (--class DIR): the gradebook, reports and feedback pages, student names whatever
bytes they hold, links and copies, one notebook per exercise, partial credit, --only, backups, the
exit codes and `make grade`."""
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from datetime import datetime
from importlib import metadata
from pathlib import Path

import nbformat
import pytest

from sa_course import grade
from sa_course.checks import EXERCISES
from sa_course.grade import class_run, report

ROOT = Path(__file__).resolve().parent.parent
SHUFFLE = ("return out.copy() if np.shares_memory(out, x) else out, groups", "return x.copy(), groups")
WRONG_GATE = ("return x1 * gate, (", "return x1 * (1 - gate), (")
EVIL = os.fsdecode(b"ev\x80il")                         # a folder name that is not UTF-8
FORGED = "x\nada  04_shuffle  pass  1 of 1"                 # a name that would print a row of its own


def _copy(src: Path, dest: Path, change: tuple | None = None, mtime: float | None = None) -> Path:
    nb = nbformat.read(src, as_version=4)
    if change is not None:
        cell = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []) and change[0] in c.source)
        cell.source = cell.source.replace(*change)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    if mtime is not None:
        os.utime(dest, (mtime, mtime))
    return dest


def _book(path: Path) -> dict:
    return {row["student"]: row for row in csv.DictReader(path.open(newline=""))}


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """ada: 04 right (and an older second 04), 02 untouched; Ada: 03 half right; bob: 04 wrong and a link
    to ada's; =cy: nothing; a non-UTF-8 name with a copy of the solution; a name with a newline;
    a folder that is a link to ada's, and one that is a link out of the class."""
    tmp = tmp_path_factory.mktemp("class")
    room = tmp / "submissions"
    solutions, exercises = ROOT / "solutions", ROOT / "exercises"
    _copy(solutions / "04_shuffle.ipynb", room / "ada" / "04_shuffle.ipynb")
    _copy(solutions / "04_shuffle.ipynb", room / "ada" / "04_shuffle_old.ipynb", SHUFFLE, mtime=1e9)
    _copy(exercises / "02_channel_gate.ipynb", room / "ada" / "02_channel_gate.ipynb")
    _copy(solutions / "03_spatial_gate.ipynb", room / "Ada" / "03_spatial_gate.ipynb", WRONG_GATE)
    _copy(solutions / "04_shuffle.ipynb", room / "bob" / "04_shuffle.ipynb", SHUFFLE)
    (room / "bob" / "04_borrowed.ipynb").symlink_to(room / "ada" / "04_shuffle.ipynb")
    (room / "=cy").mkdir()
    (room / EVIL).mkdir()
    (room / EVIL / "04 mine.ipynb").write_bytes((solutions / "04_shuffle.ipynb").read_bytes())
    (room / FORGED).mkdir()
    (tmp / "elsewhere").mkdir()
    _copy(solutions / "04_shuffle.ipynb", tmp / "elsewhere" / "04_shuffle.ipynb")
    (room / "linked").symlink_to(tmp / "elsewhere")
    (room / "alias").symlink_to(room / "ada")
    out = tmp / "out"
    args = ["--class", str(room), "--gradebook", str(out / "gradebook.csv"), "--reports", str(out / "reports"),
            "--feedback", str(out / "feedback"), "--jobs", "2", "--strict"]
    code, printed = _main(args)
    return {"room": room, "out": out, "args": args, "code": code, "printed": printed, "tmp": tmp}


def _main(args):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = grade.main(args)
    return code, buffer.getvalue()


def test_the_gradebook_has_a_row_per_student_folder_with_points_per_exercise(classroom):
    rows = _book(classroom["out"] / "gradebook.csv")
    assert list(rows) == ["'=cy", "Ada", "ada", "alias", "bob", "ev\\x80il", "linked", "x\\x0aada  04_shuffle  pass  1 of 1"]
    assert list(next(iter(rows.values()))) == ["student", *EXERCISES, "total", "max", "status", "notes"]
    ada, bob, cy = rows["ada"], rows["bob"], rows["'=cy"]
    assert (ada["04_shuffle"], ada["02_channel_gate"], ada["total"], ada["max"]) == ("1", "0", "1", "10")
    assert ada["status"] == "1 not attempted, 3 missing"
    assert (bob["04_shuffle"], bob["total"], bob["status"]) == ("0", "0", "1 fail, 4 missing")
    assert cy["status"] == "5 missing" and cy["total"] == "0"
    assert classroom["code"] == 1                     # graded, and not every student passes everything


def test_exercise_03_earns_the_points_of_the_check_that_passes(classroom):
    ada = _book(classroom["out"] / "gradebook.csv")["Ada"]
    assert (ada["03_spatial_gate"], ada["total"]) == ("2", "2")
    checks = json.loads(next((classroom["out"] / "reports").glob("Ada-*.json")).read_text())
    checks = checks["exercises"]["03_spatial_gate"]["checks"]
    assert [(c["check"], c["status"]) for c in checks] == [("groupnorm", "pass"), ("spatial_gate", "fail")]


def test_the_class_table_has_a_student_column_and_the_gradebooks_totals(classroom):
    lines = classroom["printed"].splitlines()
    assert next(line for line in lines if line.startswith("student")).split() == \
        ["student", "exercise", "status", "points", "message"]
    books = _book(classroom["out"] / "gradebook.csv").values()
    total, most = sum(float(r["total"]) for r in books), sum(float(r["max"]) for r in books)
    assert next(line for line in lines if line.startswith("class")).split() == ["class", "total", f"{total:g}/{most:g}"]
    assert f"{total:g}/{most:g} points, as in the gradebook" in " ".join(lines)
    assert not any(line.startswith("ada  04_shuffle") for line in lines)        # the newline did not forge a row
    assert any(line.startswith("x\\x0aada") for line in lines) and any(line.startswith("ev\\x80il ") for line in lines)


def test_links_are_skipped_with_a_row_that_says_so(classroom):
    rows = _book(classroom["out"] / "gradebook.csv")
    assert rows["alias"]["status"].startswith("skipped: the folder is a link to ada")
    assert rows["linked"]["status"].startswith("skipped: the folder is a link out of the class folder")
    assert rows["linked"]["total"] == "0"
    bob = json.loads((classroom["out"] / "reports" / "bob.json").read_text())
    assert [r["path"] for r in bob["rows"]] == ["bob/04_shuffle.ipynb"]
    assert bob["not_graded"] == [{"path": "bob/04_borrowed.ipynb",
                                  "reason": "not graded: a link to ada/04_shuffle.ipynb, outside the student's folder"}]


def test_one_notebook_per_exercise_counts_and_the_report_says_which_and_why(classroom):
    ada = json.loads(next(p for p in (classroom["out"] / "reports").glob("ada-*.json")).read_text())
    assert ada["exercises"]["04_shuffle"]["notebook"] == "ada/04_shuffle.ipynb"
    assert ada["exercises"]["04_shuffle"]["counted_because"].startswith("named exactly like the exercise")
    assert ada["not_graded"][0]["path"] == "ada/04_shuffle_old.ipynb"
    assert ada["not_graded"][0]["reason"].startswith("not graded: another notebook for this exercise counted")


def test_identical_submissions_and_names_that_read_alike_are_flagged(classroom):
    rows = _book(classroom["out"] / "gradebook.csv")
    assert "ev\\x80il/04 mine.ipynb is identical to ada/04_shuffle.ipynb" in rows["ada"]["notes"] or \
        "ada/04_shuffle.ipynb is identical to ev\\x80il/04 mine.ipynb" in rows["ada"]["notes"]
    assert "identical to the course's solution 04_shuffle.ipynb" in rows["ev\\x80il"]["notes"]
    assert "the name reads like Ada" in rows["ada"]["notes"] and "the name reads like ada" in rows["Ada"]["notes"]
    reports = sorted(p.name for p in (classroom["out"] / "reports").iterdir())
    assert len(reports) == 8 and len({name.lower() for name in reports}) == 8     # two files on any file system


def test_reports_carry_the_audit_and_no_absolute_path(classroom):
    reports = classroom["out"] / "reports"
    data = json.loads((reports / "ev\\x80il.json").read_text())
    path = classroom["room"] / EVIL / "04 mine.ipynb"
    row = data["rows"][0]
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and row["path"] == "ev\\x80il/04 mine.ipynb"
    assert datetime.fromisoformat(data["graded_at"]).utcoffset().total_seconds() == 0
    assert data["course_version"] == metadata.version("shuffle-attention-course")
    assert data["protection"] == grade.sandbox.isolation().level and data["strict"] is True
    for p in reports.iterdir():
        assert str(classroom["tmp"]) not in p.read_text() and str(Path.home()) not in p.read_text()


def test_every_student_gets_a_feedback_page_in_markdown_and_html(classroom):
    pages = classroom["out"] / "feedback"
    assert len(list(pages.glob("*.md"))) == len(list(pages.glob("*.html"))) == 8
    page = (pages / "bob.md").read_text()
    assert "Total: 0/10" in page and "04\\_shuffle: fail, 0/1 points" in page and "Start with 01\\_grouping" in page
    assert "expected [hidden in strict grading]" in page or "values differ" not in page
    html = (pages / "x\\x0aada  04_shuffle  pass  1 of 1.html").read_text()
    assert "<h1>Feedback: x\\x0aada  04_shuffle  pass  1 of 1</h1>" in html


def test_nothing_is_overwritten_without_being_asked(classroom, capsys):
    before = (classroom["out"] / "gradebook.csv").read_bytes()
    with pytest.raises(SystemExit) as info:
        grade.main(classroom["args"])
    assert info.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert (classroom["out"] / "gradebook.csv").read_bytes() == before


def test_only_regrades_one_student_in_place_and_keeps_a_copy_of_what_it_replaced(classroom):
    book = classroom["out"] / "gradebook.csv"
    before = book.read_text().splitlines()
    fixed = _copy(ROOT / "solutions" / "04_shuffle.ipynb", classroom["tmp"] / "fixed.ipynb")
    (classroom["room"] / "bob" / "04_shuffle.ipynb").write_bytes(fixed.read_bytes())
    code, _printed = _main([*classroom["args"], "--only", "bob"])
    after = book.read_text().splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert code == 1 and len(after) == len(before) and [after[i].split(",")[0] for i in changed] == ['"bob"']
    assert _book(book)["bob"]["04_shuffle"] == "1"
    copies = list((classroom["out"] / "grade-backups").glob("*/out/gradebook.csv"))
    assert [c.read_text().splitlines() for c in copies] == [before]


def test_notebooks_and_class_together_are_refused_in_one_line(classroom, capsys):
    with pytest.raises(SystemExit) as info:
        grade.main([*classroom["args"], str(classroom["room"] / "bob")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) <= 2 and "--only STUDENT" in err


def test_a_student_whose_report_fails_still_gets_a_gradebook_row(tmp_path, monkeypatch):
    room = tmp_path / "room"
    for name in ("ann", "ben"):
        _copy(ROOT / "exercises" / "04_shuffle.ipynb", room / name / "04_shuffle.ipynb")   # no kernel needed

    def broken(res, *args):
        if res.student.name == "ben":
            raise OSError("disk full")
        return real(res, *args)
    real = report.student_report
    monkeypatch.setattr(report, "student_report", broken)
    code, _printed = _main(["--class", str(room), "--gradebook", str(tmp_path / "g.csv"), "--reports",
                            str(tmp_path / "r"), "--feedback", str(tmp_path / "f")])
    rows = _book(tmp_path / "g.csv")
    assert code == class_run.EXIT_GRADER and list(rows) == ["ann", "ben"]
    assert rows["ben"]["status"] == "grader-error" and "failed writing" in rows["ben"]["notes"]


def test_exit_codes_keep_their_meaning(tmp_path, capsys):
    solution, stub = ROOT / "solutions" / "04_shuffle.ipynb", ROOT / "exercises" / "04_shuffle.ipynb"
    report_path = str(tmp_path / "r.json")
    assert grade.main([str(solution), "--report", report_path]) == 0
    assert grade.main([str(stub), "--report", report_path]) == 1
    with pytest.raises(SystemExit) as info:
        grade.main([str(tmp_path / "missing.ipynb")])
    assert info.value.code == 2


def _stripped(src: Path, dest: Path, extra: str = "") -> Path:
    """A copy of ``src`` with every cell's tags removed (``extra`` added to its check cells)."""
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if "check" in cell.metadata.get("tags", []):
            cell.source += extra
        cell.metadata.pop("tags", None)
    nbformat.write(nb, dest)
    return dest


def test_make_grade_strict_grades_at_home_and_a_notebook_that_lost_its_tags(tmp_path):
    """`make grade STRICT=1` as a learner runs it: the untouched stub, and a solution whose tags a tool
    stripped (its check cells are told by what they hold), end with the summary; make succeeds."""
    stripped = _stripped(ROOT / "solutions" / "04_shuffle.ipynb", tmp_path / "04_shuffle.ipynb")
    env = {**os.environ, "MAKEFLAGS": ""}
    venv = Path(sys.prefix)          # this environment, never rebuilt (-o: its stamp counts as current)
    done = subprocess.run(["make", "-s", "--no-print-directory", f"VENV={venv}", "-o", str(venv / ".installed"),
                           "grade", "STRICT=1", f"NB={ROOT / 'exercises' / '02_channel_gate.ipynb'} {stripped}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1].startswith("1 of 2 notebooks pass, 1/3 points. Not yet: 1 not attempted")
    assert "***" not in done.stdout + done.stderr        # make's "make: *** [grade] Error 1"
    assert subprocess.run([sys.executable, "-m", "sa_course.grade", str(ROOT / "exercises" / "04_shuffle.ipynb"),
                           "--report", str(tmp_path / "r.json")], cwd=tmp_path, capture_output=True).returncode == 1


def test_a_check_cell_that_lost_its_tag_and_holds_more_says_why_it_stops_in_strict_mode(tmp_path):
    path = _stripped(ROOT / "solutions" / "04_shuffle.ipynb", tmp_path / "04_shuffle.ipynb", "\nprint('done')")
    row = grade.grade_all([path], grade.Options(strict=True), 1)[0]
    assert row.status == "error" and "No module named 'sa_course'" in row.message
    assert "check cell that lost its 'check' tag" in row.message


def _run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run the grader with a terminal as stdout and stderr; what the terminal showed."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))     # 30 rows, 100 columns
    proc = subprocess.Popen([sys.executable, "-m", "sa_course.grade", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=side, stderr=side)
    os.close(side)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=120)
    os.close(main)
    return shown.decode(errors="replace")


def test_a_progress_bar_on_a_terminal_and_none_in_a_pipe(tmp_path):
    room = tmp_path / "room"
    for name in ("ann", "ben", "cid"):
        _copy(ROOT / "exercises" / "04_shuffle.ipynb", room / name / "04_shuffle.ipynb")   # no kernel needed
    args = ["--class", "room", "--jobs", "2"]
    on_terminal = _run_in_terminal(args, tmp_path)
    assert "3/3" in on_terminal and "0 pass" in on_terminal and "notebook" in on_terminal
    piped = subprocess.run([sys.executable, "-m", "sa_course.grade", *args, "--overwrite"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 1 and "3/3" not in piped.stdout + piped.stderr and "\r" not in piped.stderr
    copies = list(tmp_path.glob("grade-backups/*/gradebook.csv"))          # what --overwrite replaced
    assert len(copies) == 1 and copies[0].read_text().startswith('"student",')


def test_a_feedback_page_for_a_notebook_graded_on_its_own(tmp_path):
    stub = _copy(ROOT / "exercises" / "02_channel_gate.ipynb", tmp_path / "02_channel_gate.ipynb")
    assert grade.main([str(stub), "--report", str(tmp_path / "r.json"), "--feedback", str(tmp_path / "pages")]) == 1
    page = (tmp_path / "pages" / "02_channel_gate.md").read_text()
    assert "Total: 0/2" in page and "02\\_channel\\_gate: not attempted, 0/2 points" in page
    assert "Write the functions that still raise NotImplementedError" in page
    assert (tmp_path / "pages" / "02_channel_gate.html").read_text().startswith("<!DOCTYPE html>")
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["path"] == "02_channel_gate.ipynb" and row["sha256"] == hashlib.sha256(stub.read_bytes()).hexdigest()


def test_the_lms_file_and_a_bad_points_file_from_the_command_line(tmp_path, capsys):
    room = tmp_path / "room"
    for name in ("ann", "=ben"):
        _copy(ROOT / "exercises" / "04_shuffle.ipynb", room / name / "04_shuffle.ipynb")   # no kernel needed
    (tmp_path / "ids.csv").write_text("Student,ID\nann,0031337\n=ben,+44 7\n")
    args = ["--class", str(room), "--gradebook", str(tmp_path / "g.csv"), "--reports", str(tmp_path / "r"),
            "--feedback", str(tmp_path / "f")]
    bad = tmp_path / "points.toml"
    bad.write_text("[04_shuffle]\nshuffle = -2\n")
    with pytest.raises(SystemExit) as info:
        grade.main([*args, "--points", str(bad)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "04_shuffle.shuffle = -2" in err
    assert not (tmp_path / "g.csv").exists()
    with pytest.raises(SystemExit):
        grade.main([*args, "--lms-csv", str(tmp_path / "lms.csv")])           # without the map
    assert grade.main([*args, "--lms-csv", str(tmp_path / "lms.csv"), "--lms-ids", str(tmp_path / "ids.csv")]) == 1
    assert (tmp_path / "lms.csv").read_text().splitlines() == [
        '"id","student","total","max","01_grouping","02_channel_gate","03_spatial_gate","04_shuffle","05_sa_layer"',
        '"+44 7","\'=ben",0,10,0,0,0,0,0', '"0031337","ann",0,10,0,0,0,0,0']


def test_grading_inside_the_class_folder_never_grades_its_own_output(tmp_path, monkeypatch):
    _copy(ROOT / "exercises" / "04_shuffle.ipynb", tmp_path / "ann" / "04_shuffle.ipynb")     # no kernel needed
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--overwrite"], ["--overwrite"]):
        code, printed = _main(["--class", ".", *extra])
        assert code == 1 and list(_book(tmp_path / "gradebook.csv")) == ["ann"]
    assert "grade-reports: not graded: the grader's own output folder" in printed
    assert "grade-backups: not graded: the grader's own output folder" in printed


def test_a_later_checks_timeout_keeps_the_points_of_the_check_before_it(tmp_path):
    """Exercise 03 with a right GroupNorm and a spatial gate that never returns: timeout, GroupNorm's points."""
    endless = ("    nu, gn_cache = groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)\n",
               "    import time\n    while True:\n        time.sleep(0.05)\n")
    path = _copy(ROOT / "solutions" / "03_spatial_gate.ipynb", tmp_path / "03_spatial_gate.ipynb", endless)
    row = grade.grade_all([path], grade.Options(timeout=10), 1)[0]
    assert (row.status, row.points, row.max_points) == ("timeout", 2, 3), row.message
    assert [(c["check"], c["status"]) for c in row.checks] == [("groupnorm", "pass")]
