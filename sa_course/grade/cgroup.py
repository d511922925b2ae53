"""A cgroup v2 of its own for each kernel, where the grader may make one (as root, on a cgroup v2
hierarchy that lets it write): every process the kernel starts is in it, whatever it does to
its session, environment or parent, so one write to ``cgroup.kill`` ends them all. Where the
hierarchy has the controllers, the group also gets the limits rlimits cannot set:

``memory.max``    the ``--memory`` limit for all its processes together, kernel memory included
                  (socket buffers, its tmpfs pages, page tables), with ``memory.swap.max`` 0 and
                  ``memory.oom.group`` 1 (one out-of-memory kill takes the whole kernel);
``cpu.max``       at most one CPU, and ``cpu.weight`` an equal share with every other kernel;
``pids.max``      PROCESSES processes and threads.

The groups live in ``<hierarchy>/sa-grade/``. :func:`support` says, once per grader process,
what applies here and why not the rest; the protection line and the reports say the same.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD = 100_000                 # microseconds: cpu.max gives one CPU, CPU_PERIOD of every CPU_PERIOD


@dataclass(frozen=True)
class Support:
    """Where kernels' groups go (None: no groups here), which controllers apply, and why not more."""
    root: Path | None
    controllers: tuple[str, ...] = ()
    why: str = ""

    @property
    def pids(self) -> bool:
        return "pids" in self.controllers

    def describe(self) -> str:
        if self.root is None:
            return f"no cgroup ({self.why})"
        limits = {"memory": "memory with socket buffers", "cpu": "one CPU", "pids": "processes"}
        have = [limits[c] for c in CONTROLLERS if c in self.controllers]
        return "cgroup v2: " + (", ".join(have) if have else "its processes killed together") + \
            (f"; {self.why}" if self.why else "")


def _hierarchy() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified`` beside v1)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _, kind = line.partition(" - ")
        if kind.split(" ")[0] == "cgroup2":
            return Path(fields.split(" ")[4])
    return None


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _find() -> Support:
    if os.geteuid() != 0:
        return Support(None, why="not root")
    mount = _hierarchy()
    if mount is None:
        return Support(None, why="no cgroup v2 hierarchy")
    root = mount / "sa-grade"
    try:
        root.mkdir(mode=0o755, exist_ok=True)
        available = (mount / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return Support(None, why=f"{mount} is not writable: {exc.strerror}")
    enabled = []
    for name in (c for c in CONTROLLERS if c in available):
        try:
            for folder in (mount, root):
                _write(folder / "cgroup.subtree_control", f"+{name}")
            enabled.append(name)
        except OSError:
            pass
    probe = Group(Support(root, tuple(enabled)), 1 << 30)
    try:
        joined = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; open(sys.argv[1], 'w').write('0')",
                                 str(probe.procs)], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        joined = False
    finally:
        probe.remove()
    if not joined:
        return Support(None, why=f"a process could not join a cgroup in {root}")
    missing = [c for c in CONTROLLERS if c not in enabled]
    return Support(root, tuple(enabled), f"no {', '.join(missing)} controller in cgroup v2 here" if missing else "")


_LOCK = threading.Lock()
_FOUND: Support | None = None


def support() -> Support:
    """What cgroups can do for the kernels here (found once)."""
    global _FOUND
    with _LOCK:
        if _FOUND is None:
            _FOUND = _find()
        return _FOUND


class Group:
    """One kernel's cgroup: made with its limits, joined by the kernel's launcher, killed and removed."""

    def __init__(self, found: Support, memory_bytes: int, processes: int = 64):
        self.path = found.root / f"kernel-{secrets.token_hex(8)}"
        self.path.mkdir(mode=0o755)
        self.procs = self.path / "cgroup.procs"
        settings = {"memory": {"memory.max": str(memory_bytes), "memory.swap.max": "0", "memory.oom.group": "1"},
                    "cpu": {"cpu.max": f"{CPU_PERIOD} {CPU_PERIOD}", "cpu.weight": "100"},
                    "pids": {"pids.max": str(processes)}}
        try:
            for name in found.controllers:
                for file, value in settings[name].items():
                    _write(self.path / file, value)
        except OSError:
            self.remove()
            raise

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.procs.read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL to every process in the group (cgroup.kill where the kernel has it, else one by one)."""
        try:
            _write(self.path / "cgroup.kill", "1")
            return
        except OSError:
            pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self, wait_s: float = 5.0) -> bool:
        """Kill what is left and remove the group (never raises); True when it is gone."""
        deadline = time.monotonic() + wait_s
        while True:
            self.kill()
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
