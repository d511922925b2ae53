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

import pytest
import torch

FRESH = "triton" not in sys.modules
_previous = os.environ.get("TRITON_INTERPRET")
if FRESH:
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from sa_torch import SALayer, fused  # noqa: E402
from sa_torch.fused import eager as fused_eager  # noqa: E402

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
    for name in ("_stats_kernel", "_gate_kernel", "_sums_kernel", "_dx_kernel", "_param_grads_kernel"):
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


@in_this_process
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_and_backward_match_the_float64_reference(kernels, case, channels_last, dtype):
    shape, groups = case
    x, gy, params = make_case(shape, groups, dtype, channels_last)
    got = both_directions(kernels, x, gy, params, groups)
    want = both_directions(fused_eager, x.double(), gy.double(), params.double(), groups)
    assert got["out"].dtype == got["dx"].dtype == dtype and got["coef"].dtype == got["dparams"].dtype == torch.float32
    assert got["out"].is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    stored = 2 ** -7 if dtype == torch.bfloat16 else 1e-5          # out and dx are stored in dtype
    for name, tol in [("coef", 1e-5), ("dparams", 1e-4), ("out", stored), ("dx", stored)]:
        scale = want[name].abs().max().item()
        torch.testing.assert_close(got[name].double(), want[name], rtol=tol, atol=tol * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


@in_this_process
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_operator_on_triton_matches_the_official_layer_forward_and_backward(kernels, channels_last):
    """float32 through the Triton backend against float64 autograd through the official ops:
    output and all seven gradients, to float32 accuracy."""
    torch.manual_seed(0)
    reference = SALayer(12, 3).double()
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_()
    fast = SALayer(12, 3, fused=True)
    fast.load_state_dict({k: v.float() for k, v in reference.state_dict().items()})
    x, dout = torch.randn(2, 12, 5, 3, dtype=torch.float64), torch.randn(2, 12, 5, 3, dtype=torch.float64)

    def run(layer, x, dout):
        x = x.detach().requires_grad_(True)
        out = layer(x)
        return [out, *torch.autograd.grad(out, [x, *layer.parameters()], dout)]
    want = run(reference, x, dout)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with fused.use_backend("triton"):
        got = run(fast, x.float().to(memory_format=memory_format), dout.float().to(memory_format=memory_format))
    names = ("out", "x", "cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias")
    for name, a, b in zip(names, got, want):
        scale = b.abs().max().item()
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, name=name: f"{name}: {m}")

