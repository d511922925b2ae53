"""Where a learner's kernel runs: its own scratch directory, limits, and bubblewrap where it can.

Three set-ups, best first (:func:`isolation` picks one, once per grader process):

``bwrap``   Debian's bubblewrap is installed and works. The kernel sees a minimal file
            system: the system (``/usr``, ``/etc``), Python and the project read-only (in
            ``--strict``, only ``sa_numpy``, with the exercise's part hidden), an empty
            ``/tmp`` and its scratch directory, the only place it can write. No network,
            its own process namespace (every process it starts dies with it), and, when
            the grader runs as root, a uid of its own.
``setuid``  no bubblewrap, the grader runs as root: the kernel runs as an unprivileged uid
            of its own, with limits. It can read what every user may read, write what
            every user may write (``/tmp``), and use the network.
``none``    no bubblewrap, not root (or the interpreter is unreadable to other users): the
            kernel runs as the user who grades, with limits only.

In all three the kernel starts from the course's interpreter by absolute path, never
through a Jupyter kernelspec, with a clean environment, in a new session, under
RLIMIT_AS/CPU/FSIZE/CORE/NOFILE (and RLIMIT_NPROC with a uid of its own), in a cgroup of its
own where :mod:`~sa_course.grade.cgroup` can make one, in a scratch directory from
:mod:`~sa_course.grade.scratch`, its stdout and stderr a pipe the grader drains
(:class:`LogTail`); :func:`stop` kills every process it left, found by its cgroup, that uid or
a marker in their environment. :func:`limits_found` says what applies beyond the rlimits.
``SA_GRADE_SANDBOX=setuid`` or ``=none`` forces a weaker set-up (for tests).
"""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import random
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from . import cgroup
from .scratch import QUOTA, Scratch, quota_works as scratch_quota_works

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = Path(__file__).with_name("launch.py")
SANDBOX_LAUNCH = "/.sa-grader/launch.py"
MARKER = "SA_GRADE_RUN"
UID_BASE = int(os.environ.get("SA_GRADE_UID_BASE", "2000000000"))   # bubblewrap maps uids below 2**31
UID_SLOTS = 4096
TMPFS_BYTES = 256 << 20
OPEN_FILES = 256           # RLIMIT_NOFILE of a kernel (it inherited the grader's, 20,000 here)
PROCESSES = 64            # its processes and threads: RLIMIT_NPROC with a uid of its own, pids.max in a cgroup
LOG_BYTES = 64 << 10       # the end of the kernel's own output the grader keeps, for a failed start
LEVELS = ("bwrap", "setuid", "none")


@dataclass(frozen=True)
class Isolation:
    """The set-up the grader found: its level, whether it runs as root, and why not better."""
    level: str
    root: bool
    bwrap: str | None = None
    reason: str = ""
    limits: str = ""                 # beyond the rlimits: the scratch's size limit and the cgroup (limits_found())

    def describe(self) -> str:
        extra = f"; {self.limits}" if self.limits else ""
        if self.level == "bwrap":
            return ("bubblewrap: project and Python read-only, writes only to its scratch directory, no "
                    "network, own process namespace" + (", unprivileged uid" if self.root else "") + extra)
        if self.level == "setuid":
            return (f"no bubblewrap ({self.reason}): unprivileged uid of its own and limits; it can read what "
                    f"every user may, write /tmp and use the network" + extra)
        return (f"no bubblewrap ({self.reason}): the kernel runs as " + ("root" if self.root else "you")
                + ", with limits only, so it could change your files" + extra)


def limits_found() -> str:
    """What limits the kernels here beyond their rlimits: a size-limited scratch, and their cgroup."""
    why = scratch_quota_works()
    space = "scratch size-limited" if why is None else f"scratch not size-limited ({why})"
    return f"{space}; {cgroup.support().describe()}"


@dataclass
class Limits:
    memory_bytes: int
    cpu_seconds: int
    file_bytes: int = 1 << 30
    scratch_bytes: int = QUOTA
    cgroup: bool = True              # a cgroup of its own, where cgroup.support() finds them


class UidLease:
    """A uid no other grading uses right now (root only): a lock file per uid, held while grading."""

    def __init__(self):
        folder = Path(tempfile.gettempdir()) / "sa-grade-uids"
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
            raise RuntimeError(f"{folder} must be a directory owned by root with mode 700")
        in_use = {p.info["uids"].real for p in psutil.process_iter(["uids"]) if p.info["uids"]}
        for slot in random.sample(range(UID_SLOTS), UID_SLOTS):
            uid = UID_BASE + slot
            if uid in in_use:
                continue
            fd = os.open(folder / str(uid), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise RuntimeError("no free uid to run a kernel as")

    def release(self) -> None:
        os.close(self._fd)


class LogTail:
    """The kernel's stdout and stderr: a pipe the grader drains, keeping only its last LOG_BYTES.

    No file: nothing the kernel inherits lets it grow anything on the host, and a flood costs
    the grader little (it reads in blocks, pausing after each full one, which slows the writer)."""
    BLOCK = 1 << 16

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="sa-grade-log", daemon=True)

    def started(self) -> None:
        """The kernel holds the write end now: drop the grader's copy and start draining."""
        os.close(self.write_fd)
        self._thread.start()

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(250):
                    continue
                chunk = os.read(self.read_fd, self.BLOCK)
                if not chunk:
                    return
                with self._lock:
                    self._tail += chunk
                    del self._tail[:-LOG_BYTES]
                if len(chunk) == self.BLOCK:
                    time.sleep(0.01)
        except OSError:
            pass
        finally:
            os.close(self.read_fd)

    def text(self, limit: int) -> str:
        with self._lock:
            return bytes(self._tail[-limit:]).decode(errors="replace")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


@dataclass
class Kernel:
    """A started kernel process and what is needed to stop it."""
    proc: subprocess.Popen
    marker: str
    uid: int | None
    log: "LogTail"
    group: cgroup.Group | None = None
    extra: list = field(default_factory=list)


def prefixes() -> list[str]:
    """The interpreter's folders the kernel needs, outside /usr and /etc, none inside another."""
    found = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                                           os.path.dirname(os.path.realpath(sys.executable)))}
    found = {p for p in found if not p.startswith(("/usr/", "/etc/")) and p not in ("/usr", "/")}
    return sorted(p for p in found if not any(p != q and p.startswith(q + os.sep) for q in found))


def package_dir(name: str) -> Path:
    """Where a package is imported from (found without importing it)."""
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent


def kernel_env(work: Path, marker: str, extra: dict | None = None) -> dict:
    home = str(work)
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin", "HOME": home,
           "TMPDIR": f"{home}/tmp", "USER": "learner", "LOGNAME": "learner", "LANG": "C.UTF-8",
           "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "SA_COURSE_STATIC": "1",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.mpl", "JUPYTER_PLATFORM_DIRS": "1",
           "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter/runtime", "JUPYTER_DATA_DIR": f"{home}/.jupyter/data",
           "JUPYTER_CONFIG_DIR": f"{home}/.jupyter/config", "PYDEVD_DISABLE_FILE_VALIDATION": "1", MARKER: marker,
           "PYTHONPATH": str(package_dir("sa_numpy").parent)}      # the kernel's sa_numpy is the grader's
    extra = dict(extra or {})
    if "PYTHONPATH" in extra:
        extra["PYTHONPATH"] += os.pathsep + env["PYTHONPATH"]
    return {**env, **extra}


def _bwrap_argv(iso: Isolation, scratch: Scratch, strict: dict | None, inner: list[str]) -> list[str]:
    """bubblewrap's command line: the minimal file system, namespaces, then the launcher."""
    a = [iso.bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
         "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sa-grader"]
    a += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if iso.root else ["--unshare-user"]
    a += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            a += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            a += ["--ro-bind", path, path]
    a += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
          "--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    readonly = prefixes() + [str(package_dir("sa_numpy")) if strict is not None else str(ROOT)]
    mounts = [(p, "--ro-bind") for p in readonly if not any(p.startswith(q + os.sep) for q in readonly)]
    mounts += [(str(scratch.work), "--bind"), (str(LAUNCH), SANDBOX_LAUNCH)]
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
    for path, how in sorted(mounts, key=lambda m: m[0].count(os.sep)):
        dest = SANDBOX_LAUNCH if how == SANDBOX_LAUNCH else path
        parent = os.path.dirname(dest)
        chain = []
        while parent not in made and not any(parent.startswith(m + os.sep) for m, _ in mounts if m != path):
            chain.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(chain):
            a += ["--perms", "0755", "--dir", d]
            made.add(d)
        a += ["--ro-bind", path, dest] if how == SANDBOX_LAUNCH else [how, path, path]
    for dest, source in (strict or {}).items():
        a += ["--tmpfs", dest] if source is None else ["--ro-bind", source, dest]
    return a + ["--chdir", str(scratch.work), "--", *inner]


def _launcher(spec: dict, path: str) -> list[str]:
    return [sys.executable, "-I", "-S", path, json.dumps(spec)]


def start(iso: Isolation, scratch: Scratch, argv: list[str], limits: Limits, uid: int | None,
          strict: dict | None = None, env_extra: dict | None = None) -> Kernel:
    """Start ``argv`` (the kernel) in the scratch directory under the set-up ``iso``."""
    marker = os.urandom(16).hex()
    rlimits = {"AS": limits.memory_bytes, "CPU": limits.cpu_seconds, "FSIZE": limits.file_bytes, "CORE": 0,
               "NOFILE": OPEN_FILES}
    if uid is not None:
        rlimits["NPROC"] = PROCESSES
    spec = {"rlimits": rlimits, "uid": uid, "gid": uid, "argv": argv}
    found = cgroup.support()
    group = cgroup.Group(found, limits.memory_bytes, PROCESSES) if found.root and limits.cgroup else None
    if iso.level == "bwrap":
        cmd = _bwrap_argv(iso, scratch, strict, _launcher(spec, SANDBOX_LAUNCH))
        cmd = _launcher({"cgroup": str(group.procs), "argv": cmd}, str(LAUNCH)) if group else cmd
    else:
        spec.update(pdeathsig=True, parent=os.getpid(), cgroup=str(group.procs) if group else None)
        cmd = _launcher(spec, str(LAUNCH))
    log = LogTail()
    try:
        proc = subprocess.Popen(cmd, cwd=scratch.work, env=kernel_env(scratch.work, marker, env_extra),
                                stdin=subprocess.DEVNULL, stdout=log.write_fd, stderr=log.write_fd,
                                start_new_session=True, close_fds=True)
    except BaseException:
        if group:
            group.remove()
        raise
    finally:
        log.started()
    return Kernel(proc, marker, uid, log, group)


def _left_behind(marker: str, uid: int | None) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["uids"]):
        if p.pid == os.getpid():
            continue
        try:
            if (uid is not None and p.info["uids"] and p.info["uids"].real == uid) or \
                    p.environ().get(MARKER) == marker:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def stop(kernel: Kernel, wait_s: float = 5.0) -> None:
    """Kill the kernel and every process it started (all of its cgroup, where it has one; then whatever
    its process group, uid or marker finds); every wait here has a limit."""
    proc = kernel.proc
    if kernel.group:
        kernel.group.kill()
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            victims = _left_behind(kernel.marker, kernel.uid)
            if not victims:
                return
            for p in victims:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(victims, timeout=0.2)
    finally:
        if kernel.group and not kernel.group.remove(wait_s):      # its last processes are still exiting
            threading.Thread(target=kernel.group.remove, args=(60.0,), name="sa-grade-cgroup", daemon=True).start()
        kernel.log.close()


def read_log(kernel: Kernel, limit: int = 4000) -> str:
    return kernel.log.text(limit)


_LOCK = threading.Lock()
_FOUND: Isolation | None = None


def _works(iso: Isolation) -> str | None:
    """None when a trivial program starts under ``iso``, else why not."""
    lease = UidLease() if iso.root and iso.level != "none" else None
    scratch = Scratch(lease.uid if lease else None, 16 << 20)
    try:
        kernel = start(iso, scratch, [sys.executable, "-I", "-S", "-c", "import os, encodings"],
                       Limits(1 << 30, 30, cgroup=False), lease.uid if lease else None)
        try:
            code = kernel.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = "no answer in 30 s"
        stop(kernel, 1.0)
        return None if code == 0 else f"{iso.level} check failed ({code}): {read_log(kernel, 300).strip()}"
    finally:
        scratch.remove()
        if lease:
            lease.release()


def isolation() -> Isolation:
    """The best set-up that works here (found once; ``SA_GRADE_SANDBOX`` caps it)."""
    global _FOUND
    with _LOCK:
        if _FOUND is None:
            cap = os.environ.get("SA_GRADE_SANDBOX", "bwrap")
            allowed = LEVELS[LEVELS.index(cap):] if cap in LEVELS else LEVELS
            root = os.geteuid() == 0
            bwrap = shutil.which("bwrap")
            reason = "SA_GRADE_SANDBOX=" + cap if cap != "bwrap" else "bwrap is not installed"
            if bwrap and "bwrap" in allowed:
                reason = _works(Isolation("bwrap", root, bwrap)) or ""
                if not reason:
                    _FOUND = Isolation("bwrap", root, bwrap)
            if _FOUND is None and root and "setuid" in allowed:
                why = _works(Isolation("setuid", root, None, reason))
                if why is None:
                    _FOUND = Isolation("setuid", root, None, reason)
                else:
                    reason += "; " + why
            if _FOUND is None:
                _FOUND = Isolation("none", root, None, reason)
            _FOUND = replace(_FOUND, limits=limits_found())
        return _FOUND
