"""``sa-course``: init writes the course and never overwrites a learner's work, --update keeps
the exercises the learner changed and says which, bad input is one line with exit status 2,
and doctor reports data, kernels and problems with their fixes.

The commands run in this process through ``sa_course.cli.main``, as the console script calls it;
tests/test_install.py runs them from an installed wheel, in processes of their own (where the
C kernels can be turned off: a process builds them once)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sa_course import cli, resources
from sa_course.cli import course_folder, doctor
from test_data import write_imagefolder

SHIPPED = {name: path.read_bytes() for name, path in course_folder.shipped().items()}


def sa_course(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``sa-course ARGV``."""
    try:
        code = cli.main(list(map(str, argv)))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_one_line_usage_error(code, err, *words):
    assert code == 2
    assert err.startswith("sa-course") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)


def test_shipped_is_every_lesson_exercise_and_solution_of_the_install():
    folders = {"notebooks": resources.lessons_dir(), "exercises": resources.exercises_dir(),
               "solutions": resources.solutions_dir()}
    expected = {f"{folder}/{p.name}" for folder, where in folders.items() for p in where.glob("*.ipynb")}
    assert set(SHIPPED) == expected
    assert len([n for n in SHIPPED if n.startswith("notebooks/")]) == 8


@pytest.mark.parametrize("where", ["new/nested", "empty", "other files"])
def test_init_writes_the_course_into_a_new_empty_or_unrelated_folder(tmp_path, capsys, where):
    folder = tmp_path / where
    if where != "new/nested":
        folder.mkdir()
    if where == "other files":
        (folder / "notes.txt").write_text("mine")
    code, out, err = sa_course(capsys, "init", folder)
    assert code == 0, err
    assert "wrote 8 lessons, 5 exercises, 5 solutions" in out and "sa-course lab" in out
    written = snapshot(folder)
    record = json.loads(written.pop(course_folder.RECORD))
    if where == "other files":
        assert written.pop("notes.txt") == b"mine"
    assert written == SHIPPED
    assert record["files"] == {name: hashlib.sha256(data).hexdigest() for name, data in SHIPPED.items()}
    assert record["version"] == course_folder.installed_version()


def test_init_refuses_a_folder_that_holds_course_files_and_changes_nothing(tmp_path, capsys):
    folder = tmp_path / "course"
    (folder / "exercises").mkdir(parents=True)
    (folder / "exercises" / "01_grouping.ipynb").write_text("my answers")
    before = snapshot(folder)
    code, out, err = sa_course(capsys, "init", folder)
    assert_one_line_usage_error(code, err, str(folder), "exercises", "--update")
    assert snapshot(folder) == before and out == ""


def test_init_refuses_a_file(tmp_path, capsys):
    path = tmp_path / "course"
    path.write_text("not a folder")
    code, _, err = sa_course(capsys, "init", path)
    assert_one_line_usage_error(code, err, str(path), "is a file")
    assert path.read_text() == "not a folder"


def fake_install(tmp_path: Path, changes: dict[str, bytes]) -> dict[str, Path]:
    """shipped() of an install whose files are today's with ``changes`` (new or replaced files)."""
    folder = tmp_path / "new-install"
    files = {}
    for name, data in {**SHIPPED, **changes}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name] = path
    return files


def test_update_keeps_an_exercise_the_learner_changed_and_refreshes_the_rest(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "course"
    assert sa_course(capsys, "init", folder)[0] == 0
    mine = {"exercises/02_channel_gate.ipynb": b'{"my": "answers"}', "notebooks/05_whole_layer.ipynb": b'{"my": "notes"}'}
    for name, data in mine.items():
        (folder / name).write_bytes(data)
    (folder / "solutions/01_grouping.ipynb").unlink()
    changes = {name: SHIPPED[name] + b"\n" for name in ("exercises/02_channel_gate.ipynb", "exercises/03_spatial_gate.ipynb",
                                                        "notebooks/05_whole_layer.ipynb", "notebooks/01_feature_grouping.ipynb")}
    changes["exercises/06_new.ipynb"] = b"{}"
    monkeypatch.setattr(course_folder, "shipped", lambda: fake_install(tmp_path, changes))

    code, out, err = sa_course(capsys, "init", "--update", folder)
    assert code == 0, err
    after = snapshot(folder)
    assert after["exercises/02_channel_gate.ipynb"] == mine["exercises/02_channel_gate.ipynb"]
    assert "kept exercises/02_channel_gate.ipynb: you changed it" in out
    for name in ("exercises/03_spatial_gate.ipynb", "notebooks/05_whole_layer.ipynb",
                 "notebooks/01_feature_grouping.ipynb", "exercises/06_new.ipynb"):
        assert after[name] == changes[name], name
    assert after["solutions/01_grouping.ipynb"] == SHIPPED["solutions/01_grouping.ipynb"]
    assert after["notebooks/05_whole_layer.before-update.ipynb"] == mine["notebooks/05_whole_layer.ipynb"]
    assert "your changed copy is notebooks/05_whole_layer.before-update.ipynb" in out
    assert "3 refreshed, 2 added" in out and "1 of your exercises kept" in out
    record = json.loads(after[course_folder.RECORD])["files"]
    assert record["exercises/02_channel_gate.ipynb"] == hashlib.sha256(SHIPPED["exercises/02_channel_gate.ipynb"]).hexdigest()

    # a second update still knows the exercise is the learner's, and has nothing else to do
    code, out, _ = sa_course(capsys, "init", "--update", folder)
    assert code == 0 and "kept exercises/02_channel_gate.ipynb" in out and "0 refreshed, 0 added" in out
    assert snapshot(folder) == after


def test_update_treats_a_file_the_record_does_not_know_as_the_learners(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "course"
    assert sa_course(capsys, "init", folder)[0] == 0
    (folder / "exercises/06_new.ipynb").write_bytes(b"learner's own notebook")
    monkeypatch.setattr(course_folder, "shipped", lambda: fake_install(tmp_path, {"exercises/06_new.ipynb": b"{}"}))
    code, out, _ = sa_course(capsys, "init", "--update", folder)
    assert code == 0 and "kept exercises/06_new.ipynb" in out
    assert (folder / "exercises/06_new.ipynb").read_bytes() == b"learner's own notebook"


@pytest.mark.parametrize("case", ["missing folder", "no record", "broken record"])
def test_update_refuses_a_folder_it_cannot_compare_and_changes_nothing(tmp_path, capsys, case):
    folder = tmp_path / "course"
    if case != "missing folder":
        (folder / "exercises").mkdir(parents=True)
        (folder / "exercises/01_grouping.ipynb").write_text("my answers")
    if case == "broken record":
        (folder / course_folder.RECORD).write_text("{not json")
    before = snapshot(folder) if folder.exists() else None
    code, _, err = sa_course(capsys, "init", "--update", folder)
    assert_one_line_usage_error(code, err, str(folder), "sa-course init")
    assert (snapshot(folder) if folder.exists() else None) == before


@pytest.mark.parametrize("argv, words", [(["frob"], ["'frob'", "--help"]), ([], ["a command is needed", "--help"]),
                                         (["init", "--frob"], ["--frob", "--help"]),
                                         (["grade", "no/such/notebook.ipynb"], ["no/such/notebook.ipynb", "does not exist"])])
def test_bad_input_is_one_line_naming_the_problem_and_the_fix(capsys, argv, words):
    code, out, err = sa_course(capsys, *argv)
    assert_one_line_usage_error(code, err, *words)
    assert out == ""


@pytest.mark.parametrize("command", ["init", "lab", "grade", "doctor"])
def test_every_subcommand_has_help(capsys, command):
    code, out, _ = sa_course(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: sa-course {command}")


def test_lab_needs_a_course_folder_and_says_how_to_get_jupyterlab(tmp_path, capsys, monkeypatch):
    code, _, err = sa_course(capsys, "lab", tmp_path)
    assert_one_line_usage_error(code, err, str(tmp_path), "sa-course init")
    assert sa_course(capsys, "init", tmp_path / "course")[0] == 0
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None if name == "jupyterlab" else real(name))
    code, _, err = sa_course(capsys, "lab", tmp_path / "course")
    assert code == 1 and "pip install 'shuffle-attention-course[lab]'" in err


def findings(out: str) -> dict[str, str]:
    """doctor's lines by topic: 'CIFAR-10' -> 'ok ... ' (with its fix line, if any)."""
    by_topic, last = {}, None
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        if status in (doctor.OK, doctor.NOTE, doctor.PROBLEM):
            last = rest.strip().split("  ")[0]
            by_topic[last] = line
        elif last and line.strip().startswith("fix:"):
            by_topic[last] += "\n" + line.strip()
    return by_topic


def test_doctor_finds_an_imagefolder_named_by_sa_cifar_data(tmp_path, capsys, monkeypatch):
    write_imagefolder(tmp_path / "tiny")
    monkeypatch.setenv("SA_CIFAR_DATA", str(tmp_path / "tiny"))
    code, out, _ = sa_course(capsys, "doctor", "--strict")
    lines = findings(out)
    assert lines["CIFAR-10"].startswith("ok") and "12 train and 6 test in 3 classes" in lines["CIFAR-10"]
    for topic in ("course", "Python", "packages", "torch", "GPU", "C kernels", "Triton", "bubblewrap"):
        assert topic in lines, (topic, out)
    problems = [line for line in lines.values() if line.startswith(doctor.PROBLEM)]
    assert code == (1 if problems else 0)
    assert out.splitlines()[-1].startswith(f"{len(problems)} problem")


@pytest.mark.parametrize("make", ["nothing", "an empty folder"])
def test_doctor_without_data_says_how_to_get_it_and_still_exits_0(tmp_path, capsys, monkeypatch, make):
    path = tmp_path / "cifar"
    if make == "an empty folder":
        path.mkdir()
    monkeypatch.setenv("SA_CIFAR_DATA", str(path))
    code, out, _ = sa_course(capsys, "doctor")
    line = findings(out)["CIFAR-10"]
    assert code == 0
    assert line.startswith("PROBLEM") and str(path) in line and "$SA_CIFAR_DATA" in line
    assert "fix: python -m sa_torch.train --data DIR --download" in line


def test_doctor_names_why_the_c_kernels_did_not_build_and_the_fix(capsys, monkeypatch):
    from sa_torch.fused import cpu

    monkeypatch.delenv("SA_TORCH_CPU_KERNELS", raising=False)
    monkeypatch.setattr(cpu, "available", lambda: False)
    monkeypatch.setattr(cpu, "unavailable_reason", lambda: "CalledProcessError: cc: command not found")
    line = findings(sa_course(capsys, "doctor")[1])["C kernels"]
    assert line.startswith("PROBLEM") and "cc: command not found" in line and "fix: install a C compiler" in line



@pytest.mark.parametrize("name, capability, chosen, precision", [
    ("Tesla T4", (7, 5), "fp16", "fp16 autocast with a gradient scaler"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16", "bf16 autocast")])
def test_doctor_names_the_gpu_its_capability_and_the_precision_training_uses(monkeypatch, name, capability, chosen,
                                                                             precision):
    """The GPU faked; the precision is what sa_torch.train.device chooses (its own tests pin the rule)."""
    import torch

    from sa_torch.train import device

    monkeypatch.setattr(device, "pick_device", lambda name=None: torch.device("cuda", 0))
    monkeypatch.setattr(device, "precision_for", lambda d: chosen if torch.device(d).type == "cuda" else "off")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: type("P", (), {"total_memory": 15 << 30}))
    found = {f.topic: f for f in doctor.check_torch()}
    assert found["torch"].status == doctor.OK and "CUDA 12.4 build; training uses cuda" in found["torch"].text
    assert found["GPU"].status == doctor.OK
    assert found["GPU"].text == (f"{name}, compute capability {capability[0]}.{capability[1]}, 15 GiB; "
                                 f"training precision: {precision}")
