"""Lessons 06 and 07 pass nbval on other machines, not only on the one that stored their outputs.

The ordinary nbval run (the same `pytest` command) checks the lessons as this machine runs them.
These tests run them again under nbval, in a subprocess, the way two other machines would:

- with the CPU kernels capped (:func:`other_cpu_kernels`: `ATEN_CPU_CAPABILITY=avx2
  ONEDNN_MAX_CPU_ISA=AVX2`, or ATen's unvectorised kernels where that cap rounds as this CPU does,
  so that the cap is never a no-op), which changes the rounding of a training run about as much as
  another CPU does (seeded training on an Intel Xeon gave other digits than on the AMD EPYC the
  outputs were stored on);
- and, in the same run, without the CIFAR-10 copy (`SA_CIFAR_DATA` pointing at a missing path,
  so the lookup beside the project is not tried), as on a learner's fresh clone: the lessons then
  use their stand-in data, and nbval compares the cells that depend on the data with the outputs
  stored for the stand-in (see `sa_course.lesson_data`).

The capped run with the data present (lesson 07; skipped where the copy is not here) checks the
data-dependent cells on the real data. Lesson 06 takes about two minutes on the course's 2-core machine when nothing
else runs (it trains two networks), lesson 07 under half a minute.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sa_course import lesson_data, run_notebooks
from sa_torch.train.data import default_data_path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ["notebooks/06_sa_resnet_cifar.ipynb", "notebooks/07_seeing_attention.ipynb"]


#: Sums that a training run's rounding rests on: a long float32 reduction and a convolution.
PROBE = ("import torch; torch.manual_seed(0); x = torch.randn(1_000_003); a = torch.randn(64, 3, 32, 32); "
         "w = torch.randn(16, 3, 3, 3); print(x.sum().item(), torch.nn.functional.conv2d(a, w).sum().item())")
#: Caps to try, in turn: AVX2 (an AVX-512 CPU computing like an AVX2 one), then ATen's
#: unvectorised kernels (for an AVX2 CPU, or an AVX-512 one whose AVX2 kernels round alike).
CAPS = [{"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2"}]


def probe(caps: dict[str, str]) -> str:
    """PROBE's output in a fresh process under ``caps`` ({} for this CPU's own kernels); each
    set of caps is probed once per test session."""
    return _probe(tuple(sorted(caps.items())))


@functools.cache
def _probe(caps: tuple[tuple[str, str], ...]) -> str:
    own = {k: v for k, v in os.environ.items() if k not in CAPS[0]}
    return subprocess.run([sys.executable, "-c", PROBE], env={**own, **dict(caps)}, capture_output=True,
                          text=True, check=True, timeout=300).stdout


@functools.cache
def other_cpu_kernels() -> dict[str, str]:
    """The first of CAPS under which this CPU rounds differently from its own kernels, so the
    capped runs never merely repeat the ordinary one (on an AMD EPYC with AVX-512, capping at
    AVX2 gave the very same bits; on an AVX2 EPYC it is a no-op). The last when none does:
    the test below then fails and says so."""
    own = probe({})
    return next((caps for caps in CAPS if probe(caps) != own), CAPS[-1])


def run_nbval(notebook: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m pytest --nbval NOTEBOOK`` (the project's addopts) in a fresh process with ``env``."""
    return subprocess.run([sys.executable, "-m", "pytest", notebook, "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)


def assert_passed(result: subprocess.CompletedProcess, notebook: str, how: str) -> None:
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-60:])
    assert result.returncode == 0, f"{notebook} fails under nbval {how}:\n{tail}"


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: Path(p).stem)
def test_lesson_passes_nbval_with_capped_kernels_and_no_data(notebook, tmp_path):
    missing = tmp_path / "no-cifar10-here"
    caps = other_cpu_kernels()
    result = run_nbval(notebook, {**caps, "SA_CIFAR_DATA": str(missing)})
    assert_passed(result, notebook, f"with the CPU kernels capped ({caps}) and no CIFAR-10 (stand-in data)")


# Lesson 07 only: lesson 06 trains two networks (minutes per run), and its trained numbers go
# through the same tolerance mechanism with and without the data, which the run above checks.
def test_lesson_07_passes_nbval_with_capped_kernels_and_the_data():
    notebook = LESSONS[1]
    if not default_data_path().exists():
        pytest.skip(f"no CIFAR-10 copy at {default_data_path()}: the data-present run needs it")
    caps = other_cpu_kernels()
    result = run_nbval(notebook, caps)
    assert_passed(result, notebook, f"with the CPU kernels capped ({caps}) and the CIFAR-10 copy")


def test_capped_kernels_round_differently_from_this_cpus_own():
    """Otherwise the capped runs above would only repeat the ordinary nbval run."""
    caps = other_cpu_kernels()
    own, capped = probe({}), probe(caps)
    assert own != capped, f"the same sums with and without {caps} (and every other cap in CAPS): {own}"


# How the stored outputs for each data source are kept and chosen (quick: no kernel is started).

@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: Path(p).stem)
def test_every_data_dependent_cell_stores_what_it_prints_on_the_stand_in(notebook):
    cells = [c for c in nbformat.read(ROOT / notebook, as_version=4).cells if lesson_data.depends_on_data(c)]
    assert cells, f"{notebook}: no cell is tagged {lesson_data.DATA_TAG!r}"
    for cell in cells:
        stored = cell.metadata.get(lesson_data.METADATA_KEY, {}).get(lesson_data.STAND_IN_FIELD)
        assert stored, f"{notebook}: a tagged cell has no outputs for the stand-in data:\n{cell.source[:200]}"
        assert not any(k in out.get("data", {}) for out in stored for k in lesson_data.IMAGE_TYPES), "images stored twice"


def test_hidden_data_env_hides_the_copy_beside_the_project(tmp_path, monkeypatch):
    for key, value in lesson_data.hidden_data_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert not default_data_path().exists()
    assert lesson_data.data_source() == lesson_data.STAND_IN


def test_other_data_runs_its_data_dependent_cells_uncompared(tmp_path, monkeypatch):
    other = tmp_path / "cifar10-other.tar.gz"
    other.write_bytes(b"not the course's copy")
    monkeypatch.setenv("SA_CIFAR_DATA", str(other))
    assert lesson_data.data_source() == lesson_data.OTHER
    tagged = nbformat.v4.new_code_cell("print(data)", metadata={"tags": [lesson_data.DATA_TAG]})
    plain = nbformat.v4.new_code_cell("print(1)")
    assert lesson_data.expected_outputs(tagged, lesson_data.OTHER) is None
    assert lesson_data.expected_outputs(plain, lesson_data.OTHER) is plain.outputs


def test_stand_in_outputs_replace_the_stored_ones_only_on_the_stand_in():
    stored = [nbformat.v4.new_output("stream", name="stdout", text="data: CIFAR-10\n")]
    stand_in = [nbformat.v4.new_output("stream", name="stdout", text="data: stand-in\n")]
    cell = nbformat.v4.new_code_cell("print(data)", outputs=stored, metadata={
        "tags": [lesson_data.DATA_TAG], lesson_data.METADATA_KEY: {lesson_data.STAND_IN_FIELD: stand_in}})
    assert lesson_data.expected_outputs(cell, lesson_data.JPEG_COPY) == stored
    assert lesson_data.expected_outputs(cell, lesson_data.STAND_IN) == stand_in
    del cell.metadata[lesson_data.METADATA_KEY]
    missing = lesson_data.expected_outputs(cell, lesson_data.STAND_IN)
    assert "run_notebooks" in missing[0].text, "a missing stand-in output must fail with a hint, not pass"


def test_run_notebooks_refuses_to_write_canonical_outputs_without_the_copy(tmp_path, monkeypatch):
    for key, value in lesson_data.hidden_data_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    lesson = tmp_path / "lesson.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", metadata={"tags": [lesson_data.DATA_TAG]})])
    nbformat.write(nb, lesson)
    before = lesson.read_text()
    assert run_notebooks.main([str(lesson)]) == 1
    assert lesson.read_text() == before
