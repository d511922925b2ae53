"""How the C kernels are built (sa_torch.fused.build): once into a cache keyed by the CPU, so that a
library compiled with -march=native is never loaded on another CPU; and where no C compiler with
OpenMP works (none at all, one that rejects -fopenmp, one without omp.h), one warning naming the
reason and the fix, and the fast path on torch ops. SA_TORCH_CPU_KERNELS=0 skips the build."""
import stat
import warnings

import pytest
import torch

from sa_torch import SALayer, fused
from sa_torch.fused import build, cpu as fused_cpu


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """fused_cpu as if nothing had been built in this process, with an empty cache; the compiler
    runs recorded in ``runs`` (the argument lists)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SA_TORCH_CACHE", str(cache))
    monkeypatch.setattr(fused_cpu, "_libraries", None)
    monkeypatch.setattr(fused_cpu, "_failure", None)
    runs, run = [], build.subprocess.run

    def recorded(args, **kwargs):
        runs.append(args)
        return run(args, **kwargs)
    monkeypatch.setattr(build.subprocess, "run", recorded)
    return monkeypatch, cache, runs


def fake_compiler(tmp_path, refuses: str, message: str):
    """A C compiler that fails with ``message`` when ``refuses`` is among its arguments or in the C
    file it compiles, and is the system's ``cc`` otherwise."""
    path = tmp_path / "fake-cc"
    path.write_text(f"""#!/bin/sh
for arg in "$@"; do
  case "$arg" in
    {refuses}) echo "{message}" >&2; exit 1 ;;
    *.c) if grep -q -- "{refuses}" "$arg"; then echo "{message}" >&2; exit 1; fi ;;
  esac
done
exec cc "$@"
""")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def assert_warns_once_and_runs_torch_ops(reason: str):
    with pytest.warns(RuntimeWarning, match=rf"C kernels for the CPU are not used: {reason}.*runs torch ops "
                                            rf"instead.*C compiler with OpenMP.*set CC.*SA_TORCH_CPU_KERNELS=0"):
        assert not fused_cpu.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # no second warning
        assert not fused_cpu.available()
        x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
        assert fused.backend_name(x) == "eager"
        torch.manual_seed(0)
        reference = SALayer(16, 4).double()
        fast = SALayer(16, 4, fused=True).double()
        fast.load_state_dict(reference.state_dict())
        torch.testing.assert_close(fast(x), reference(x), rtol=1e-12, atol=1e-12)


def small_source(monkeypatch, tmp_path):
    """A small C file in place of the kernels (quick to compile), for the tests of the cache."""
    source = tmp_path / "small.c"
    source.write_text("#include <omp.h>\nint sa_small(void) { return omp_get_max_threads(); }\n")
    monkeypatch.setattr(fused_cpu, "SOURCE", source)


def test_the_libraries_are_built_once_into_the_cache_and_then_loaded_without_compiling(fresh_build, tmp_path):
    monkeypatch, cache, runs = fresh_build
    small_source(monkeypatch, tmp_path)
    assert fused_cpu.available()
    built = sorted(p.name for p in cache.iterdir())
    assert len(built) == 2 and all(name.startswith("sa_cpu_f") and name.endswith(".so") for name in built)
    assert len(runs) == 2
    monkeypatch.setattr(fused_cpu, "_libraries", None)
    assert fused_cpu.available() and sorted(p.name for p in cache.iterdir()) == built and len(runs) == 2


@pytest.mark.parametrize("compiler", ["/nonexistent/cc", "no cc on the PATH"])
def test_without_a_compiler_the_fast_path_says_so_once_and_runs_torch_ops(fresh_build, tmp_path, compiler):
    monkeypatch, _, _ = fresh_build
    if compiler.startswith("no cc"):
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))                   # an empty folder
        assert_warns_once_and_runs_torch_ops(r"no C compiler: 'cc' was not found \(CC is not set\)")
    else:
        monkeypatch.setenv("CC", compiler)
        assert_warns_once_and_runs_torch_ops(r"no C compiler: '/nonexistent/cc' was not found")


@pytest.mark.parametrize("refuses, message", [
    ("-fopenmp", "clang: error: unsupported option '-fopenmp'"),         # Apple's clang
    ("omp.h", "fatal error: 'omp.h' file not found"),                    # OpenMP headers not installed
])
def test_a_compiler_without_openmp_is_named_with_its_error(fresh_build, tmp_path, refuses, message):
    monkeypatch, cache, _ = fresh_build
    cc = fake_compiler(tmp_path, refuses, message)
    monkeypatch.setenv("CC", cc)
    assert_warns_once_and_runs_torch_ops(rf"the C compiler '{cc}' has no OpenMP: -fopenmp fails \({message}\)")
    assert not any(cache.glob("*.so"))


def test_the_kernels_can_be_switched_off(fresh_build):
    monkeypatch, cache, runs = fresh_build
    monkeypatch.setenv("SA_TORCH_CPU_KERNELS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not fused_cpu.available() and fused_cpu.unavailable_reason() == "SA_TORCH_CPU_KERNELS=0"
    assert not cache.exists() and runs == []


CPUINFO = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma{avx512}
bogomips\t: 4792.{n}

"""


def test_the_cpu_identity_holds_the_instruction_set_flags(tmp_path):
    """Two machines with the same CPU model, one with AVX-512 masked off (as a VM may): a library
    built with -march=native on the first would crash the second, so their identities differ."""
    with_avx512, without = tmp_path / "a", tmp_path / "b"
    with_avx512.write_text("".join(CPUINFO.format(n=n, avx512=" avx512f avx512bw") for n in range(2)))
    without.write_text("".join(CPUINFO.format(n=n, avx512="") for n in range(2)))
    a, b = build.cpu_identity(str(with_avx512)), build.cpu_identity(str(without))
    assert a != b and "avx512f" in a and "AMD EPYC 9654" in a and "bogomips" not in a
    assert build.cpu_identity(str(tmp_path / "missing")) is None
    assert build.NATIVE in build.flags("f32", a) and build.NATIVE not in build.flags("f64", None)


def test_a_library_built_for_one_cpu_is_never_loaded_on_another(fresh_build, tmp_path):
    """The same cache (a home folder two machines share): each CPU gets its own build, and a CPU
    that cannot be identified gets a portable one, without -march=native."""
    monkeypatch, cache, runs = fresh_build
    small_source(monkeypatch, tmp_path)

    def builds_for(identity):
        monkeypatch.setattr(build, "cpu_identity", lambda: identity)
        monkeypatch.setattr(fused_cpu, "_libraries", None)
        before = len(runs)
        assert fused_cpu.available()
        return runs[before:]
    first = builds_for("x86_64\nflags: avx2 avx512f")
    assert len(first) == 2 and all(build.NATIVE in args for args in first)
    assert builds_for("x86_64\nflags: avx2 avx512f") == []                # the same CPU: from the cache
    assert len(builds_for("x86_64\nflags: avx2")) == 2                     # another CPU: built again
    portable = builds_for(None)
    assert len(portable) == 2 and not any(build.NATIVE in args for args in portable)
    assert len(list(cache.glob("*.so"))) == 6


def test_the_compiler_s_own_error_is_named_where_openmp_works(fresh_build, tmp_path):
    monkeypatch, _, _ = fresh_build
    cc = fake_compiler(tmp_path, "finish_grad", "cpu.c:120: error: something the compiler did not like")
    monkeypatch.setenv("CC", cc)
    assert_warns_once_and_runs_torch_ops(rf"the C compiler '{cc}' failed on the kernels \(cpu.c:120: error: "
                                         rf"something the compiler did not like\)")
