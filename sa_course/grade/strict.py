"""``--strict``: grading with the exercise's reference hidden from the learner's kernel.

For self-study, a notebook that imports ``sa_numpy``'s answer may pass: the checks compare
against that very answer. An instructor grades with ``--strict``. Then, for exercise E,
the kernel finds in place of each reference module of E (and of ``sa_numpy.layer`` and
``sa_numpy.fused``, which contain every part, except where E is the layer itself) a stub
with the same names whose functions raise ``ImportError: ... is hidden in --strict
grading``, so ``import sa_numpy`` and the other parts keep working.

The exercises are NumPy exercises, so the kernel also finds no other array library: each
package of :data:`ARRAY_LIBRARIES` that is installed (PyTorch and its kin, JAX, TensorFlow,
CuPy, ...) is replaced by one whose import raises ``ImportError: torch is not available in
--strict grading``, so ``torch.nn.functional.channel_shuffle`` cannot stand in for the
learner's shuffle. NumPy imports, and so do the standard library, ``sa_numpy``'s other parts
(``sa_numpy.functional.sigmoid`` among them) and helpers that are no array library of their
own: SciPy and einops where installed.

With bubblewrap the stubs are bind-mounted over the module files and packages,
``sa_numpy``'s bytecode cache is hidden, and nothing else of the project is visible (no
``solutions/``, ``course/``, ``sa_course``, ``sa_torch``, tests or git history; where the course
is installed as a package, ``sa_course`` and ``sa_torch`` are replaced like the libraries above):
the reference cannot be reached at all. Without bubblewrap a ``sitecustomize`` installs an
import hook that serves the stubs; a learner who removes the hook or reads the files directly
gets around it, so there ``--strict`` only keeps honest work honest. Neither stops a solution
pasted into the notebook.
"""
from __future__ import annotations

import ast
from pathlib import Path

import importlib.util

from .sandbox import package_dir, prefixes

HIDDEN = {
    "01_grouping": ("grouping",),
    "02_channel_gate": ("channel_gate",),
    "03_spatial_gate": ("groupnorm", "spatial_gate"),
    "04_shuffle": ("shuffle",),
    "05_sa_layer": (),
}
ALWAYS = ("layer", "fused")
ARRAY_LIBRARIES = ("torch", "torchvision", "torchaudio", "functorch", "torchgen", "triton", "jax", "jaxlib", "flax",
                   "tensorflow", "keras", "cupy", "cupyx", "mxnet", "paddle", "mlx", "tinygrad")
COURSE = ("sa_course", "sa_torch")      # the rest of the course, where it is installed as a package

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


def unavailable(name: str, exercise: str) -> str:
    """The message of an import the kernel may not make in --strict grading."""
    if name in COURSE:
        return f"No module named {name!r} (the course's package is hidden in --strict grading)"
    return (f"{name} is not available in --strict grading: exercise {exercise} is a NumPy exercise, so write it "
            f"with NumPy (and sa_numpy's other parts)")


def blocked_packages() -> dict[str, Path]:
    """Each installed package or module the kernel may not import: its folder, or its file."""
    found = {}
    for name in ARRAY_LIBRARIES + COURSE:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            found[name] = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    return found


def prepare(exercise: str, folder: Path, with_bwrap: bool) -> tuple[dict, dict]:
    """Write the stubs into ``folder`` (the grader's, not the kernel's). Returns (bubblewrap mounts:
    destination -> stub file, or None for an empty directory; extra environment for the kernel)."""
    folder.mkdir(mode=0o755, exist_ok=True)
    visible = [Path(p) for p in prefixes()]
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
    for name, where in blocked_packages().items():
        stub = folder / f"unavailable-{name}.py"
        stub.write_text(f'"""Not available in --strict grading."""\n__sa_grader_stub__ = True\n'
                        f'raise ImportError({unavailable(name, exercise)!r})\n')
        stub.chmod(0o644)
        stubs[name] = str(stub)
        if not any(where.is_relative_to(p) for p in visible):
            continue                                      # the sandbox does not show it anyway
        if where.is_dir():
            mounts[str(where)] = None                     # an empty folder with only the stub in it
            mounts[str(where / "__init__.py")] = str(stub)
        elif where.suffix == ".py":
            mounts[str(where)] = str(stub)
    if with_bwrap:
        return mounts, {}
    hook = folder / "sitecustomize.py"
    hook.write_text(_HOOK.format(stubs=stubs))
    hook.chmod(0o644)
    return {}, {"PYTHONPATH": str(folder)}
