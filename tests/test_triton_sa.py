"""The Triton kernels of sa_torch.fused.triton, run on the CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before triton is imported (triton's own jit functions,
``tl.zeros`` and the like, are decorated then). So this module sets it first thing; when
some earlier test of the session has already imported triton, the tests here are skipped
and ``test_the_kernels_in_a_fresh_interpreted_process`` runs this file in a new process.
The first test checks that the kernels really are interpreted. Shapes are small: the
interpreter runs every program of the grid in NumPy. Both directions are checked against
the torch-ops version (sa_torch.fused.eager) in float64 on the same input, and the whole
operator against the official layer.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

FRESH = "triton" not in sys.modules
_previous = os.environ.get("TRITON_INTERPRET")
if FRESH:
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from sa_torch.fused import eager as fused_eager  # noqa: E402
from test_fused import (FREE_UNIT_STRIDES, UNIT_SHAPES, assert_float32_matches_official,  # noqa: E402
                        near_zero_variance_case)

in_this_process = pytest.mark.skipif(not FRESH, reason="triton was imported before TRITON_INTERPRET "
                                     "was set; see test_the_kernels_in_a_fresh_interpreted_process")


@pytest.fixture(scope="module", autouse=True)
def restore_environment():
    """Later tests of the session see TRITON_INTERPRET as it was (the kernels stay interpreted)."""
    yield
    if _previous is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _previous


@pytest.fixture(scope="module")
def kernels():
    from sa_torch.fused import triton as fused_triton
    return fused_triton


@pytest.mark.skipif(FRESH, reason="the tests ran in this process")
def test_the_kernels_in_a_fresh_interpreted_process():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]                     # e.g. "15 passed, 1 skipped in 8s"
    assert " passed" in summary and "1 skipped" in summary, run.stdout[-2000:]   # only this wrapper skipped


@in_this_process
def test_the_kernels_run_in_the_interpreter(kernels):
    from triton.runtime.interpreter import InterpretedFunction
    for name in ("_forward_kernel", "_backward_kernel", "_param_grads_kernel"):
        assert isinstance(getattr(kernels, name), InterpretedFunction), name


@in_this_process
def test_the_kernels_name_the_rows_of_their_buffers_as_sa_torch_fused_rows_does(kernels):
    import inspect
    import re
    from sa_torch.fused.rows import c_names
    assert {name: getattr(kernels, name).value for name in c_names() if not name.startswith("N_")} == \
        {name: value for name, value in c_names().items() if not name.startswith("N_")}
    source = inspect.getsource(kernels)
    assert not re.search(r"_ptr \+ \d", source), "a packed buffer's row indexed by its number"


def make_case(shape, groups, dtype, channels_last, seed=0):
    """x, gy (B, C, H, W) of dtype and float32 params (6, K), K = C // (2 groups)."""
    g = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(shape, generator=g) + 1).to(dtype)
    gy = torch.randn(shape, generator=g).to(dtype)
    if channels_last:
        x, gy = x.to(memory_format=torch.channels_last), gy.to(memory_format=torch.channels_last)
    return x, gy, torch.randn(6, shape[1] // (2 * groups), generator=g)


def both_directions(backend, x, gy, params, groups):
    out, dx = torch.empty_like(x), torch.empty_like(x)
    coef, saved = backend.forward(x, params, groups, 1e-5, out)
    dparams = backend.backward(gy, x, coef, saved, params, groups, dx)
    return {"coef": coef, "out": out, "dx": dx, "dparams": dparams}


# (B, C, H, W), G: C not a multiple of the channel tile, odd G; H*W = 1, K = 1; H*W = 1100 > one tile
CASES = [((2, 12, 3, 5), 3), ((3, 6, 1, 1), 3), ((1, 4, 20, 55), 1)]


def round_bfloat16_as_a_gpu(monkeypatch):
    """The interpreter as a GPU rounds: Triton's interpreter casts float32 to bfloat16 by cutting
    the low bits off, a GPU rounds to the nearest, ties to even (Triton's default for a narrowing
    cast, ``cvt.rn``), as torch does. float16 it already rounds so (NumPy's cast)."""
    import triton.language as tl
    from triton.runtime import interpreter
    truncate = interpreter.InterpreterBuilder.create_fp_trunc

    def round_to_nearest_even(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            rounded = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16)
            return interpreter.TensorHandle(rounded.view(torch.int16).numpy().view(np.uint16), dst_type.scalar)
        return truncate(self, src, dst_type)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_fp_trunc", round_to_nearest_even)


@pytest.fixture
def gpu_rounding(monkeypatch):
    round_bfloat16_as_a_gpu(monkeypatch)


def narrowed(builder, values):
    """values (float32) cast to bfloat16 by ``builder``'s ``create_fp_trunc``, back as float64."""
    import triton.language as tl
    from triton.runtime import interpreter
    handle = builder.create_fp_trunc(interpreter.TensorHandle(np.array(values, np.float32), tl.float32),
                                     tl.bfloat16)
    return torch.from_numpy(handle.data.view(np.int16)).view(torch.bfloat16).double().tolist()


@in_this_process
def test_the_interpreter_truncates_to_bfloat16_and_the_fixture_rounds_as_a_gpu(kernels, monkeypatch):
    """bfloat16 keeps 7 bits after the point: 1 + 2^-8 + 2^-10 is 1 + 0.625 of a step; 1 + 2^-8 and
    1 + 3 2^-8 are ties (to even: 1 and 1 + 2^-6); -1 - 0.625 steps."""
    from triton.runtime import interpreter
    values = [1 + 2 ** -8 + 2 ** -10, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 + 2 ** -10)]
    builder = interpreter.InterpreterBuilder()
    assert narrowed(builder, values) == [1.0, 1.0, 1 + 2 ** -7, -1.0]                   # cut off
    round_bfloat16_as_a_gpu(monkeypatch)
    assert narrowed(builder, values) == [1 + 2 ** -7, 1.0, 1 + 2 ** -6, -(1 + 2 ** -7)]  # to nearest even
    assert narrowed(builder, values) == torch.tensor(values).to(torch.bfloat16).double().tolist()


def within_rounding(got, truth, dtype, scale):
    """Whether each stored value is the float64 truth rounded to dtype, up to float32's own
    error (1e-5 of the tensor's largest value): |got - truth| <= half a step of dtype + 1e-5 scale.
    Cutting the bits off instead of rounding errs by up to a whole step."""
    larger = torch.maximum(got.abs(), truth.abs())                       # in [2^(e-1), 2^e)
    finfo = torch.finfo(dtype)
    step = finfo.eps * torch.ldexp(torch.ones_like(larger), torch.frexp(larger).exponent - 1)
    step = step.clamp(min=finfo.smallest_normal * finfo.eps)            # subnormals: a fixed step
    return (got - truth).abs() <= 0.5 * step + 1e-5 * scale


@in_this_process
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_forward_and_backward_match_the_float64_reference_rounded_as_a_gpu_rounds(kernels, gpu_rounding, case,
                                                                                 channels_last, dtype):
    """out and dx, stored in x's dtype, are the float64 truth on the same input rounded to nearest
    (within float32's error); the float32 coefficients and parameter gradients within 1e-5, 1e-4."""
    shape, groups = case
    x, gy, params = make_case(shape, groups, dtype, channels_last)
    got = both_directions(kernels, x, gy, params, groups)
    want = both_directions(fused_eager, x.double(), gy.double(), params.double(), groups)
    assert got["out"].dtype == got["dx"].dtype == dtype and got["coef"].dtype == got["dparams"].dtype == torch.float32
    assert got["out"].is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for name, tol in [("coef", 1e-5), ("dparams", 1e-4)]:
        scale = want[name].abs().max().item()
        torch.testing.assert_close(got[name], want[name].float(), rtol=tol, atol=tol * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")
    for name in ("out", "dx"):
        ok = within_rounding(got[name].double(), want[name], dtype, want[name].abs().max().item())
        assert ok.all(), (f"{name}: {(~ok).sum().item()} of {ok.numel()} values are not the float64 truth rounded "
                          f"to {dtype}, e.g. {got[name][~ok][:3].tolist()} for {want[name][~ok][:3].tolist()}")


@in_this_process
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_the_operator_on_triton_matches_the_official_layer_forward_and_backward(kernels, layout):
    """float32 through the Triton backend against float64 autograd through the official ops:
    output and all seven gradients, to float32 accuracy."""
    g = torch.Generator().manual_seed(0)
    x, dout = torch.randn(2, 12, 5, 3, generator=g), torch.randn(2, 12, 5, 3, generator=g)
    assert_float32_matches_official("triton", 3, x, dout, layout)


@in_this_process
@pytest.mark.parametrize("layout", FREE_UNIT_STRIDES)
@pytest.mark.parametrize("shape, groups", UNIT_SHAPES)
def test_size_one_dimensions_with_any_strides_match_the_official_layer(kernels, layout, shape, groups):
    """A size-1 dimension's stride is free (a (2, 8, 4, 1) channels_last map may have strides
    (32, 1, 8, 11)): the kernels' strides come from the layout, not from such a stride."""
    g = torch.Generator().manual_seed(1)
    x, dout = 2 * torch.randn(shape, generator=g) + 1, torch.randn(shape, generator=g)
    assert_float32_matches_official("triton", groups, x, dout, layout)


@in_this_process
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", ["H = W = 1", "tiny variance"])
def test_float32_channels_of_near_zero_variance_are_within_float32_tolerance(kernels, case, layout):
    assert_float32_matches_official("triton", *near_zero_variance_case(case), layout)


@in_this_process
def test_every_launch_runs_on_the_device_of_its_input(kernels, monkeypatch):
    """On a second GPU (fake CUDA tensors on cuda:1, launches recorded): each kernel is launched
    inside ``torch.cuda.device(x.device)``, not on whichever device is current."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    current, launches = [torch.device("cuda", 0)], []

    class Device:                                   # stands in for torch.cuda.device
        def __init__(self, device):
            self.device = torch.device(device)

        def __enter__(self):
            self.previous, current[0] = current[0], self.device

        def __exit__(self, *exc):
            current[0] = self.previous

    class Launch:                                   # stands in for a kernel: kernel[grid](...)
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.name, current[0]))
    monkeypatch.setattr(torch.cuda, "device", Device)
    names = ("_forward_kernel", "_backward_kernel", "_param_grads_kernel")
    for name in names:
        monkeypatch.setattr(kernels, name, Launch(name))
    with FakeTensorMode():
        x, params = torch.empty(2, 8, 4, 4, device="cuda:1"), torch.empty(6, 2, device="cuda:1")
        out, dx = torch.empty_like(x), torch.empty_like(x)
        coef, saved = kernels.forward(x, params, 2, 1e-5, out)
        kernels.backward(torch.empty_like(x), x, coef, saved, params, 2, dx)
    assert launches == [(name, torch.device("cuda", 1)) for name in names]

