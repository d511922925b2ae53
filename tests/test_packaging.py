"""The package installs as documented: the dependency lists of pip (pyproject.toml + constraints.txt) and conda (environment.yml) agree."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml


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
