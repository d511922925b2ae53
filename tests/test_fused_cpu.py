"""sa_torch.fused.cpu: the C kernels' own promises (their maths is checked in test_fused.py).

Its polynomial exp, results that do not depend on the thread count, torch's OpenMP runtime, and
what a failed allocation gives. How they are built is tested in test_fused_build.py.
"""
import sys

import pytest
import torch

from sa_torch.fused import cpu as fused_cpu, eager as fused_eager
from sa_torch.fused.rows import Coef


def random_case(shape, groups, dtype, channels_last, seed=0):
    """x, gy (B, C, H, W) and random params (6, K), K = C // (2 groups)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + 7).to(dtype)
    gy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if channels_last:
        x, gy = x.to(memory_format=torch.channels_last), gy.to(memory_format=torch.channels_last)
    return x, gy, torch.randn(6, shape[1] // (2 * groups), generator=g, dtype=torch.float64).to(dtype)


def both_directions(backend, x, gy, params, groups):
    out, dx = torch.empty_like(x), torch.empty_like(x)
    coef, saved = backend.forward(x, params, groups, 1e-5, out)
    dparams = backend.backward(gy, x, coef, saved, params, groups, dx)
    return {"coef": coef, "out": out, "dx": dx, "dparams": dparams}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels, groups", [(10, 5), (16, 4), (64, 8), (96, 3)])   # 16, 64: constant widths
def test_c_forward_and_backward_equal_the_torch_ops_passes_in_float64(channels_last, channels, groups):
    x, gy, params = random_case((3, channels, 5, 4), groups, torch.float64, channels_last)
    got, want = both_directions(fused_cpu, x, gy, params, groups), both_directions(fused_eager, x, gy, params, groups)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
    assert got["out"].is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_output_follows_the_float64_sigmoid_over_the_whole_range(channels_last):
    """The polynomial expf, clamped to [-87, 88]: gates z from -200 to 200 give x * sigmoid(z)
    to float32 accuracy (the coefficients' own rounding included), and about 0 far into the
    negative tail."""
    x = torch.linspace(-1, 1, 4000, dtype=torch.float64).repeat(2).view(1, 2, 40, 100)
    params = torch.tensor([[0.5], [0.1], [120.0], [0.0], [1.0], [0.0]], dtype=torch.float64)  # z = 120 r (x - m)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    out32, out64 = torch.empty_like(x, dtype=torch.float32), torch.empty_like(x)
    fused_cpu.forward(x.float(), params.float(), 1, 1e-5, out32)
    coef, _ = fused_eager.forward(x, params, 1, 1e-5, out64)
    row = {name: coef[getattr(Coef, name), 0, 1] for name in ("SHIFT", "OFFSET", "ALPHA", "BETA")}
    z = row["ALPHA"] * (x[0, 1] - row["SHIFT"] - row["OFFSET"]) + row["BETA"]
    assert z.min() < -100 and z.max() > 100
    big = out64.abs() > 1e-30
    torch.testing.assert_close(out32.double()[big], out64[big], rtol=3e-5, atol=0)
    assert (out32.double() - out64)[~big].abs().max() < 1e-34


@pytest.mark.parametrize("channels_last", [False, True])
def test_results_do_not_depend_on_the_number_of_threads(channels_last):
    x, gy, params = random_case((4, 16, 32, 32), 4, torch.float32, channels_last)   # 2 threads: > 2 GRAIN
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = both_directions(fused_cpu, x, gy, params, 4)
        torch.set_num_threads(2)
        two = both_directions(fused_cpu, x, gy, params, 4)
    finally:
        torch.set_num_threads(threads)
    for name in one:
        assert torch.equal(one[name], two[name]), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_kernels_use_torchs_own_openmp_runtime():
    assert fused_cpu.available()
    with open("/proc/self/maps") as f:
        runtimes = {line.split()[-1] for line in f if "libgomp" in line}
    assert len(runtimes) == 1, runtimes


@pytest.mark.parametrize("name", ["forward_cl", "backward_nchw", "backward_cl"])
def test_a_kernel_whose_buffers_cannot_be_allocated_returns_1(name):
    """Buffers for N = 2**50 pixels (forward_cl's: C = 2**50 channels) exceed any address space; with
    B = 0 nothing else is read."""
    import ctypes
    assert fused_cpu.available()
    tiny = [ctypes.c_void_p(torch.zeros(8).data_ptr()) for _ in range(8)]
    b, n, c, k = ctypes.c_long(0), ctypes.c_long(2 ** 50), ctypes.c_long(16), ctypes.c_long(2)
    function = getattr(fused_cpu._libraries["f32"], name)
    if name == "forward_cl":      # x, b, n, c, params, k, eps, out, coef, threads; its buffers grow with C
        rc = function(tiny[0], b, ctypes.c_long(4), n, tiny[1], k, ctypes.c_double(1e-5), tiny[2], tiny[3],
                      ctypes.c_int(1))
    else:                         # gy, x, coef, b, (c, n | n, c), params, k, dx, sz, szc, dparams, threads
        sizes = (b, c, n) if name == "backward_nchw" else (b, n, c)
        rc = function(*tiny[:3], *sizes, tiny[3], k, *tiny[4:8], ctypes.c_int(1))
    assert rc == 1


def test_a_failed_allocation_is_a_memory_error_naming_the_shape(monkeypatch):
    x, gy, params = random_case((2, 16, 3, 5), 4, torch.float32, True)
    out, dx = torch.empty_like(x), torch.empty_like(x)
    coef, saved = fused_cpu.forward(x, params, 4, 1e-5, out)
    assert fused_cpu.available()

    class Failing:                # every function reports that its buffers could not be had
        def __getattr__(self, name):
            return lambda *args: 1
    monkeypatch.setattr(fused_cpu, "_libraries", {"f32": Failing(), "f64": Failing()})
    with pytest.raises(MemoryError, match=r"backward_cl could not allocate its buffers .* shape \(2, 16, 3, 5\)"):
        fused_cpu.backward(gy, x, coef, saved, params, 4, dx)
