"""sa_torch.fused_cpu: the C kernels' own promises (their maths is checked in test_fused.py).

Its polynomial exp, results that do not depend on the thread count, the compile cache, and
what happens where no C compiler works: a warning naming the error, and the torch-ops path.
"""
import sys
import warnings

import pytest
import torch

from sa_torch import SALayer, fused, fused_cpu, fused_eager


def test_float32_gate_is_within_a_few_ulp_of_the_float64_sigmoid_over_the_whole_range():
    """The Cephes-style expf, clamped to [-87, 88]: relative error ~1e-7 where the gate is not
    negligible, and x * gate still correct (about 0) far into the negative tail."""
    z = torch.linspace(-120, 120, 24000).view(1, 2, -1, 1).contiguous()          # B=1, C=2
    alpha, beta = torch.ones(1, 2), torch.zeros(1, 2)
    out = torch.empty_like(z)
    gate = fused_cpu.gate(z, alpha, beta, out)
    truth = torch.sigmoid(z.double())
    rel = ((gate.double() - truth).abs() / truth)[truth > 1e-30]
    assert rel.max() < 5e-7, rel.max()
    assert (gate.double() - truth)[truth <= 1e-30].abs().max() < 1e-36
    torch.testing.assert_close(out.double(), z * truth, rtol=5e-7, atol=1e-36)  # C = 2: the shuffle keeps 0, 1


@pytest.mark.parametrize("channels_last", [False, True])
def test_results_do_not_depend_on_the_number_of_threads(channels_last):
    torch.manual_seed(0)
    x, gy = torch.randn(4, 16, 9, 7), torch.randn(4, 16, 9, 7)
    if channels_last:
        x, gy = x.to(memory_format=torch.channels_last), gy.to(memory_format=torch.channels_last)
    alpha, beta, u, w = (torch.randn(4, 16) for _ in range(4))
    threads = torch.get_num_threads()

    def passes():
        out, dx = torch.empty_like(x), torch.empty_like(x)
        saved = fused_cpu.gate(x, alpha, beta, out)
        fused_cpu.gate_dx(gy, x, alpha, beta, saved, u, w, dx)
        return (*fused_cpu.stats(x), out, *fused_cpu.gate_sums(gy, x, alpha, beta, saved), dx)
    try:
        torch.set_num_threads(1)
        one = passes()
        torch.set_num_threads(2)
        two = passes()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


@pytest.mark.parametrize("channels_last", [False, True])
def test_each_c_pass_equals_the_torch_ops_pass_in_float64(channels_last):
    torch.manual_seed(0)
    x, gy = torch.randn(3, 10, 5, 4, dtype=torch.float64) + 7, torch.randn(3, 10, 5, 4, dtype=torch.float64)
    if channels_last:
        x, gy = x.to(memory_format=torch.channels_last), gy.to(memory_format=torch.channels_last)
    alpha, beta, u, w = (torch.randn(3, 10, dtype=torch.float64) for _ in range(4))
    alpha[:, :5] = 0

    def passes(backend):
        out, dx = torch.empty_like(x), torch.empty_like(x)
        saved = backend.gate(x, alpha, beta, out)
        backend.gate_dx(gy, x, alpha, beta, saved, u, w, dx)
        return (*backend.stats(x), out, *backend.gate_sums(gy, x, alpha, beta, saved), dx)
    for name, a, b in zip(("mean", "var", "out", "sz", "szx", "dx"), passes(fused_cpu), passes(fused_eager)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """fused_cpu as if nothing had been built in this process, with an empty cache."""
    monkeypatch.setenv("SA_TORCH_CACHE", str(tmp_path))
    monkeypatch.setattr(fused_cpu, "_libraries", None)
    monkeypatch.setattr(fused_cpu, "_failure", None)
    return monkeypatch, tmp_path


def test_the_libraries_are_built_once_into_the_cache_and_then_loaded_without_compiling(fresh_build):
    monkeypatch, cache = fresh_build
    assert fused_cpu.available()
    built = sorted(p.name for p in cache.iterdir())
    assert len(built) == 2 and all(name.startswith("sa_cpu_f") and name.endswith(".so") for name in built)

    def no_compiler(*args, **kwargs):
        raise AssertionError(f"compiled again: {args}")
    monkeypatch.setattr(fused_cpu, "_libraries", None)
    monkeypatch.setattr(fused_cpu.subprocess, "run", no_compiler)
    assert fused_cpu.available() and sorted(p.name for p in cache.iterdir()) == built


def test_without_a_working_compiler_the_fast_path_warns_once_and_runs_torch_ops(fresh_build):
    monkeypatch, _ = fresh_build
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.warns(RuntimeWarning, match=r"C kernels for the CPU did not build \(FileNotFoundError.*"
                                            r"uses torch ops instead"):
        assert not fused_cpu.available()
    assert "FileNotFoundError" in fused_cpu.unavailable_reason()
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


def test_the_kernels_can_be_switched_off(fresh_build):
    monkeypatch, cache = fresh_build
    monkeypatch.setenv("SA_TORCH_CPU_KERNELS", "0")
    assert not fused_cpu.available() and fused_cpu.unavailable_reason() == "SA_TORCH_CPU_KERNELS=0"
    assert list(cache.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_kernels_use_torchs_own_openmp_runtime():
    assert fused_cpu.available()
    with open("/proc/self/maps") as f:
        runtimes = {line.split()[-1] for line in f if "libgomp" in line}
    assert len(runtimes) == 1, runtimes
