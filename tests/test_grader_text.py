"""Names and messages are text wherever they go (terminal, CSV, Markdown, HTML), every student stays
distinguishable whatever bytes their name holds, and the points file says what is wrong with it.
No kernel is started here."""
import csv
import io
import json
import os

import pytest

from sa_course.grade import feedback, gradebook, points, report
from sa_course.grade.classroom import Student, Submission
from sa_course.grade.names import csv_cell, file_name, lookalikes, shown
from sa_course.grade.runner import Row

TRICKY = ["ada", "Ada", "ada\u200b", "ada ", " ada", "ada\u00a0", os.fsdecode(b"ada\x80"), "ada\\x80", "ada\x1b[31m",
          "ada\u202egnp", "x\nada  pass", "ada\r", "ａｄａ", "cafe\u0301", "caf\u00e9", "ada\u2028", "ada\x85", "=cy"]
CONTROLS = [chr(c) for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))] + ["\u200b", "\u200e", "\u202e", "\u2066",
                                                                         "\u2028", "\ufeff", "\u00a0"]


def test_every_name_is_shown_as_its_own_printable_text():
    out = [shown(name) for name in TRICKY]
    assert len(set(out)) == len(TRICKY)                                   # one-to-one
    assert not any(ch in text for text in out for ch in CONTROLS)
    assert shown(os.fsdecode(b"ada\x80")) == "ada\\x80" and shown("ada\\x80") == "ada\\\\x80"
    assert shown("x\nada  pass") == "x\\x0aada  pass" and shown("ada ") == "ada\\x20"
    assert shown("ada\u202egnp") == "ada\\u202egnp" and shown("ａｄａ") == "ａｄａ"


def test_names_a_reader_would_take_for_one_are_flagged():
    alike = lookalikes(["ada", "Ada", "ａｄａ", "bob", "cafe\u0301", "caf\u00e9", "ada\u200b"])
    assert sorted(alike["ada"]) == ["Ada", "ａｄａ"] and "bob" not in alike and "ada\u200b" not in alike
    assert alike["caf\u00e9"] == ["cafe\u0301"]
    assert file_name("ada", others_alike=True) != file_name("Ada", others_alike=True)
    assert file_name("ada", others_alike=True).lower() != file_name("Ada", others_alike=True).lower()


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", " =1", "\u00a0=1", "\u200b=1",
                                  "\u3000=1", "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20x", "'=1"])
def test_no_cell_reaches_a_spreadsheet_as_a_formula(text):
    cell = csv_cell(text)
    assert cell == "'" + text


def test_csv_cells_stay_one_to_one_and_plain_text_stays_as_it_is():
    assert csv_cell("ada") == "ada" and csv_cell("0031337") == "0031337" and csv_cell("a=b") == "a=b"
    texts = ["=cy", "'=cy", "''=cy", "cy"]
    assert len({csv_cell(t) for t in texts}) == len(texts)


def _result(name="ada", rows=None):
    sub = Submission(None, f"{shown(name)}/04_shuffle.ipynb", "04_shuffle", "0" * 64, "the only notebook")
    return gradebook.Result(Student(name, {"04_shuffle": sub}), rows or {}, points.defaults(), shown(name))


def test_the_lms_file_keeps_ids_as_text_and_says_who_has_none():
    res = [_result(n, {"04_shuffle": Row("04_shuffle", "p", "pass", 1, 1, "ok")}) for n in ("ada", "=bob", "cy")]
    text, notes = gradebook.lms(gradebook.gradebook(res), {"ada": "0031337", "=bob": "+44", "dora": "17"})
    assert text.splitlines()[1] == '"0031337","ada",1,10,0,0,0,1,0'
    assert text.splitlines()[2].startswith('"+44","\'=bob",1,10')
    assert notes == ["cy: no id in the map, so not in the LMS file",
                     "id 17 (dora): no student folder of that name, so not in the LMS file"]


def test_a_student_who_handed_in_nothing_has_not_passed():
    res = _result("cy")
    res.student.counted = {}
    assert res.status == "5 missing" and res.total == 0 and res.max == 10


def test_the_gradebook_merge_replaces_one_row_and_keeps_every_other_byte():
    old = gradebook.gradebook([_result("ada"), _result("bob")]) + '"kept by hand",0,0,0,0,0,0,10,"x",""\n'
    new = gradebook.merge(old, _result("bob", {"04_shuffle": Row("04_shuffle", "p", "pass", 1, 1, "ok")}))
    before, after = old.splitlines(), new.splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [2] and len(after) == len(before)
    with pytest.raises(ValueError, match="header"):
        gradebook.merge("name,points\n", _result("bob"))


def test_feedback_pages_are_text_and_hide_reference_values_in_strict_mode():
    message = ("dx: values differ: first at index (0, 1): yours -1.914989762, expected 0.8386394423; NaN at (1,): "
               "yours 1.0, expected nan\n  hint: <b>*bold*</b> [x](javascript:alert(1))")
    name = "<script>alert(1)</script>"
    res = _result(name, {"04_shuffle": Row("04_shuffle", "p", "fail", 0, 1, message)})
    html = feedback.page(res, strict=True)
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>" not in html
    assert "0.8386394423" not in html and "expected nan" not in html and "-1.914989762" in html
    md = feedback.markdown(res, strict=True)
    assert "0.8386394423" not in md and "\\<script\\>" in md
    assert all(line.startswith("    ") for line in md.splitlines() if "javascript" in line)    # a code block
    assert "0.8386394423" in feedback.markdown(res, strict=False)


def _load(tmp_path, text, suffix=".toml"):
    path = tmp_path / f"points{suffix}"
    path.write_text(text)
    return points.load(path)


def test_points_default_to_the_courses_and_a_file_changes_them(tmp_path):
    assert {e: sum(c.values()) for e, c in points.defaults().items()} == \
        {"01_grouping": 2, "02_channel_gate": 2, "03_spatial_gate": 3, "04_shuffle": 1, "05_sa_layer": 2}
    table = _load(tmp_path, "[03_spatial_gate]\ngroupnorm = 1.5\nspatial_gate = 1.5\n")
    assert table["03_spatial_gate"] == {"groupnorm": 1.5, "spatial_gate": 1.5} and table["04_shuffle"] == {"shuffle": 1}
    assert _load(tmp_path, json.dumps({"04_shuffle": {"shuffle": 5}}), ".json")["04_shuffle"] == {"shuffle": 5}
    row = Row("03_spatial_gate", "p", "fail", 0, 0, "m", checks=[{"check": "groupnorm", "status": "pass"},
                                                                 {"check": "spatial_gate", "status": "fail"}])
    assert (points.score(row, table).points, row.max_points) == (1.5, 3)


@pytest.mark.parametrize("text, words", [
    ("[03_spatial_gate]\ngroup_norm = 1\n", "03_spatial_gate.group_norm is not a check of 03_spatial_gate"),
    ("[03_spatial_gate]\ngroupnorm = -1\n", "03_spatial_gate.groupnorm = -1: points must be a number >= 0"),
    ("[04_shuffle]\nshuffle = \"two\"\n", "04_shuffle.shuffle = 'two': points must be a number >= 0"),
    ("[04_shuffle]\nshuffle = true\n", "04_shuffle.shuffle = True: points must be a number >= 0"),
    ("06_extra = 1\n", "'06_extra' is not an exercise"),
    ("04_shuffle = 3\n", "04_shuffle must be a table of its checks' points ([04_shuffle] shuffle = 1)"),
    ("[04_shuffle\n", "not TOML"),
])
def test_a_bad_points_file_is_one_error_naming_the_key_and_the_rule(tmp_path, text, words):
    with pytest.raises(points.PointsError) as info:
        _load(tmp_path, text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_gradebook_cells_hold_no_formula_whatever_the_message(tmp_path):
    res = _result("\u200b=HYPERLINK(\"x\")", {"04_shuffle": Row("04_shuffle", "p", "fail", 0, 1, "=1+1")})
    res.notes = ["\uff1dcmd|' /C calc'!A0"]
    rows = list(csv.reader(io.StringIO(gradebook.gradebook([res]))))
    assert all(not cell.lstrip(" \u00a0\u200b")[:1] in "=+-@\uff1d" for cell in rows[1] if not cell[:1].isdigit())


def test_a_lone_surrogate_from_a_kernel_or_a_file_name_is_written_and_printed(tmp_path, capsys):
    row = Row("04_shuffle", os.fsdecode(b"ada/04\xff.ipynb"), "error", 0, 1, "your code raised KeyError: '\udc80'")
    print(report.format_table([row]))
    assert "04\\xff" in capsys.readouterr().out
    res = _result(os.fsdecode(b"ada\xff"), {"04_shuffle": row})
    gradebook.atomic_write(tmp_path / "page.html", feedback.page(res, strict=True))
    assert "\\udc80" in (tmp_path / "page.html").read_text()
