"""The grader cannot be talked into a pass, and one notebook cannot harm the batch or the machine.

Every case of tests/tampering/catalogue.py is graded in one of two batches (plain and
--strict, two notebooks at a time), each next to correct solutions, which must still pass.
"""
import contextlib
import io
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import psutil
import pytest

import sa_numpy as ref
from sa_course import grade
from sa_course.checks import check_shuffle
from sa_course.grade import sandbox
from tampering.catalogue import CASES, WRONG

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "solutions" / "04_shuffle.ipynb"
TIMEOUT = 20
SANDBOXED = sandbox.isolation().level == "bwrap"
ACTIVE = [c for c in CASES if SANDBOXED or not c.needs_bwrap]
KERNELS = Path(sys.prefix) / "share" / "jupyter" / "kernels"


def replay_answers() -> dict:
    """The check cell's own inputs (its fixed seed), recorded by running it, and the right outputs for them."""
    answers = {}

    def forward(x, groups=2):
        out, cache = ref.channel_shuffle_forward(x, groups)
        answers[x.tobytes().hex()[:64]] = (out.tolist(), str(out.dtype))
        return out, cache

    def backward(dout, cache):
        dx = ref.channel_shuffle_backward(dout, cache)
        answers[dout.tobytes().hex()[:64]] = (dx.tolist(), str(dx.dtype))
        return dx
    with contextlib.redirect_stdout(io.StringIO()):
        check_shuffle(forward, backward)
    return answers


def _malformed(kind: bytes) -> bytes:
    nb = json.loads(BASE.read_text())
    if kind == b"TAGS":
        nb["cells"][-2]["metadata"]["tags"] = "check"
    elif kind == b"META":
        nb["metadata"]["sa_course"] = "04_shuffle"
    elif kind == b"MISSING":
        del nb["cells"]
    elif kind == b"NOSOURCE":
        del next(c for c in nb["cells"] if c["cell_type"] == "code")["source"]
    else:
        return kind
    return json.dumps(nb).encode()


def _write(folder: Path, case, fill: dict) -> Path:
    path = folder / f"04_{case.name}.ipynb"
    if case.raw is not None:
        path.write_bytes(_malformed(case.raw))
        return path
    fill = {**fill, "{original}": str(path)}
    source = case.source
    for key, value in fill.items():
        source = source.replace(key, value)
    nb = nbformat.read(BASE, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "exercise" in cell.metadata.get("tags", []):
                cell.source = WRONG + source if "def channel_shuffle_forward" not in source else source
    nbformat.write(nb, path)
    return path


def _processes_with(marker: str) -> list:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in p.info["cmdline"] or ()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tampering")
    canary = tmp / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("do not touch")
    marker = f"SA_TAMPER_{os.getpid()}_{time.time_ns()}"
    fill = {"{canary}": str(canary), "{marker}": marker, "{venv}": sys.prefix, "{replay}": repr(replay_answers())}
    plain, strict = tmp / "plain", tmp / "strict"
    plain.mkdir(), strict.mkdir()
    paths = {c.name: _write(strict if c.strict else plain, c, fill) for c in ACTIVE}
    twin = paths["patched_numpy"]
    (plain / "link.ipynb").symlink_to(twin)
    duplicates = [str(twin), str(plain / ".." / "plain" / twin.name), str(plain / "link.ipynb")]
    before = {"canary": _tree(canary), "kernels": _tree(KERNELS),
              "originals": {name: p.read_bytes() for name, p in paths.items()}}
    timings, rows = {}, {}
    for folder, extra, batch in ((plain, [], [*duplicates, *(str(p) for p in sorted(plain.glob("04_*.ipynb")))]),
                                 (strict, ["--strict"], [str(p) for p in sorted(strict.glob("*.ipynb"))])):
        correct = [str(ROOT / "solutions" / "04_shuffle.ipynb"), str(ROOT / "solutions" / "05_sa_layer.ipynb")]
        report = folder / "report.json"
        start = time.monotonic()
        code = grade.main([*batch, *correct, "--jobs", "2", "--timeout", str(TIMEOUT), "--report", str(report), *extra])
        timings[folder.name] = time.monotonic() - start
        data = json.loads(report.read_text())
        rows[folder.name] = {"exit": code, "rows": data["rows"], "strict": data["strict"]}
    after = {"canary": _tree(canary), "kernels": _tree(KERNELS),
             "originals": {name: p.read_bytes() for name, p in paths.items()}}
    time.sleep(0.5)
    return {"rows": rows, "paths": paths, "before": before, "after": after, "marker": marker,
            "canary": canary, "timings": timings, "duplicates": duplicates}


def _row(graded, case):
    batch = graded["rows"]["strict" if case.strict else "plain"]["rows"]
    return next(r for r in batch if Path(r["path"]).name == f"04_{case.name}.ipynb")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_trick_never_passes(graded, case):
    if case not in ACTIVE:
        pytest.skip(f"needs bubblewrap: {sandbox.isolation().describe()}")
    row = _row(graded, case)
    assert row["status"] in case.statuses and row["points"] == 0, row
    assert case.text in row["message"], row["message"]


@pytest.mark.parametrize("batch", ["plain", "strict"])
def test_correct_notebooks_in_the_same_batch_still_pass(graded, batch):
    data = graded["rows"][batch]
    correct = [r for r in data["rows"] if Path(r["path"]).name in ("04_shuffle.ipynb", "05_sa_layer.ipynb")]
    assert [r["status"] for r in correct] == ["pass", "pass"], correct
    assert data["exit"] == 1 and data["strict"] == (batch == "strict")


def test_the_same_notebook_given_three_ways_is_graded_once(graded):
    twin = graded["paths"]["patched_numpy"]
    rows = [r for r in graded["rows"]["plain"]["rows"] if Path(r["path"]).name in (twin.name, "link.ipynb")]
    assert len(rows) == 1 and Path(rows[0]["path"]).name == twin.name


def test_nothing_outside_the_copy_changed(graded):
    assert graded["after"]["canary"] == graded["before"]["canary"]
    assert graded["after"]["originals"] == graded["before"]["originals"]
    assert not (graded["canary"] / "unpickled.txt").exists()       # the grader never unpickles
    if not SANDBOXED:
        pytest.skip("the venv is only protected by bubblewrap")
    assert graded["after"]["kernels"] == graded["before"]["kernels"]


def test_no_process_is_left_behind(graded):
    assert _processes_with(graded["marker"]) == []
    assert not [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline())]


def test_a_detached_child_holding_stdout_does_not_stretch_the_time_limit(graded):
    row = _row(graded, next(c for c in CASES if c.name == "detached_child_holding_stdout"))
    assert row["status"] == "timeout" and row["seconds"] < TIMEOUT + 30, row


def test_the_recorded_answers_would_pass_the_check_cell():
    """The replay trick is real: with the check cell's own inputs it passes; only fresh inputs catch it."""
    answers = replay_answers()
    recorded = lambda a: np.array(*answers[a.tobytes().hex()[:64]])
    forward = lambda x, groups=2: (recorded(x), groups)
    backward = lambda dout, cache: recorded(dout)
    check_shuffle(forward, backward)


def _peak_growth(grade_them) -> tuple:
    """What ``grade_them()`` returned, and how much the grader's memory grew at its peak."""
    me, peak, done = psutil.Process(), [0], []

    def watch():
        while not done:
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.05)
    start_rss = me.memory_info().rss
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = grade_them()
    finally:
        done.append(True)
        watcher.join()
    return result, peak[0] - start_rss


def test_a_heavy_notebook_costs_the_grader_little_and_its_neighbour_nothing(tmp_path):
    """A 4 MB code cell next to a correct notebook, two at a time: the neighbour keeps its (short) time
    limit and the grader's memory hardly grows (the cell's parse once took it to gigabytes)."""
    heavy = _write(tmp_path, next(c for c in CASES if c.name == "huge_code_cell"), {})
    rows, growth = _peak_growth(lambda: grade.grade_all([heavy, BASE], grade.Options(timeout=8), 2))
    assert [r.status for r in rows] == ["error", "pass"], [r.message for r in rows]
    assert growth < 300 << 20, growth >> 20


def test_a_message_flood_costs_the_grader_at_most_one_message(tmp_path):
    """40 frames of 10 MiB in one message: libzmq kept all 400 MiB in the grader before handing over a
    byte; the grader reads frame by frame and stops at 16 MiB."""
    flood = _write(tmp_path, next(c for c in CASES if c.name == "socket_flood"), {})
    row, growth = _peak_growth(lambda: grade.grade_notebook(flood, options=grade.Options(timeout=TIMEOUT)))
    assert row.status == "error" and "broke its connection" in row.message, row.message
    assert growth < 100 << 20, growth >> 20
