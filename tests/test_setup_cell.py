"""The notebooks' set-up cell, run the way a kernel runs it: its text, in a fresh Python process.

- where the course imports, it prints nothing and calls no pip, hosted or not;
- outside a hosted runtime without the course, it prints how to install and installs nothing;
- in a simulated Colab or Kaggle (their environment variables) without the course, it installs
  the course from a wheel built here into a fresh environment, which sees the already installed
  dependencies but not the course, and keeps that environment's torch;
- a module replaced after it was imported makes it ask for a restart;
- a source pip cannot install stops it with one line naming the source and the fix, and
  changes nothing.

pip gets no index (there is no internet here): every dependency of the wheel must already be
there, which the install checks too.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from sa_course import setup_cell

ROOT = Path(__file__).resolve().parents[1]
HOSTED = {"colab": {"COLAB_RELEASE_TAG": "release-colab_20260101-060000_RC00", "COLAB_GPU": "1"},
          "kaggle": {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}}
RESTART = {"colab": "Runtime > Restart session", "kaggle": "Run > Restart & clear cell outputs"}
COURSE = "shuffle-attention-course"


def environment(**extra: str) -> dict[str, str]:
    """This environment without hosted-runtime variables, install source or PYTHONPATH; pip offline."""
    hosted = {name for names in HOSTED.values() for name in names}
    env = {k: v for k, v in os.environ.items() if k not in hosted | {"SA_COURSE_INSTALL", "PYTHONPATH"}}
    return {**env, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def run_cell(python, env: dict, cwd: Path, *flags: str, before: str = "", after: str = ""):
    """Run the cell's text with ``python -c``, optionally between two snippets of code."""
    code = "\n".join(part for part in (before, setup_cell.SOURCE, after) if part)
    return subprocess.run([str(python), *flags, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def pip_spy(tmp_path):
    """A ``pip`` module, first on PYTHONPATH, that records being run and fails: (env, record)."""
    (tmp_path / "spy" / "pip").mkdir(parents=True)
    record = tmp_path / "pip-was-run"
    (tmp_path / "spy" / "pip" / "__main__.py").write_text(
        f"import sys\nopen({str(record)!r}, 'w').write(repr(sys.argv))\nsys.exit(3)\n")
    return {"PYTHONPATH": str(tmp_path / "spy")}, record


@pytest.mark.parametrize("where", ["local", "colab", "kaggle"])
def test_does_nothing_where_the_course_imports(tmp_path, pip_spy, where):
    spy_env, record = pip_spy
    result = run_cell(sys.executable, environment(**spy_env, **HOSTED.get(where, {})), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not record.exists(), f"pip was run: {record.read_text()}"


@pytest.mark.parametrize("source", [None, "git+https://example.org/course.git"])
def test_outside_a_hosted_runtime_it_says_how_to_install_and_installs_nothing(tmp_path, pip_spy, source):
    spy_env, record = pip_spy
    env = environment(**spy_env, **({"SA_COURSE_INSTALL": source} if source else {}))
    result = run_cell(sys.executable, env, tmp_path, "-S")     # -S: no site-packages, so no course
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.count("\n") == 1, result.stdout
    assert f"pip install {source or COURSE}" in result.stdout and "make course" in result.stdout
    assert not record.exists(), f"pip was run: {record.read_text()}"


def test_the_torch_minimum_is_the_one_the_package_declares():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [d for d in dependencies if re.match(r"torch\b(?!vision)", d)]
    assert torch == [f"torch>={setup_cell.TORCH_MIN}"], f"pyproject.toml asks for {torch}"


@pytest.fixture(scope="module")
def course_wheel(tmp_path_factory) -> Path:
    """The course's wheel, built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, env=environment(), capture_output=True, timeout=600)
    return next(out.glob("shuffle_attention_course-*.whl"))


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory) -> Path:
    """This environment's site-packages without the course: a folder of links to everything else."""
    site = Path(sysconfig.get_paths()["purelib"])
    course = {f.parts[0] for f in importlib.metadata.distribution(COURSE).files}
    view = tmp_path_factory.mktemp("dependencies")
    for entry in site.iterdir():
        if entry.name not in course and entry.suffix != ".pth":
            (view / entry.name).symlink_to(entry)
    return view


class Runtime:
    """A fresh environment, standing for a hosted runtime's Python: it sees the installed dependencies
    (torch, pip, ...) through a path file, and installs into its own, empty, site-packages."""

    def __init__(self, folder: Path, dependencies: Path):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
        self.python = folder / "bin" / "python"
        self.site = Path(subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
        (self.site / "dependencies.pth").write_text(f"{dependencies}\n")

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.site)) for p in self.site.rglob("*"))

    def torch(self) -> str:
        """torch's version and where it is installed, as this environment sees them."""
        return subprocess.run([str(self.python), "-c", "import importlib.metadata as m; d = m.distribution('torch'); "
                               "print(d.version, d.locate_file(''))"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def runtime(tmp_path, dependencies) -> Runtime:
    return Runtime(tmp_path / "runtime", dependencies)


@pytest.mark.parametrize("where", ["colab", "kaggle"])
def test_in_a_hosted_runtime_it_installs_the_course_and_keeps_its_torch(tmp_path, runtime, course_wheel, where):
    torch_before = runtime.torch()
    env = environment(SA_COURSE_INSTALL=str(course_wheel), **HOSTED[where])
    result = run_cell(runtime.python, env, tmp_path, after="import sa_course, sa_numpy\nprint(sa_course.__file__)")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    said, imported = result.stdout.splitlines()
    version = torch_before.split()[0]
    assert said == f"Installing the course from {course_wheel}, keeping this runtime's torch {version}... done."
    assert Path(imported).is_relative_to(runtime.site), "sa_course did not import from the runtime's own install"
    assert runtime.torch() == torch_before and not any(f.startswith("torch") for f in runtime.files())
    again = run_cell(runtime.python, env, tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", ""), "installed, the cell must do nothing"


def fake_wheel(folder: Path, version: str, *modules: str) -> Path:
    """A wheel of the distribution ``sa-probe`` at ``version``, holding the given (empty) modules."""
    path = folder / f"sa_probe-{version}-py3-none-any.whl"
    info = f"sa_probe-{version}.dist-info"
    files = {f"{m.replace('.', '/')}.py": f"VERSION = {version!r}\n" for m in modules}
    files |= {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: sa-probe\nVersion: {version}\n",
              f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
    return path


def test_a_module_replaced_after_it_was_imported_asks_for_a_restart(tmp_path, runtime):
    """The runtime imported sa_probe 1.0; the source installs 2.0 (with a stand-in sa_course)."""
    old, new = fake_wheel(tmp_path, "1.0", "sa_probe"), fake_wheel(tmp_path, "2.0", "sa_probe", "sa_course/__init__")
    subprocess.run([str(runtime.python), "-m", "pip", "install", "-q", "--no-deps", str(old)], env=environment(),
                   check=True, capture_output=True)
    result = run_cell(runtime.python, environment(SA_COURSE_INSTALL=str(new), **HOSTED["kaggle"]), tmp_path,
                      before="import sa_probe")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.endswith(" done. Restart needed: sa-probe changed after it was imported. "
                                  f"{RESTART['kaggle']}, then run all cells again.\n"), result.stdout


@pytest.mark.parametrize("source", ["shuffle_attention_course-0.1.0-py3-none-any.whl", None],
                         ids=["missing-wheel", "offline-index"])
def test_a_source_pip_cannot_install_stops_with_one_line_and_changes_nothing(tmp_path, runtime, source):
    source = str(tmp_path / source) if source else None
    before = runtime.files()
    env = environment(**HOSTED["colab"], **({"SA_COURSE_INSTALL": source} if source else {}))
    result = run_cell(runtime.python, env, tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"Could not install the course from SA_COURSE_INSTALL={source or COURSE!r} (")
    assert result.stderr.rstrip().endswith("then run this cell again.")
    assert runtime.files() == before
