"""The package installs and imports as documented: sa_numpy without torch, and the
dependency lists of pip (pyproject.toml + constraints.txt) and conda (environment.yml) agree."""
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import sa_numpy

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}          # PyPI name -> conda-forge name, where they differ
NOT_PACKAGES = {"python", "pip"}            # in environment.yml, but not dependencies of the project


def normalise(name: str) -> str:
    """PEP 503: case-insensitive, runs of -_. are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalise(re.split(r"[\s<>=!~;\[]", spec.strip(), maxsplit=1)[0])


def pyproject_dependencies() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return {requirement_name(d) for d in tomllib.load(f)["project"]["dependencies"]}


def conda_environment():
    """(conda package names, pip package names) from environment.yml; the editable install is not a package."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {requirement_name(p) for p in dep["pip"] if not p.startswith("-e")}
        else:
            conda.add(requirement_name(dep.split("=")[0]))
    return env, conda - NOT_PACKAGES, pip


def sa_numpy_modules() -> list[str]:
    """Every submodule of sa_numpy except viz (matplotlib figures, never imported by the core)."""
    return sorted(f"sa_numpy.{m.name}" for m in pkgutil.iter_modules(sa_numpy.__path__) if m.name != "viz")


TORCH_BLOCKER = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked for this test ({name})")
        return None
sys.meta_path.insert(0, NoTorch())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the blocker failed: torch imported")
"""


def test_sa_numpy_and_its_modules_import_without_torch():
    modules = sa_numpy_modules()
    assert {"sa_numpy.layer", "sa_numpy.gradcheck", "sa_numpy.validate"} <= set(modules)
    code = TORCH_BLOCKER + "\n".join(
        ["import importlib", f"for name in {modules!r}:", "    importlib.import_module(name)",
         "import sa_numpy",
         "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules), 'torch was imported'",
         "print('ok', len(sys.modules))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_the_torch_blocker_really_blocks_torch():
    code = TORCH_BLOCKER + "\nimport sa_torch\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_environment_yml_lists_the_same_packages_as_pyproject():
    env, conda, pip = conda_environment()
    assert env["name"] == "shuffle-attention"
    assert env["channels"] == ["conda-forge"]
    assert "python=3.11" in env["dependencies"]
    expected = {normalise(CONDA_NAMES.get(n, n)) for n in pyproject_dependencies()}
    assert conda.isdisjoint(pip), f"listed both for conda and for pip: {sorted(conda & pip)}"
    listed = conda | {normalise(CONDA_NAMES.get(n, n)) for n in pip}
    assert listed == expected, (f"only in environment.yml: {sorted(listed - expected)}; "
                                f"only in pyproject.toml: {sorted(expected - listed)}")


def test_environment_yml_installs_the_project_itself():
    env, _, _ = conda_environment()
    pip_entries = [p for d in env["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    assert "-e ." in pip_entries


def test_torch_and_torchvision_have_the_same_pin_for_pip_and_conda():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    env, _, _ = conda_environment()
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert f"pytorch={pins['torch']}" in deps
    assert f"torchvision={pins['torchvision']}" in deps


def test_every_dependency_is_pinned_in_constraints_txt():
    pinned = {normalise(line.split("==")[0]) for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    missing = pyproject_dependencies() - pinned
    assert not missing, f"pyproject.toml dependencies without a pin in constraints.txt: {sorted(missing)}"
