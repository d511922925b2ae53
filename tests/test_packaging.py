"""The package installs as documented: the dependency lists of pip (pyproject.toml + constraints.txt)
and conda (environment.yml) agree, every package folder is in the distribution, and the code is
written in the syntax of the oldest Python that pyproject.toml declares.

(tests/test_install.py builds the wheel and runs the course from it.)"""
import ast
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


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pyproject_dependencies() -> set[str]:
    """The runtime dependencies and the lab and test extras: what `make course`/`make test` install."""
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"lab", "test"}
    return {requirement_name(d) for d in project["dependencies"] + extras["lab"] + extras["test"]}


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


def test_environment_yml_installs_the_project_itself_as_the_makefile_does():
    env, _, _ = conda_environment()
    pip_entries = [p for d in env["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    assert "-e .[lab,test]" in pip_entries
    assert 'pip install --quiet -c constraints.txt -e ".[lab,test]"' in (ROOT / "Makefile").read_text()


def test_jupyterlab_and_the_test_tools_are_extras_not_runtime_dependencies():
    runtime = {requirement_name(d) for d in pyproject()["project"]["dependencies"]}
    assert runtime.isdisjoint({"jupyterlab", "pytest", "nbval", "hypothesis", "playwright", "pyyaml"})
    assert {"numpy", "torch", "torchvision", "ipykernel", "nbclient"} <= runtime


def test_every_package_folder_is_in_the_distribution():
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for pkg in ("sa_numpy", "sa_torch", "sa_course")
             for p in (ROOT / pkg).rglob("__init__.py")}
    assert found <= listed, f"package folders missing from pyproject.toml's packages: {sorted(found - listed)}"
    content = pyproject()["tool"]["setuptools"]["package-dir"]
    assert all((ROOT / folder).is_dir() and name in listed for name, folder in content.items())


def test_the_code_is_written_in_the_syntax_of_the_oldest_python_declared():
    oldest = tuple(map(int, re.fullmatch(r">=(\d+)\.(\d+)", pyproject()["project"]["requires-python"]).groups()))
    for path in sorted(p for pkg in ("sa_numpy", "sa_torch", "sa_course") for p in (ROOT / pkg).rglob("*.py")):
        ast.parse(path.read_text(), str(path), feature_version=oldest)


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
