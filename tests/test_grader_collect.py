"""The instructor's workflow around the grader: `sa-course release` (a student copy without
solutions) and `sa-course collect` (an LMS download as DIR/<student>/*.ipynb, every file not taken
listed with its reason). No kernel is started here."""
import csv
import json
import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from sa_course.cli import main as sa_course
from sa_course.grade import classroom, collect

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = (ROOT / "solutions" / "04_shuffle.ipynb").read_bytes()
STUB_02 = (ROOT / "exercises" / "02_channel_gate.ipynb").read_bytes()
BARE = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])).encode()
WHEN = (2024, 3, 1, 12, 30, 0)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=WHEN), data)
    return path


def _ids(path: Path) -> dict:
    return {row["student"]: row["id"] for row in csv.DictReader(path.open())}


def test_a_canvas_download_becomes_a_class_folder_and_every_other_file_is_listed(tmp_path, capsys):
    download = _zip(tmp_path / "submissions.zip", {
        "smithjohn_1234_5678_04_shuffle.ipynb": SOLUTION,
        "smithjohn_1234_5678_Untitled.ipynb": BARE,
        "smithjohn_1234_5678_Untitled1.ipynb": STUB_02,            # an exercise by its metadata, whatever its name
        "doe_jane_LATE_0099_100_02_channel_gate-1.ipynb": STUB_02,
        "doe_jane_LATE_0099_100_notes.txt": b"notes",
        "../escape_1_2_04_shuffle.ipynb": SOLUTION,
        "__MACOSX/._smithjohn_1234_5678_04_shuffle.ipynb": b"junk",
    })
    room = tmp_path / "room"
    assert sa_course(["collect", str(download), str(room)]) == 0
    out = capsys.readouterr().out
    assert sorted(str(p.relative_to(room)) for p in room.rglob("*.ipynb")) == [
        "doe_jane/02_channel_gate-1.ipynb", "smithjohn/04_shuffle.ipynb", "smithjohn/Untitled1.ipynb"]
    assert (room / "smithjohn" / "04_shuffle.ipynb").read_bytes() == SOLUTION
    assert (room / "smithjohn" / "04_shuffle.ipynb").stat().st_mtime == pytest.approx(
        __import__("datetime").datetime(*WHEN).timestamp())
    assert "not taken: smithjohn_1234_5678_Untitled.ipynb: not an exercise notebook" in out
    assert "not taken: doe_jane_LATE_0099_100_notes.txt: not a notebook (.ipynb)" in out
    assert "not taken: ../escape_1_2_04_shuffle.ipynb: a path that leaves the download" in out
    assert "__MACOSX" not in out
    ids = tmp_path / "room-lms-ids.csv"
    assert _ids(ids) == {"doe_jane": "0099", "smithjohn": "1234"} and '"0099"' in ids.read_text()
    found = {s.name: sorted(s.counted) for s in classroom.scan(room).students}
    assert found == {"doe_jane": ["02_channel_gate"], "smithjohn": ["02_channel_gate", "04_shuffle"]}


def test_a_moodle_download_and_a_folder_of_student_folders(tmp_path, capsys):
    src = tmp_path / "moodle"
    files = {"Ada Lovelace_3141_assignsubmission_file_/04_shuffle.ipynb": SOLUTION,
             "Ada Lovelace_3141_assignsubmission_file_/extra/05_sa_layer.ipynb": SOLUTION,
             "Ada Lovelace_3141_assignsubmission_onlinetext_/onlinetext.html": b"<p>hi</p>",
             "bob/02_channel_gate.ipynb": STUB_02, "ann_04_shuffle.ipynb": SOLUTION, "mine.ipynb": SOLUTION}
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    room = tmp_path / "room"
    assert collect.main([str(src), str(room)]) == 0
    out = capsys.readouterr().out
    assert sorted(str(p.relative_to(room)) for p in room.rglob("*.ipynb")) == [
        "Ada Lovelace/04_shuffle.ipynb", "ann/04_shuffle.ipynb", "bob/02_channel_gate.ipynb"]
    assert "extra/05_sa_layer.ipynb: in a sub-folder of the student's folder" in out
    assert "onlinetext.html: not a notebook" in out
    assert "not taken: mine.ipynb: whose notebook this is cannot be told" in out
    assert _ids(tmp_path / "room-lms-ids.csv") == {"Ada Lovelace": "3141"}


def test_collect_never_overwrites_without_being_asked(tmp_path, capsys):
    download = _zip(tmp_path / "d.zip", {"smithjohn_1_2_04_shuffle.ipynb": SOLUTION})
    room = tmp_path / "room"
    assert sa_course(["collect", str(download), str(room)]) == 0
    (room / "smithjohn" / "04_shuffle.ipynb").write_bytes(b"graded copy")
    assert sa_course(["collect", str(download), str(room)]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert (room / "smithjohn" / "04_shuffle.ipynb").read_bytes() == b"graded copy"
    assert sa_course(["collect", str(download), str(room), "--overwrite"]) == 0
    assert (room / "smithjohn" / "04_shuffle.ipynb").read_bytes() == SOLUTION
    assert sa_course(["collect", str(tmp_path / "nothing.zip"), str(room)]) == 2


def test_a_link_in_the_download_is_not_followed(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "ann").mkdir(parents=True)
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(SOLUTION)
    os.symlink(secret, src / "ann" / "04_shuffle.ipynb")
    assert collect.main([str(src), str(tmp_path / "room")]) == 0
    assert "not taken: ann/04_shuffle.ipynb: a link, not a file" in capsys.readouterr().out
    assert not (tmp_path / "room").exists()


def test_release_writes_lessons_and_exercises_without_solutions(tmp_path, capsys):
    folder = tmp_path / "class-copy"
    assert sa_course(["release", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["HANDIN.md", "exercises", "notebooks"]
    assert sorted(p.name for p in (folder / "exercises").iterdir()) == sorted(p.name for p in (ROOT / "exercises").iterdir())
    assert len(list((folder / "notebooks").glob("*.ipynb"))) == len(list((ROOT / "notebooks").glob("*.ipynb")))
    assert all(json.loads(p.read_text())["metadata"]["sa_course"]["kind"] == "exercise"
               for p in (folder / "exercises").iterdir())
    handin = (folder / "HANDIN.md").read_text()
    assert "`04_shuffle.ipynb`" in handin and "sa-course grade --strict exercises/" in handin
    assert sa_course(["release", str(folder)]) == 2
    assert "already holds" in capsys.readouterr().err
