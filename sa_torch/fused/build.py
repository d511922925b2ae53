"""Building the C kernels of :mod:`sa_torch.fused.cpu`: the compiler, its flags, the cache.

``cpu.c`` is compiled with the system C compiler (``$CC``, else ``cc``) and OpenMP into
``$SA_TORCH_CACHE`` (default ``~/.cache/sa_torch``), once per dtype and in about a second, and
loaded with ctypes; later processes load the cached library without compiling.

``-march=native`` lets the compiler use every instruction this CPU has, so the library must
never be loaded on a CPU that lacks one (a cache in a home folder that several machines share,
a container image built on another host): its file name holds a hash of the source, the
compiler, the flags and :func:`cpu_identity` (the CPU's model and its instruction-set flags), and
where the CPU cannot be identified the build is portable (no ``-march=native``).

Where the kernels cannot be built, :func:`load` raises :class:`BuildError` with the reason in
words: no compiler, a compiler without OpenMP (it rejects ``-fopenmp``, or has no ``omp.h``),
or the compiler's own error. :data:`FIX` says what to do about it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

# -fno-trapping-math lets gcc vectorise the sigmoid loops (it does not touch denormals or NaNs)
FLAGS = ["-O3", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared"]
NATIVE = "-march=native"
TIMEOUT_S = 120
FIX = ("install a C compiler with OpenMP (gcc, or clang with libomp) and set CC to it, or set "
       "SA_TORCH_CPU_KERNELS=0 to use the torch ops without trying to build")
_OPENMP_PROBE = "#include <omp.h>\nint sa_torch_probe(void) { return omp_get_max_threads(); }\n"
# /proc/cpuinfo fields that decide what -march=native emits (x86, then Arm)
_CPU_FIELDS = {"vendor_id", "cpu family", "model", "model name", "flags", "features", "cpu implementer",
               "cpu architecture", "cpu variant", "cpu part"}


class BuildError(RuntimeError):
    """The C kernels cannot be built here; the message says why."""


def cpu_identity(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU as ``-march=native`` sees it: the distinct values of its model and instruction-set
    fields over all cores, or None where ``cpuinfo`` cannot be read (then nothing is native)."""
    try:
        with open(cpuinfo) as f:
            lines = {" ".join(line.split()) for line in f if line.partition(":")[0].strip().lower() in _CPU_FIELDS}
    except OSError:
        return None
    return "\n".join([platform.machine(), *sorted(lines)]) if lines else None


def compiler() -> str:
    return os.environ.get("CC") or "cc"


def flags(kind: str, identity: str | None) -> list[str]:
    """The compiler flags for ``kind`` ('f32' or 'f64'): native only for an identified CPU."""
    return [*FLAGS, *([NATIVE] if identity else []), *(["-DSA_DOUBLE"] if kind == "f64" else [])]


def cache_dir() -> Path:
    return Path(os.environ.get("SA_TORCH_CACHE") or Path.home() / ".cache" / "sa_torch")


def library_path(source: str, kind: str, cc: str, identity: str | None) -> Path:
    """Where the library built from ``source`` with these settings lives in the cache."""
    key = "\n".join([source, cc, *flags(kind, identity), platform.machine(), identity or "portable"])
    return cache_dir() / f"sa_cpu_{kind}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def load(source: Path, kind: str) -> ctypes.CDLL:
    """The library of ``source`` for ``kind``, compiled first where the cache does not have it."""
    cc, identity, text = compiler(), cpu_identity(), source.read_text()
    path = library_path(text, kind, cc, identity)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src, lib = Path(tmp) / "sa_cpu.c", Path(tmp) / "sa_cpu.so"
            src.write_text(text)
            try:
                _run(cc, [*flags(kind, identity), str(src), "-o", str(lib), "-lm"])
            except subprocess.CalledProcessError as err:
                raise BuildError(_why_it_failed(cc, err, Path(tmp))) from None
            os.replace(lib, path)                  # atomic: a parallel process sees all or nothing
    return ctypes.CDLL(str(path))


def _run(cc: str, args: list[str]) -> None:
    try:
        subprocess.run([cc, *args], check=True, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise BuildError(f"no C compiler: {cc!r} was not found" +
                         ("" if "CC" in os.environ else " (CC is not set)")) from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"the C compiler {cc!r} took over {TIMEOUT_S} s") from None
    except PermissionError as err:
        raise BuildError(f"the C compiler {cc!r} cannot be run ({err})") from None


def _why_it_failed(cc: str, err: subprocess.CalledProcessError, tmp: Path) -> str:
    """The reason, in words: a compiler without OpenMP (a small OpenMP file fails too), or the
    compiler's own last lines on the kernels."""
    probe = tmp / "probe.c"
    probe.write_text(_OPENMP_PROBE)
    try:
        _run(cc, ["-fopenmp", "-fPIC", "-shared", str(probe), "-o", str(tmp / "probe.so")])
    except subprocess.CalledProcessError as no_openmp:
        return f"the C compiler {cc!r} has no OpenMP: -fopenmp fails ({_last_lines(no_openmp.stderr)})"
    return f"the C compiler {cc!r} failed on the kernels ({_last_lines(err.stderr)})"


def _last_lines(text: str | None, count: int = 3) -> str:
    return " / ".join(line.strip() for line in (text or "").strip().splitlines()[-count:])[:500]
