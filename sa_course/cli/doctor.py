"""``sa-course doctor``: one screen on what this machine has for the course, each problem with its fix.

It looks and never changes anything, except that it builds the C kernels when they are not
built yet (into their cache, as the first lesson that uses them would). Each line is marked
``ok``, ``note`` (something the course works without, said so that it is no surprise) or
``PROBLEM`` (followed by its fix). The exit status is 0 even when it finds problems, since most
of the course runs on a machine with some (no GPU, no CIFAR-10); ``--strict`` makes it 1.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from sa_course import resources

from .course_folder import DISTRIBUTION, installed_version

OK, NOTE, PROBLEM = "ok", "note", "PROBLEM"
DOWNLOAD = "python -m sa_torch.train --data DIR --download"
LEARNERS = "the course's docs/learners.md"


@dataclass
class Finding:
    status: str          # OK, NOTE or PROBLEM
    topic: str
    text: str
    fix: str = ""


def release(version: str) -> tuple[int, ...]:
    """``"2.14.1+cu130"`` -> ``(2, 14, 1)``: the numeric release, enough to compare minimum versions."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def requirements() -> list[tuple[str, str, str]]:
    """(name, minimum or "", extra or "") for each requirement in this install's metadata."""
    found = []
    for line in metadata.requires(DISTRIBUTION) or []:
        name = re.match(r"[A-Za-z0-9_.-]+", line)[0]
        minimum = re.search(r">=\s*([\d.]+)", line)
        extra = re.search(r"""extra\s*==\s*["']([^"']+)""", line)
        found.append((name, minimum[1] if minimum else "", extra[1] if extra else ""))
    return found


def check_course() -> list[Finding]:
    root = resources.content_root()
    where = "a wheel install" if root.name == "content" else "a clone"
    found = [Finding(OK, "course", f"{DISTRIBUTION} {installed_version()}, lessons in {root} ({where})"),
             Finding(OK, "Python", f"{platform.python_version()} at {sys.executable} "
                                   f"({platform.system()} {platform.machine()})")]
    try:
        needed = requirements()
    except metadata.PackageNotFoundError:
        return found + [Finding(PROBLEM, "packages", "the course is on the path but not installed",
                                "pip install -e . in the clone (or pip install shuffle-attention-course)")]
    versions, problems = [], []
    for name, minimum, extra in needed:
        if extra and extra != "lab":
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            if extra:
                found.append(Finding(NOTE, name, "not installed; `sa-course lab` needs it (Colab and Kaggle do not)",
                                     f"pip install '{DISTRIBUTION}[{extra}]'"))
            else:
                problems.append(Finding(PROBLEM, name, "not installed", f"pip install '{name}>={minimum}'"
                                        if minimum else f"pip install {name}"))
            continue
        versions.append(f"{name} {version}")
        if minimum and release(version) < release(minimum):
            problems.append(Finding(PROBLEM, name, f"{version} is older than the course needs ({minimum})",
                                    f"pip install '{name}>={minimum}'"))
    return found + [Finding(OK, "packages", ", ".join(versions))] + problems


def precision(device) -> str:
    """What training uses on ``device`` by default (``--amp auto``), in the training package's words."""
    from sa_torch.train import device as devices

    return devices.PRECISION_WORDS[devices.precision_for(device)]


def check_torch() -> list[Finding]:
    import torch

    from sa_torch.train.device import pick_device

    device = pick_device()
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    found = [Finding(OK, "torch", f"{torch.__version__}, {build}; training uses {device.type} "
                                  f"({torch.get_num_threads()} CPU threads)")]
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        found.append(Finding(OK, "GPU", f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}, "
                                        f"{memory:.0f} GiB; training precision: {precision(device)}"))
    elif torch.version.cuda is None and shutil.which("nvidia-smi"):
        found.append(Finding(PROBLEM, "GPU", "nvidia-smi is here, but this torch is a CPU-only build",
                             "install a CUDA build of torch: https://pytorch.org/get-started/locally/"))
    else:
        found.append(Finding(NOTE, "GPU", f"none: training runs on {device.type} in {precision(device)}; lesson 06's "
                                          "short runs fit a CPU, the full recipe wants a GPU",
                             f"a free GPU: Colab or Kaggle ({LEARNERS})"))
    return found


def check_kernels() -> list[Finding]:
    from sa_torch.fused import cpu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)       # the reason is printed below instead
        available = cpu.available()
    if available:
        found = [Finding(OK, "C kernels", "built and loaded: the fast SA path on the CPU uses them")]
    elif os.environ.get("SA_TORCH_CPU_KERNELS") == "0":
        found = [Finding(NOTE, "C kernels", "turned off by SA_TORCH_CPU_KERNELS=0: the CPU uses torch ops",
                         "unset SA_TORCH_CPU_KERNELS to use them")]
    else:
        found = [Finding(PROBLEM, "C kernels", f"not built ({cpu.unavailable_reason()}); the CPU uses torch ops, slower",
                         "install a C compiler with OpenMP (Debian/Ubuntu: apt-get install gcc; macOS: "
                         "brew install llvm libomp, then CC=$(brew --prefix llvm)/bin/clang), or set CC")]
    if importlib.util.find_spec("triton") is None:
        found.append(Finding(NOTE, "Triton", "not installed: only CUDA GPUs use it (pip install triton there)"))
    else:
        found.append(Finding(OK, "Triton", f"{metadata.version('triton')} (the fast SA path on CUDA GPUs)"))
    return found


def check_grading() -> list[Finding]:
    bwrap = shutil.which("bwrap")
    if bwrap:
        return [Finding(OK, "bubblewrap", f"{bwrap}: the grader runs each notebook in its sandbox")]
    if platform.system() == "Linux":
        return [Finding(PROBLEM, "bubblewrap", "missing: the grader runs kernels with limits only",
                        "sudo apt-get install bubblewrap (or your distribution's bubblewrap package)")]
    return [Finding(NOTE, "bubblewrap", f"Linux only: on {platform.system()} the grader runs kernels with limits only")]


def describe_data(path: Path) -> str | None:
    """What CIFAR-10 layout ``path`` holds, or None when it holds none the course reads."""
    if path.is_file():
        return "an archive (read on first use)" if path.name.endswith((".tar.gz", ".tgz", ".tar")) else None
    if (path / "cifar-10-batches-py").is_dir():
        return "torchvision's CIFAR-10 (python batches)"
    if (path / "train").is_dir() and (path / "test").is_dir():
        counts = {split: sum(1 for c in (path / split).iterdir() if c.is_dir() for f in c.iterdir() if f.is_file())
                  for split in ("train", "test")}
        classes = sum(1 for c in (path / "train").iterdir() if c.is_dir())
        return f"images in folders: {counts['train']} train and {counts['test']} test in {classes} classes"
    return None


def check_data() -> list[Finding]:
    from sa_torch.train.data import default_data_path

    path = default_data_path()
    origin = "$SA_CIFAR_DATA" if "SA_CIFAR_DATA" in os.environ else "SA_CIFAR_DATA is not set; the copy beside a clone"
    get = f"{DOWNLOAD} (on Colab and Kaggle too), then set SA_CIFAR_DATA=DIR"
    if not path.exists():
        return [Finding(PROBLEM, "CIFAR-10", f"not found at {path} ({origin}); lessons 06-07 use stand-in data", get)]
    layout = describe_data(path)
    if layout is None:
        return [Finding(PROBLEM, "CIFAR-10", f"{path} ({origin}) holds no CIFAR-10 the course reads "
                                             "(train/<class>/*.jpg and test/<class>/*.jpg, or cifar-10-batches-py/)", get)]
    return [Finding(OK, "CIFAR-10", f"{path} ({origin}): {layout}")]


CHECKS = (check_course, check_torch, check_kernels, check_grading, check_data)


def main(strict: bool = False) -> int:
    findings = []
    for check in CHECKS:
        try:
            findings += check()
        except Exception as err:                 # one broken part must not hide the rest of the screen
            findings.append(Finding(PROBLEM, check.__name__.removeprefix("check_"),
                                    f"the check failed: {type(err).__name__}: {err}",
                                    f"pip install --force-reinstall {DISTRIBUTION}"))
    width = max(len(f.topic) for f in findings)
    for f in findings:
        print(f"{f.status:<7} {f.topic:<{width}}  {f.text}")
        if f.fix:
            print(f"{'':<7} {'':<{width}}  fix: {f.fix}")
    problems = sum(f.status == PROBLEM for f in findings)
    print(f"{problems} problem{'s' * (problems != 1)} found" + (": each has its fix above" if problems else ""))
    return 1 if strict and problems else 0
