"""The grader: solutions pass, untouched exercises are "not attempted", and whatever a
learner writes ends as a row of the table, never as a crash, never touching the file.

The notebooks run two at a time (one module-wide fixture), since each needs a kernel.
Tampering with the grader itself is in test_grader_tampering.py.
"""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from sa_course import grade
import sa_course.grade.report  # noqa: F401  (grade.report)
from sa_course.checks import EXERCISES

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "solutions" / "04_shuffle.ipynb"    # the cheapest exercise to check
SHORT_TIMEOUT = 6


def _solution_source() -> str:
    nb = nbformat.read(BASE, as_version=4)
    return next(c.source for c in nb.cells if "exercise" in c.metadata.get("tags", []))


def _patched(old: str, new: str) -> str:
    source = _solution_source()
    assert old in source
    return source.replace(old, new, 1)


FIRST_LINE = "b, c, h, w = x.shape\n    out"
RETURN = "return out.copy() if np.shares_memory(out, x) else out, groups"

# name: (exercise cell source, timeout, expected status, text the message must contain)
CASES = {
    "exception": (lambda: _patched(FIRST_LINE, "b, c, h, w = x.shape\n    1 / 0\n    out"), 60,
                  "error", "channel_shuffle_forward raised ZeroDivisionError"),
    "syntax_error": (lambda: _patched("def channel_shuffle_forward(x, groups=2):",
                                      "def channel_shuffle_forward(x, groups=2)"), 60,
                     "error", "raised SyntaxError"),
    "endless_loop_in_a_cell": (lambda: "import time\nwhile True:\n    time.sleep(0.05)\n", SHORT_TIMEOUT,
                               "timeout", "code cell 3"),
    "endless_loop_in_the_function": (lambda: _patched(FIRST_LINE, "b, c, h, w = x.shape\n    while True:\n"
                                                                  "        pass\n    out"),
                                     SHORT_TIMEOUT, "timeout", "in the checks"),
    "nan_output": (lambda: _patched(RETURN, "return out * np.nan, groups"), 60, "fail", "NaN where"),
    "wrong_shape": (lambda: _patched(RETURN, "return out[:, 1:].copy(), groups"), 60, "fail",
                    "out (groups=2): shape (2, 11,"),
    "wrong_dtype": (lambda: _patched(RETURN, "return out.astype(np.float32), groups"), 60, "fail",
                    "dtype float32 differs from the expected float64"),
    "print_flood": (lambda: "for i in range(50_000):\n    print('spam', i)\n" + _solution_source(), 60,
                    "pass", "Correct: channel shuffle"),
    "sys_exit": (lambda: "import sys\nsys.exit()\n", 60, "error", "called sys.exit()"),
    "input_mutation": (lambda: _patched(FIRST_LINE, "b, c, h, w = x.shape\n    x[...] = 0\n    out"), 60,
                       "fail", "changed its input x in place"),
    "kernel_killed": (lambda: "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", 60,
                      "error", "the kernel died"),
    "half_attempted": (lambda: _patched("    b, c, h, w = dout.shape\n", "    raise NotImplementedError\n"), 60,
                       "not attempted", "channel_shuffle_backward is not written yet"),
}


def _write_case(folder: Path, name: str, source: str) -> Path:
    nb = nbformat.read(BASE, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "exercise" in cell.metadata.get("tags", []):
                cell.source = source
    path = folder / f"04_{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade solutions/ (through the command line) and every nasty case, all at once."""
    tmp = tmp_path_factory.mktemp("grade")
    paths = {name: _write_case(tmp, name, make()) for name, (make, *_rest) in CASES.items()}
    garbage = tmp / "04_garbage.ipynb"
    garbage.write_bytes(b"\x00 this is not json")
    paths["garbage"] = garbage
    before = {name: (p.read_bytes(), p.stat().st_mtime_ns) for name, p in paths.items()}
    report = tmp / "solutions-report.json"
    short = [n for n in paths if n in CASES and CASES[n][1] == SHORT_TIMEOUT]
    normal = [n for n in paths if n not in short]
    with ThreadPoolExecutor(3) as pool:
        cli = pool.submit(grade.main, [str(ROOT / "solutions"), "--report", str(report), "--jobs", "2"])
        slow = pool.submit(grade.grade_all, [paths[n] for n in short], grade.Options(timeout=SHORT_TIMEOUT), 2)
        rows = dict(zip(normal, grade.grade_all([paths[n] for n in normal], grade.Options(timeout=60), 2)))
        rows.update(zip(short, slow.result()))
        exit_code = cli.result()
    after = {name: (p.read_bytes(), p.stat().st_mtime_ns) for name, p in paths.items()}
    return {"exit_code": exit_code, "report": json.loads(report.read_text()), "rows": rows,
            "before": before, "after": after}


def test_grader_passes_every_solution(graded, capsys):
    assert graded["exit_code"] == 0
    report = graded["report"]
    assert report["passed"] and report["points"] == report["max_points"] == sum(e.points for e in EXERCISES.values())
    assert [r["status"] for r in report["rows"]] == ["pass"] * len(EXERCISES)
    assert all(r["message"].startswith("Correct: ") for r in report["rows"])


def test_grader_on_untouched_exercises_says_not_attempted_for_each(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")             # the table and the summary wrap to the terminal
    report = tmp_path / "report.json"
    assert grade.main([str(ROOT / "exercises"), "--report", str(report)]) == 1
    rows = json.loads(report.read_text())["rows"]
    assert sorted(r["exercise"] for r in rows) == sorted(EXERCISES)
    assert {r["status"] for r in rows} == {"not attempted"} and all(r["points"] == 0 for r in rows)
    *table, summary = capsys.readouterr().out.splitlines()
    assert table[0].startswith(f"protection: {grade.sandbox.isolation().level} (")
    assert sum("not attempted" in line for line in table) == len(EXERCISES) and "Traceback" not in "\n".join(table)
    assert summary == f"0 of {len(EXERCISES)} notebooks pass, 0/10 points. Not yet: {len(EXERCISES)} not attempted " \
                      "(the table says which, and why)."


@pytest.mark.parametrize("name", CASES)
def test_whatever_the_learner_writes_becomes_a_row(graded, name):
    _make, _timeout, status, text = CASES[name]
    row = graded["rows"][name]
    assert (row.status, row.exercise) == (status, "04_shuffle"), row.message
    assert text in row.message
    assert row.points == (row.max_points if status == "pass" else 0)


def test_a_file_that_is_not_a_notebook_is_an_error_row(graded):
    row = graded["rows"]["garbage"]
    assert row.status == "error" and "not a readable notebook" in row.message


def test_grading_never_touches_the_learners_files(graded):
    assert graded["after"] == graded["before"]


def test_the_table_shows_status_points_and_the_hint():
    row = grade.Row("02_channel_gate", "exercises/02_channel_gate.ipynb", "fail", 0, 2,
                    "y0: values differ\n  hint: apply the sigmoid")
    table = grade.format_table([row])
    assert "02_channel_gate" in table and "fail" in table and "0/2" in table
    assert "hint: apply the sigmoid" in table and table.splitlines()[-1].split() == ["total", "0/2"]


def test_a_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as info:
        grade.main([str(tmp_path / "nope.ipynb")])
    assert info.value.code == 2


def test_the_summary_line_counts_what_does_not_pass_yet():
    rows = [grade.Row("02_channel_gate", "exercises/02_channel_gate.ipynb", "fail", 0, 2, "y0: values differ"),
            grade.Row("04_shuffle", "exercises/04_shuffle.ipynb", "pass", 1, 1, "Correct")]
    line = grade.report.summary(rows)
    assert line.startswith("1 of 2 notebooks pass, 1/3 points. Not yet: 1 fail")


def test_control_characters_never_reach_the_table():
    row = grade.Row("04_shuffle", "exercises/04_\x1b[2Jshuffle.ipynb", "fail", 0, 1,
                    "out: values differ\x1b]0;owned\x07\x1b[31m red\r\x08\x00 \u202eevil")
    table = grade.format_table([row])
    assert not any(ch in table for ch in "\x1b\x07\x08\x00\r\u202e") and "red" in table and "evil" in table


# ---------------------------------------------------------------- the table: protection first, messages whole

LONG = ("dx (groups=2) (vs numerical gradient): values differ: max abs diff 4.168e+00, max rel diff 3.572e+03 "
        "(tolerance rtol=1e-07, atol=3.0e-07); 700 of 840 entries off; first at index (0, 1, 0, 0): yours "
        "-1.914989762, expected 0.8386394423\n  hint: you shuffled dout forward again: the backward of a "
        "permutation is its INVERSE, which sends every channel back where it came from (lesson 04, section 3)")


@pytest.mark.parametrize("level, words", [("bwrap", "bubblewrap: project and Python read-only"),
                                          ("setuid", "no bubblewrap (bwrap is not installed)"),
                                          ("none", "it could change your files")])
def test_the_tables_first_line_names_the_protection_found(level, words):
    iso = grade.sandbox.Isolation(level, True, "/usr/bin/bwrap" if level == "bwrap" else None,
                                  "" if level == "bwrap" else "bwrap is not installed")
    table = grade.format_table([grade.Row("04_shuffle", "exercises/04_shuffle.ipynb", "pass", 1, 1, "Correct")], 100,
                               grade.report.protection(iso))
    first = table.splitlines()[0]
    assert first.startswith(f"protection: {level} (") and words in table.split("exercise  ")[0].replace("\n", " ")


@pytest.mark.parametrize("width", [120, 80, 60])
def test_every_message_and_hint_is_printed_whole_and_wrapped_at_word_boundaries(width):
    praise = ("Correct: channel shuffle, forward and backward. Largest relative error vs sa_numpy 0, vs numerical "
              "gradients 3e-10. Well done!")
    rows = [grade.Row("04_shuffle", "exercises/04_shuffle.ipynb", "fail", 0, 1, LONG),
            grade.Row("04_shuffle_again", "exercises/04_shuffle_again.ipynb", "pass", 1, 1, praise)]
    lines = grade.format_table(rows, width).splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    body = " ".join(lines[2:-1]).split()
    for message in (LONG, praise):
        words = message.split()
        start = body.index(words[0])
        assert body[start:start + len(words)] == words        # every word, in order, none cut or split
    assert any(line.lstrip().startswith("hint: you shuffled dout") for line in lines)
    assert "Well done!" in " ".join(lines)


def test_the_summary_line_wraps_at_word_boundaries():
    rows = [grade.Row(f"0{i}_x", f"exercises/0{i}_x.ipynb", "fail", 0, 2, "y0: values differ") for i in range(1, 6)]
    text = grade.report.summary(rows)
    lines = grade.report.wrapped(text, 60)
    assert all(len(line) <= 60 for line in lines) and " ".join(lines).split() == text.split()
