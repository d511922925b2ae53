"""``--strict``: grading with the exercise's reference hidden from the learner's kernel.

For self-study, a notebook that imports ``sa_numpy``'s answer may pass: the checks compare
against that very answer. An instructor grades with ``--strict``. Then, for exercise E,
the kernel finds in place of each reference module of E (and of ``sa_numpy.layer`` and
``sa_numpy.fused``, which contain every part, except where E is the layer itself) a stub
with the same names whose functions raise ``ImportError: ... is hidden in --strict
grading``, so ``import sa_numpy`` and the other parts keep working.

With bubblewrap the stubs are bind-mounted over the module files, ``sa_numpy``'s bytecode
cache is hidden, and nothing else of the project is visible (no ``solutions/``, ``course/``,
``sa_course``, ``sa_torch``, tests or git history): the reference cannot be reached at all.
Without bubblewrap a ``sitecustomize`` installs an import hook that serves the stubs; a
learner who removes the hook or reads the files directly gets around it, so there
``--strict`` only keeps honest work honest. Neither stops a learner from using another
library's version of a part (``torch.nn.functional.group_norm``).
"""
from __future__ import annotations

import ast
from pathlib import Path

from .sandbox import package_dir

HIDDEN = {
    "01_grouping": ("grouping",),
    "02_channel_gate": ("channel_gate",),
    "03_spatial_gate": ("groupnorm", "spatial_gate"),
    "04_shuffle": ("shuffle",),
    "05_sa_layer": (),
}
ALWAYS = ("layer", "fused")

_HOOK = '''"""Installed by the grader for --strict: serves stubs for the hidden reference modules."""
import importlib.abc, importlib.util, sys
_STUBS = {stubs!r}

class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in _STUBS:
            return importlib.util.spec_from_file_location(name, _STUBS[name])
        return None

sys.meta_path.insert(0, _Hidden())
'''


def stub_source(module: str, source: str) -> str:
    """A module with the same top-level functions and classes as ``source``, each raising ImportError."""
    names = [n.name for n in ast.parse(source).body
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    message = (f"sa_numpy.{module}.{{}} is hidden in --strict grading: this exercise asks you to write it "
               f"yourself")
    lines = [f'"""sa_numpy.{module} is hidden in --strict grading."""', "__sa_grader_stub__ = True",
             f"_MESSAGE = {message!r}", ""]
    for name in names:
        lines += [f"def {name}(*args, **kwargs):", f"    raise ImportError(_MESSAGE.format({name!r}))", ""]
    return "\n".join(lines)


def hidden_modules(exercise: str) -> tuple[str, ...]:
    return HIDDEN[exercise] + ALWAYS


def prepare(exercise: str, folder: Path, with_bwrap: bool) -> tuple[dict, dict]:
    """Write the stubs into ``folder`` (the grader's, not the kernel's). Returns (bubblewrap mounts:
    destination -> stub file, or None for an empty directory; extra environment for the kernel)."""
    folder.mkdir(mode=0o755, exist_ok=True)
    sa_numpy = package_dir("sa_numpy")
    mounts, stubs = {}, {}
    for module in hidden_modules(exercise):
        target = sa_numpy / f"{module}.py"
        stub = folder / f"{module}.py"
        stub.write_text(stub_source(module, target.read_text()))
        stub.chmod(0o644)
        mounts[str(target)] = str(stub)
        stubs[f"sa_numpy.{module}"] = str(stub)
    if (sa_numpy / "__pycache__").is_dir():
        mounts[str(sa_numpy / "__pycache__")] = None
    if with_bwrap:
        return mounts, {}
    hook = folder / "sitecustomize.py"
    hook.write_text(_HOOK.format(stubs=stubs))
    hook.chmod(0o644)
    return {}, {"PYTHONPATH": str(folder)}
