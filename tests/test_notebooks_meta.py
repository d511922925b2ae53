"""Every lesson in notebooks/ is stored the way a learner should find it.

nbval (run by the same `pytest` command) re-executes the lessons and compares their outputs;
these tests check what nbval does not: the kernel, the set-up cell first (what makes a notebook
run on Colab and Kaggle), a clean top-to-bottom run, how a lesson ends (key ideas, questions
with folded hints, references), and no trace of the machine that executed them.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

from sa_course import setup_cell
from sa_course.notebook_meta import kernelspec, language_info

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GENERATED = NOTEBOOKS + sorted((ROOT / "exercises").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
LESSONS = ["00_overview", "01_feature_grouping", "02_channel_attention",
           "03_spatial_attention_groupnorm", "04_channel_shuffle", "05_whole_layer",
           "06_sa_resnet_cifar", "07_seeing_attention"]
SECTION = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)
#: The sections every lesson ends with, in any order.
CLOSING = {"Key ideas", "Questions to think about", "References"}
#: Code that finds files through the repository's layout, which a wheel install or an `init` folder lacks.
REPOSITORY_PATHS = re.compile(r"parents\[|__file__|[\"']\.\.[/\\\"']|/\s*[\"'](docs|checkpoints|notebooks|exercises|solutions)[\"']")


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


def test_all_eight_lessons_exist_and_nothing_else():
    assert [p.stem for p in NOTEBOOKS] == LESSONS


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stores_the_kernel_metadata_jupyterlab_would_write(path):
    """Otherwise opening the notebook in JupyterLab marks it modified (tests/ui checks that too)."""
    metadata = read(path).metadata
    assert metadata.get("kernelspec") == kernelspec(), f"{path.name}: kernelspec {metadata.get('kernelspec')}"
    assert metadata.get("language_info") == language_info(), f"{path.name}: language_info {metadata.get('language_info')}"


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_starts_with_the_set_up_cell_and_has_it_once(path):
    """Exactly sa_course.setup_cell's text, which prints nothing where the course is installed."""
    cells = read(path).cells
    first = cells[0]
    assert (first.cell_type, first.get("id")) == ("code", setup_cell.CELL_ID), (
        f"{path.name}: the first cell is a {first.cell_type} cell with id {first.get('id')!r}, not the set-up cell")
    assert first.source == setup_cell.SOURCE, (
        f"{path.name}: the set-up cell's text differs from sa_course.setup_cell.SOURCE; insert it again from there")
    assert first.outputs == [], f"{path.name}: the set-up cell has stored outputs; where the course is installed it prints nothing"
    again = [i for i, cell in enumerate(cells[1:], start=1)
             if cell.get("id") == setup_cell.CELL_ID or cell.source == setup_cell.SOURCE]
    assert not again, f"{path.name}: cells {again} repeat the set-up cell"


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_code_finds_the_course_files_through_sa_course_resources(path):
    """Not through the repository's layout, so that it runs from a clone, an `init` folder and Colab."""
    found = [(i, m.group(0)) for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
             for m in REPOSITORY_PATHS.finditer(cell.source)]
    assert not found, (f"{path.name}: code reaches files through the repository's layout (cell index, text): {found}; "
                       "use sa_course.resources (results_dir(), checkpoint_path(), ...)")


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


def closing_sections(path: Path) -> dict[str, str]:
    """The lesson's last three ``##`` sections, title -> text (all cells after the heading)."""
    text = "\n\n".join(c.source for c in read(path).cells if c.cell_type == "markdown")
    heads = list(SECTION.finditer(text))[-3:]
    return {m.group(1): text[m.end():(heads[i + 1].start() if i + 1 < len(heads) else len(text))]
            for i, m in enumerate(heads)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ends_with_key_ideas_questions_and_references(path):
    sections = closing_sections(path)
    assert set(sections) == CLOSING, f"{path.name}: its last sections are {list(sections)}, expected {sorted(CLOSING)}"
    questions = sections["Questions to think about"]
    assert re.search(r"^\s*1\.\s", questions, re.MULTILINE), f"{path.name}: no numbered questions"
    assert "<details>" in questions and "</details>" in questions, f"{path.name}: no folded hints or answers"
    assert re.search(r"^\s*[-*]\s", sections["Key ideas"], re.MULTILINE), f"{path.name}: key ideas are not a list"
    references = sections["References"]
    assert "2102.00240" in references, f"{path.name}: the references do not cite the SA-Net paper (arXiv 2102.00240)"
    assert "wofmanaf/SA-Net" in references, f"{path.name}: the references do not point at the official code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_paths_of_this_machine(path):
    found = [(i, p) for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
             for text in output_texts(cell) for p in machine_paths() if p in text]
    assert not found, f"{path.name}: outputs contain absolute paths of this machine (cell index, path): {found}"
