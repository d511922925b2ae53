"""The course works as a learner installs it: from its wheel, in an environment of its own.

Once per session the sdist is built from this checkout and the wheel from the sdist (what
``python -m build`` does), and the wheel is installed into a fresh virtual environment outside
the repository. That environment reuses the dependencies already installed here (hard links
to this environment's site-packages: nothing is downloaded or copied), but not the project's
editable install, so every import of the course resolves to the wheel (a test checks it).
There, ``sa-course init`` writes a course folder, lessons 00-05 run under nbval, the grader
grades the solutions, and ``sa-course doctor`` reports with and without data and with the C
kernels turned off.

Lessons 00-05 run here and not in the repository's own nbval run (conftest.py leaves them
out there): the same files, tested once, from where learners get them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from sa_course.grade.gradescope import AutograderError, build_wheel
from test_cli import findings
from test_data import write_imagefolder

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "shuffle-attention-course"
LESSONS_RUN_HERE = [f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("0[0-5]_*.ipynb"))]
CONTENT = {"notebooks": "*.ipynb", "exercises": "*.ipynb", "solutions": "*.ipynb", "docs/results": "**/*",
           "checkpoints": "*.pt"}


def run(argv, *, cwd, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from the sdist built from this checkout (no build isolation, no network),
    as the Gradescope autograder builds it."""
    try:
        return build_wheel(ROOT, tmp_path_factory.mktemp("dist"))
    except AutograderError as err:
        pytest.fail(str(err))


def link_dependencies(site: Path, into: Path) -> None:
    """Every installed distribution of this environment except the course, as hard links."""
    own = {p.parts[0] for p in metadata.distribution(DISTRIBUTION).files or ()}
    for entry in site.iterdir():
        if entry.name in own or entry.name == "__pycache__":
            continue
        target = into / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=os.link)
        elif entry.is_symlink():
            target.symlink_to(os.readlink(entry))
        else:
            os.link(entry, target)


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("installed")
    env = home / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env)], cwd=home)
    python = env / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=home).stdout.strip())
    try:
        link_dependencies(Path(sysconfig.get_path("purelib")), site)
    except OSError as err:
        pytest.fail(f"could not hard-link this environment's packages into {site} ({err}): run the tests with "
                    f"--basetemp on the same file system as {sys.prefix}")
    kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"     # ipykernel's spec, as pip installs it
    shutil.copytree(kernels, env / "share" / "jupyter" / "kernels")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=home)
    return env


def learner_env(venv: Path, **extra: str) -> dict:
    """A learner's shell in the new environment: its bin first, no trace of this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER", "SA_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               JUPYTER_DATA_DIR=str(venv.parent / "jupyter-data"), MPLBACKEND="Agg", SA_COURSE_STATIC="1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def course(venv) -> Path:
    folder = venv.parent / "my course"
    done = run(["sa-course", "init", str(folder)], cwd=venv.parent, env=learner_env(venv))
    assert "wrote 8 lessons, 5 exercises, 5 solutions" in done.stdout, done.stdout
    return folder


def repository_content() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for folder, pattern in CONTENT.items()
            for p in (ROOT / folder).glob(pattern) if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_carries_the_code_the_course_files_and_the_jupyterlab_defaults(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    missing = sorted(f for f in repository_content() if f"sa_course/content/{f}" not in names)
    assert not missing, f"course files not in the wheel (pyproject.toml's package-data): {missing}"
    code = {p.relative_to(ROOT).as_posix() for pkg in ("sa_numpy", "sa_torch", "sa_course")
            for p in (ROOT / pkg).rglob("*") if p.suffix in (".py", ".c") and "__pycache__" not in p.parts}
    assert not sorted(code - names), f"code not in the wheel: {sorted(code - names)}"
    assert f"{DISTRIBUTION.replace('-', '_')}-0.1.0.data/data/share/jupyter/lab/settings/overrides.d/" \
           f"{DISTRIBUTION}.json" in names
    assert "sa-course = sa_course.cli:main" in entry_points
    requires = {line.removeprefix("Requires-Dist: ") for line in meta.splitlines() if line.startswith("Requires-Dist:")}
    assert "torch>=2.5" in requires and "torchvision>=0.20" in requires
    assert not {r for r in requires if r.split(">")[0] in ("jupyterlab", "pytest", "nbval", "playwright")
                and "extra ==" not in r}, "JupyterLab and the test tools belong in the lab and test extras"


def test_the_installed_course_imports_from_the_new_environment_not_this_checkout(venv):
    probe = ("import importlib.resources, importlib.util, json\n"
             "from sa_course import resources\n"
             "print(json.dumps({'modules': [importlib.util.find_spec(m).origin for m in ('sa_course', 'sa_numpy', 'sa_torch')],\n"
             "  'content': str(resources.content_root()), 'checkpoint': str(resources.checkpoint_path()),\n"
             "  'lessons': sorted(p.name for p in (importlib.resources.files('sa_course') / 'content' / 'notebooks')"
             ".iterdir())}))")
    found = json.loads(run([str(venv / "bin" / "python"), "-c", probe], cwd=venv.parent, env=learner_env(venv)).stdout)
    for path in found["modules"] + [found["content"], found["checkpoint"]]:
        assert Path(path).is_relative_to(venv) and not Path(path).is_relative_to(ROOT), path
    assert found["lessons"] == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    overrides = venv / "share/jupyter/lab/settings/overrides.d" / f"{DISTRIBUTION}.json"
    assert json.loads(overrides.read_text()) == json.loads((ROOT / "jupyter/overrides.d" / overrides.name).read_text())


def test_init_writes_the_lessons_exercises_and_solutions_as_shipped(course):
    written = {p.relative_to(course).as_posix() for p in course.rglob("*.ipynb")}
    shipped = {f for f in repository_content() if f.endswith(".ipynb")}
    assert written == shipped
    assert all((course / f).read_bytes() == (ROOT / f).read_bytes() for f in shipped)


def test_lessons_00_to_05_pass_nbval_in_the_installed_course(venv, course):
    # one argument with "=": pytest takes a separate path argument for a place to look for its
    # configuration, and would use this repository's
    argv = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "--nbval",
            f"--nbval-sanitize-with={ROOT / 'tests' / 'nbval_sanitize.cfg'}", "--nbval-cell-timeout=600",
            *LESSONS_RUN_HERE]
    assert len(LESSONS_RUN_HERE) == 6
    done = run(argv, cwd=course, env=learner_env(venv), timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"rootdir: {course}" in done.stdout and "configfile" not in done.stdout, done.stdout[:1000]
    # the kernels nbval started ran the installed course too
    kernel = run([str(venv / "bin" / "python"), "-c", "from jupyter_client.kernelspec import KernelSpecManager as K; "
                  "print(K().get_kernel_spec('python3').resource_dir)"], cwd=course, env=learner_env(venv))
    assert Path(kernel.stdout.strip()).is_relative_to(venv), kernel.stdout


def test_the_grader_passes_the_solutions_in_the_installed_course(venv, course, tmp_path):
    report = tmp_path / "report.json"
    done = run(["sa-course", "grade", "solutions", "--report", str(report)], cwd=course, env=learner_env(venv),
               check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rows = json.loads(report.read_text())["rows"]
    assert sorted(r["status"] for r in rows) == ["pass"] * 5, rows


def test_doctor_in_the_installed_course_finds_data_or_says_how_to_get_it(venv, tmp_path):
    write_imagefolder(tmp_path / "tiny")
    found = run(["sa-course", "doctor"], cwd=tmp_path, env=learner_env(venv, SA_CIFAR_DATA=str(tmp_path / "tiny")))
    lines = findings(found.stdout)
    assert lines["CIFAR-10"].startswith("ok") and "12 train and 6 test in 3 classes" in lines["CIFAR-10"], found.stdout
    assert lines["C kernels"].startswith("ok"), found.stdout
    assert lines["course"].startswith("ok") and f"{venv}" in lines["course"] and "wheel install" in lines["course"]

    missing = tmp_path / "no-data"
    bare = run(["sa-course", "doctor"], cwd=tmp_path,
               env=learner_env(venv, SA_CIFAR_DATA=str(missing), SA_TORCH_CPU_KERNELS="0"))
    lines = findings(bare.stdout)
    assert lines["CIFAR-10"].startswith("PROBLEM") and f"not found at {missing}" in lines["CIFAR-10"], bare.stdout
    assert "fix: python -m sa_torch.train --data DIR --download" in lines["CIFAR-10"], bare.stdout
    assert lines["C kernels"].startswith("note") and "SA_TORCH_CPU_KERNELS=0" in lines["C kernels"], bare.stdout
    assert "fix: unset SA_TORCH_CPU_KERNELS" in lines["C kernels"], bare.stdout
