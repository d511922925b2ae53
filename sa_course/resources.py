"""Where this install keeps the course's files: lessons, exercises, solutions, results, checkpoints.

Lessons and code find these files here, never through paths relative to the repository, so the
same lesson runs from a clone, from a ``sa-course init`` folder and from a hosted runtime.

Two installs, one layout (the repository's):

- a clone, or ``pip install -e .``: the repository itself (``notebooks/``, ``exercises/``,
  ``solutions/``, ``docs/results/``, ``checkpoints/``);
- a wheel (``pip install shuffle-attention-course``): the same folders copied into the package
  as ``sa_course/content/`` (pyproject.toml maps them there), so that
  ``importlib.resources.files("sa_course") / "content"`` finds them too.

Only the standard library is imported: the notebooks' set-up cell may use this module before
anything else of the course works.
"""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE / "content"        # a wheel install
_REPOSITORY = _PACKAGE.parent           # a clone or an editable install

CHECKPOINT = "sa_resnet20_cifar10.pt"   # the shipped SA-ResNet-20 trained on CIFAR-10


def content_root() -> Path:
    """The folder holding ``notebooks/``, ``exercises/``, ``solutions/``, ``docs/results/`` and
    ``checkpoints/`` for this install: the packaged copy in a wheel install, else the repository."""
    for root in (_PACKAGED, _REPOSITORY):
        if (root / "notebooks").is_dir():
            return root
    raise FileNotFoundError(f"the course's lessons are neither in {_PACKAGED} nor in {_REPOSITORY}: "
                            "reinstall the course (pip install --force-reinstall shuffle-attention-course)")


def lessons_dir() -> Path:
    """The lessons, ``00_overview.ipynb`` to ``07_seeing_attention.ipynb``."""
    return content_root() / "notebooks"


def exercises_dir() -> Path:
    """The exercise notebooks as shipped (stubs to fill in)."""
    return content_root() / "exercises"


def solutions_dir() -> Path:
    """The exercises' worked solutions."""
    return content_root() / "solutions"


def results_dir() -> Path:
    """The recorded runs the lessons read (``docs/results/`` in the repository)."""
    return content_root() / "docs" / "results"


def checkpoint_path(name: str = CHECKPOINT) -> Path:
    """A shipped checkpoint by file name, e.g. ``checkpoint_path()`` for the SA-ResNet-20."""
    folder = content_root() / "checkpoints"
    path = folder / name
    if Path(name).name != name or not path.is_file():
        shipped = sorted(p.name for p in folder.glob("*.pt"))
        raise FileNotFoundError(f"checkpoint name={name!r} is not one the course ships ({', '.join(shipped) or 'none'}): "
                                "pass one of those file names, or load your own file by its path")
    return path
