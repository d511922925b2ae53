"""The stored outputs of lessons 06 and 07 for each data set they can find.

Lessons 06 and 07 read CIFAR-10 through :func:`sa_torch.train.data.default_data_path`
(``$SA_CIFAR_DATA``, else ``../shared/data/cifar10-jpeg.tar.gz``) and, where there is none, fall
back to stand-in data as designed. Most of their cells print the same on both; the cells that
cannot are tagged :data:`DATA_TAG` and store two expected outputs:

- the visible outputs, made with the course's JPEG copy of CIFAR-10 (the canonical ones);
- in the cell's metadata (``sa_course.outputs_on_stand_in_data``), the text the same cell
  printed on the stand-in data.

``python -m sa_course.run_notebooks`` writes both (it runs such a lesson once with the data
hidden, then once with it). Under nbval, conftest.py gives each tagged cell the expected
outputs of the data the kernel is about to find (:func:`data_source`), so both cases are
compared exactly, after the sanitizer (``tests/nbval_sanitize.cfg``). With any other data (say
torchvision's official download), the tagged cells still run, and raise where a check fails,
but their outputs are not compared: there are none stored for that data.
"""
from __future__ import annotations

import copy
import hashlib
from functools import lru_cache
from pathlib import Path

import nbformat

#: Tag of a cell whose outputs depend on which data the lesson found.
DATA_TAG = "depends-on-data"
#: Where such a cell keeps its outputs on the stand-in data: ``cell.metadata[KEY][FIELD]``.
METADATA_KEY, STAND_IN_FIELD = "sa_course", "outputs_on_stand_in_data"
#: sha256 of ``cifar10-jpeg.tar.gz``, the copy the canonical outputs are made with.
JPEG_COPY_SHA256 = "097287809041e0a666355dfce11470ba1b3f2631fe910d8793c716253f10b297"
#: The data sources :func:`data_source` tells apart.
JPEG_COPY, STAND_IN, OTHER = "cifar10-jpeg", "stand-in", "other"
DESCRIPTION = {
    JPEG_COPY: "the CIFAR-10 JPEG copy: compared with the stored outputs",
    STAND_IN: "no CIFAR-10, so the stand-in data: compared with the outputs stored for it",
    OTHER: "CIFAR-10 data other than the JPEG copy: run, but not compared (no outputs stored for it)",
}
#: Output data that nbval does not compare (tests/nbval_sanitize.cfg, nbval's skip list): not stored twice.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


class DataMissing(RuntimeError):
    """A lesson's canonical outputs cannot be written: the CIFAR-10 JPEG copy is not there."""


def require_jpeg_copy(lesson: str | Path) -> None:
    """Raise :class:`DataMissing` unless the lessons would read the course's JPEG copy now."""
    from sa_torch.train.data import default_data_path

    source = data_source()
    if source != JPEG_COPY:
        found = "missing" if source == STAND_IN else f"not that copy (its sha256 is not {JPEG_COPY_SHA256[:12]}...)"
        raise DataMissing(f"{lesson}: its stored outputs are made with the course's CIFAR-10 JPEG copy, and "
                          f"{default_data_path()} is {found}. Set SA_CIFAR_DATA to the copy "
                          f"(cifar10-jpeg.tar.gz), or leave this lesson's outputs as they are.")


def hidden_data_env(folder: str | Path) -> dict[str, str]:
    """Environment that hides CIFAR-10 from the lessons: ``SA_CIFAR_DATA`` at a path that does
    not exist inside ``folder``, so that the copy beside the project is not looked up either."""
    return {"SA_CIFAR_DATA": str(Path(folder) / "no-cifar10-here")}


def data_source() -> str:
    """Which data a lesson started now would find: :data:`JPEG_COPY`, :data:`STAND_IN` or :data:`OTHER`."""
    from sa_torch.train.data import default_data_path

    path = default_data_path()
    if not path.exists():
        return STAND_IN
    return JPEG_COPY if path.is_file() and _sha256(path.resolve()) == JPEG_COPY_SHA256 else OTHER


@lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def depends_on_data(cell) -> bool:
    return cell.get("cell_type") == "code" and DATA_TAG in cell.get("metadata", {}).get("tags", [])


def store_stand_in_outputs(nb, on_stand_in) -> None:
    """Copy the outputs of ``on_stand_in`` (the same notebook, executed on the stand-in data)
    into the metadata of ``nb``'s tagged cells, without images."""
    for cell, other in zip(nb.cells, on_stand_in.cells, strict=True):
        if depends_on_data(cell):
            outputs = [_without_images(out) for out in other.outputs]
            cell.metadata.setdefault(METADATA_KEY, {})[STAND_IN_FIELD] = outputs


def expected_outputs(cell, source: str):
    """The outputs to compare ``cell`` with when the lesson finds ``source``; None: do not compare."""
    if not depends_on_data(cell) or source == JPEG_COPY:
        return cell.outputs
    if source == STAND_IN:
        stored = cell.metadata.get(METADATA_KEY, {}).get(STAND_IN_FIELD)
        if stored is None:       # nbval then fails the cell and shows this as the expected output
            stored = [nbformat.v4.new_output("stream", name="stdout", text=(
                "(nothing stored for the stand-in data: re-run this lesson with "
                "`python -m sa_course.run_notebooks`, with the CIFAR-10 JPEG copy present)\n"))]
        return [nbformat.from_dict(out) for out in stored]
    return None


def _without_images(output) -> dict:
    out = copy.deepcopy(dict(output))
    if "data" in out:
        out["data"] = {k: v for k, v in out["data"].items() if k not in IMAGE_TYPES}
    return out
