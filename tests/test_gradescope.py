"""The Gradescope autograder: the zip, its set-up script, and its run_autograder on submissions.

The zip is written once, as an instructor would (`--gradescope-autograder`), unpacked into a
simulated autograder tree (``GRADESCOPE_ROOT``: source/, submission/, results/), and its own
run_autograder grades a correct, a wrong, a hostile and a malformed submission, with this
environment's Python standing in for the one setup.sh installs (setup.sh itself needs apt and the
network: it is checked as text). Every results.json is checked against Gradescope's documented
format, field by field; the field names and values below are written from that documentation.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from sa_course import cli as course_cli
from sa_course.checks import EXERCISES
from sa_course.grade import autograder as run, gradescope, sandbox
from tampering.catalogue import CASES, WRONG

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
# Gradescope's results.json (its "Autograder Specifications"): every field it documents
TOP_FIELDS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
              "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
               "tags", "visibility", "extra_data"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "simple_format", "html", "md", "ansi"}
CHOSEN = {"visibility": "after_published", "stdout_visibility": "after_due_date"}
POINTS_FILE = """
[03_spatial_gate]
groupnorm = 1.5
spatial_gate = 1.5

[05_sa_layer]
sa_layer = 4
"""
MAX_SCORES = {**{name: e.points for name, e in EXERCISES.items()}, "05_sa_layer": 4}     # with POINTS_FILE


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("zip")
    (folder / "points.toml").write_text(POINTS_FILE)
    out = folder / "autograder.zip"
    code = course_cli.main(["grade", "--gradescope-autograder", str(out), "--timeout", "40",
                            "--points", str(folder / "points.toml"),
                            "--visibility", CHOSEN["visibility"], "--stdout-visibility", CHOSEN["stdout_visibility"]])
    assert code == 0 and out.is_file()
    return out


def _notebook(source: Path, cell: str | None = None, defining: str = "") -> bytes:
    """A solution notebook, or one whose exercise cell (the one defining ``defining``) is replaced."""
    nb = nbformat.read(source, as_version=4)
    for c in nb.cells:
        if cell is not None and "exercise" in c.metadata.get("tags", []) and f"def {defining}" in c.source:
            c.source = cell
    return nbformat.writes(nb).encode()


def _source(notebook: Path, defining: str) -> str:
    """The source of the notebook's cell that defines ``defining``."""
    return next(c.source for c in nbformat.read(notebook, as_version=4).cells if f"def {defining}" in c.source)


def run_autograder(zip_path: Path, tmp: Path, files: dict[str, bytes], python: str = sys.executable,
                   before=None) -> tuple[dict, Path]:
    """Lay out /autograder as Gradescope does, run run_autograder, return results.json and the root."""
    root = tmp / "autograder"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    for name, data in files.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(data)
    (root / "submission").mkdir(exist_ok=True)
    if before:
        before(root)
    env = {**os.environ, "GRADESCOPE_ROOT": str(root), "SA_GRADESCOPE_PYTHON": python}
    done = subprocess.run(["bash", str(root / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text()), root


def check_format(results: dict) -> dict[str, dict]:
    """results.json as Gradescope documents it, one test per exercise; returns the tests by exercise."""
    assert set(results) <= TOP_FIELDS, f"undocumented fields: {set(results) - TOP_FIELDS}"
    assert isinstance(results["score"], (int, float)) and isinstance(results["execution_time"], int)
    assert results["execution_time"] >= 0 and isinstance(results["output"], str)
    assert results["visibility"] == CHOSEN["visibility"] and results["stdout_visibility"] == CHOSEN["stdout_visibility"]
    assert {results[k] for k in ("output_format", "test_output_format", "test_name_format")} == {"text"}
    assert isinstance(results["extra_data"], dict) and isinstance(results["tests"], list)
    tests = {}
    for test in results["tests"]:
        assert set(test) <= TEST_FIELDS, f"undocumented fields: {set(test) - TEST_FIELDS}"
        assert all(isinstance(test[k], str) for k in ("name", "number", "output", "status", "visibility"))
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITY
        assert test["visibility"] == CHOSEN["visibility"]
        assert 0 <= test["score"] <= test["max_score"]
        assert (test["status"] == "passed") == (test["score"] == test["max_score"])
        tests[test["name"].split(":")[0]] = test
    assert list(tests) == list(EXERCISES), "one test per exercise, in the course's order"
    assert {e: t["max_score"] for e, t in tests.items()} == MAX_SCORES
    assert len({t["number"] for t in tests.values()}) == len(tests)
    assert results["score"] == pytest.approx(sum(t["score"] for t in tests.values()))
    assert f"protection: {sandbox.isolation().level}" in results["output"]
    return tests


def test_the_zip_holds_the_scripts_the_wheel_the_pins_and_the_exercises_configuration(autograder):
    with zipfile.ZipFile(autograder) as z:
        names = z.namelist()
        wheel = next(n for n in names if n.endswith(".whl"))
        assert sorted(names) == sorted(["setup.sh", "run_autograder", wheel, "constraints.txt", gradescope.CONFIG,
                                        gradescope.POINTS])
        for script in ("setup.sh", "run_autograder"):
            assert stat.S_IMODE(z.getinfo(script).external_attr >> 16) & 0o111, f"{script} is not executable"
        assert z.read("constraints.txt") == (ROOT / "constraints.txt").read_bytes()
        config = json.loads(z.read(gradescope.CONFIG))
        table = json.loads(z.read(gradescope.POINTS))
        (Path(autograder.parent) / wheel).write_bytes(z.read(wheel))
    with zipfile.ZipFile(autograder.parent / wheel) as w:
        assert "sa_course/grade/autograder.py" in w.namelist()        # what run_autograder runs
    assert {k: config[k] for k in CHOSEN} == CHOSEN and config["strict"] is True and config["timeout"] == 40
    assert config["exercises"] == list(EXERCISES)
    assert table["03_spatial_gate"] == {"groupnorm": 1.5, "spatial_gate": 1.5}
    assert {name: sum(checks.values()) for name, checks in table.items()} == MAX_SCORES


def test_setup_sh_installs_python_bubblewrap_and_the_course_at_its_pins(autograder):
    with zipfile.ZipFile(autograder) as z:
        setup, run = z.read("setup.sh").decode(), z.read("run_autograder").decode()
        wheel = next(n for n in z.namelist() if n.endswith(".whl"))
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].split("==")
            pins[name.strip()] = version.strip()
    assert subprocess.run(["bash", "-n"], input=setup, text=True).returncode == 0
    for needed in ("apt-get install", "bubblewrap", "python3", "-m venv", gradescope.VENV,
                   "--index-url https://download.pytorch.org/whl/cpu",
                   f'"torch=={pins["torch"]}"', f'"torchvision=={pins["torchvision"]}"',
                   '-c "$source_dir/constraints.txt"', f'"$source_dir/{wheel}"', "pip check"):
        assert needed in setup, f"setup.sh does not say {needed!r}"
    assert subprocess.run(["bash", "-n"], input=run, text=True).returncode == 0
    assert f"{gradescope.VENV}/bin/python" in run and "sa_course.grade.autograder" in run


def test_a_correct_submission_gets_every_point_of_what_it_submitted(autograder, tmp_path):
    results, _ = run_autograder(autograder, tmp_path, {
        "04_shuffle.ipynb": _notebook(SOLUTIONS / "04_shuffle.ipynb"),
        "my work/gate.ipynb": _notebook(SOLUTIONS / "02_channel_gate.ipynb")})      # found by its metadata
    tests = check_format(results)
    assert [e for e, t in tests.items() if t["status"] == "passed"] == ["02_channel_gate", "04_shuffle"]
    assert results["score"] == EXERCISES["02_channel_gate"].points + EXERCISES["04_shuffle"].points
    assert "(graded: my work/gate.ipynb)" in tests["02_channel_gate"]["output"]
    for missing in ("01_grouping", "03_spatial_gate", "05_sa_layer"):
        assert tests[missing]["score"] == 0 and tests[missing]["output"].startswith("not submitted")


def test_a_wrong_submission_fails_with_the_graders_message_and_no_reference_value(autograder, tmp_path):
    spatial = SOLUTIONS / "03_spatial_gate.ipynb"
    twice = (_source(spatial, "spatial_gate_forward") + "\n\n_right = spatial_gate_forward\n\n"
             "def spatial_gate_forward(*args, **kwargs):\n    y1, cache = _right(*args, **kwargs)\n    return 2 * y1, cache\n")
    results, _ = run_autograder(autograder, tmp_path, {
        "04_shuffle.ipynb": _notebook(SOLUTIONS / "04_shuffle.ipynb", WRONG, "channel_shuffle_forward"),
        "03_spatial_gate.ipynb": _notebook(spatial, twice, "spatial_gate_forward")})
    tests = check_format(results)
    shuffle, gate = tests["04_shuffle"], tests["03_spatial_gate"]
    assert shuffle["score"] == 0 and shuffle["status"] == "failed"
    assert shuffle["output"].startswith("fail: ") and "values differ" in shuffle["output"]
    assert "hint:" in shuffle["output"] and not re.search(r"expected -?\d", shuffle["output"])
    assert gate["score"] == 1.5 and gate["status"] == "failed"             # GroupNorm's points, not the gate's
    assert "groupnorm: pass" in gate["output"] and "spatial_gate: fail" in gate["output"]
    assert results["score"] == 1.5



def test_a_hostile_submission_cannot_touch_the_results(autograder, tmp_path):
    """The catalogue's notebook that writes, deletes and adds files outside its scratch directory,
    aimed at results/: it gets no points, and results/ holds only what the grader wrote."""
    case = next(c for c in CASES if c.name == "writes_outside_its_copy")

    def plant(root):
        (root / "results").mkdir()
        (root / "results" / "keep.txt").write_text("do not touch")
    source = WRONG + case.source.replace("{canary}", str(tmp_path / "autograder" / "results"))
    results, root = run_autograder(autograder, tmp_path, {"04_shuffle.ipynb": _notebook(SOLUTIONS / "04_shuffle.ipynb", source, "channel_shuffle_forward")},
                                   before=plant)
    tests = check_format(results)
    assert results["score"] == 0 and tests["04_shuffle"]["output"].split(":")[0] in case.statuses
    if sandbox.isolation().level != "none":          # with no sandbox the kernel may write wherever the grader may
        assert sorted(p.name for p in (root / "results").iterdir()) == ["keep.txt", "results.json"]
        assert (root / "results" / "keep.txt").read_text() == "do not touch"


def test_a_malformed_submission_gets_results_that_say_what_is_wrong(autograder, tmp_path):
    bad_json = next(c for c in CASES if c.name == "bad_json")

    def too_big(root):
        with open(root / "submission" / "02_channel_gate.ipynb", "wb") as f:
            f.truncate(21 << 20)                     # over the grader's 20 MiB, sparse
    results, _ = run_autograder(autograder, tmp_path, {"04_shuffle.ipynb": bad_json.raw, "Untitled.ipynb": b"[]",
                                                       "notes.txt": b"not a notebook"}, before=too_big)
    tests = check_format(results)
    assert results["score"] == 0
    assert tests["04_shuffle"]["output"].startswith("error: ") and bad_json.text in tests["04_shuffle"]["output"]
    assert tests["02_channel_gate"]["output"].startswith("error: ") and "bytes, more than" in tests["02_channel_gate"]["output"]
    assert "Untitled.ipynb: not graded: not a readable notebook" in results["output"]
    assert "notes.txt" not in results["output"]


def test_results_are_written_even_when_the_grader_cannot_run(autograder, tmp_path):
    results, _ = run_autograder(autograder, tmp_path / "no-python", {}, python="/bin/false")
    assert results["score"] == 0 and results["tests"] == [] and "autograder itself failed" in results["output"]

    def bad_config(root):
        path = root / "source" / gradescope.CONFIG
        path.write_text(path.read_text().replace(f'"{CHOSEN["visibility"]}"', '"sometimes"', 1))
    results, _ = run_autograder(autograder, tmp_path / "bad-config", {}, before=bad_config)
    assert results["score"] == 0 and results["tests"] == []
    assert "autograder itself failed" in results["output"] and "'sometimes' is not one of" in results["output"]


def test_the_zip_is_never_overwritten_without_being_asked(autograder, capsys):
    before = autograder.read_bytes()
    with pytest.raises(SystemExit) as info:
        course_cli.main(["grade", "--gradescope-autograder", str(autograder)])
    assert info.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        course_cli.main(["grade", "--gradescope-autograder", str(autograder), "--overwrite", "--class", "x"])
    bad = autograder.parent / "bad.toml"
    bad.write_text("[03_spatial_gate]\nspatial = 1\n")
    with pytest.raises(SystemExit) as info:
        course_cli.main(["grade", "--gradescope-autograder", str(autograder), "--overwrite", "--points", str(bad)])
    assert info.value.code == 2 and "03_spatial_gate.spatial is not a check" in capsys.readouterr().err
    assert autograder.read_bytes() == before


def test_without_the_course_source_it_refuses_and_says_where_to_run_it(tmp_path, monkeypatch):
    monkeypatch.setattr(gradescope, "SOURCE", tmp_path)
    with pytest.raises(gradescope.AutograderError, match="run this from a clone of the course"):
        gradescope.build(tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_the_container_cpu_quota_sets_how_many_notebooks_run_at_once(tmp_path):
    everything = len(os.sched_getaffinity(0))
    assert run.cores(tmp_path) == everything                    # no cgroup files: the CPUs it may run on
    (tmp_path / "cpu.max").write_text("50000 100000\n")         # cgroup v2, half a CPU
    assert run.cores(tmp_path) == 0.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert run.cores(tmp_path) == everything
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("25000\n")    # cgroup v1, a quarter
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert run.cores(tmp_path) == 0.25
