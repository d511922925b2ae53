"""Every lesson in notebooks/ is stored the way a learner should find it.

nbval (run by the same `pytest` command) re-executes the lessons and compares their outputs;
these tests check what nbval does not: the kernel, a clean top-to-bottom run, the closing
questions, and no trace of the machine that executed them.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LESSONS = ["00_overview", "01_feature_grouping", "02_channel_attention",
           "03_spatial_attention_groupnorm", "04_channel_shuffle", "05_whole_layer"]
QUESTIONS = re.compile(r"^#+\s*Questions to think about\s*$", re.MULTILINE)
HEADING = re.compile(r"^#+\s", re.MULTILINE)


def machine_paths() -> list[str]:
    """Absolute paths that would betray this machine (and differ on a learner's)."""
    paths = {str(ROOT), str(Path.home()), sys.prefix, os.path.realpath(sys.prefix)}
    return sorted(p for p in paths if len(p) > 1)


def output_texts(cell) -> list[str]:
    """All text of a code cell's outputs: streams, text MIME types, error tracebacks."""
    texts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            texts.append(out.text)
        elif out.output_type == "error":
            texts.extend([out.ename, out.evalue, *out.traceback])
        else:
            texts.extend(v for k, v in out.get("data", {}).items() if k.startswith("text/") and isinstance(v, str))
    return texts


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_all_six_lessons_exist():
    names = [p.stem for p in NOTEBOOKS]
    missing = [name for name in LESSONS if name not in names]
    assert not missing, f"lessons missing from notebooks/: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernel_is_python3(path):
    spec = read(path).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", f"{path.name}: kernelspec name is {spec.get('name')!r}, expected 'python3'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_outputs(path):
    errors = [(i, out.ename) for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors, f"{path.name}: cells with stored errors (cell index, exception): {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom_once(path):
    code = [cell for cell in read(path).cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts}; run it with `make notebooks` (a fresh kernel, top to bottom)")
    for cell in code:
        for out in cell.outputs:
            if out.output_type == "execute_result":
                assert out.execution_count == cell.execution_count, f"{path.name}: stale output in cell {cell.execution_count}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ends_with_questions_to_think_about(path):
    cells = read(path).cells
    last = cells[-1]
    assert last.cell_type == "markdown", f"{path.name}: the last cell is a {last.cell_type} cell, not the questions"
    match = QUESTIONS.search(last.source)
    assert match, f"{path.name}: the last cell has no '## Questions to think about' heading"
    after = last.source[match.end():]
    assert not HEADING.search(after), f"{path.name}: another section follows 'Questions to think about'"
    assert re.search(r"^\s*1\.\s", after, re.MULTILINE), f"{path.name}: 'Questions to think about' has no numbered questions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_paths_of_this_machine(path):
    found = [(i, p) for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
             for text in output_texts(cell) for p in machine_paths() if p in text]
    assert not found, f"{path.name}: outputs contain absolute paths of this machine (cell index, path): {found}"
