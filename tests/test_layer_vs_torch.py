"""The NumPy layer (fused, parts and SALayer) against sa_torch.SALayer autograd, float64.

Random parameters only: the official init (cweight = sweight = 0) cuts the gradient
paths through the pooling and the GroupNorm, so a wrong backward would still pass.
"""
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import sa_torch
from sa_numpy import (PARAM_NAMES, SALayer, compare, random_params, sa_backward_fused, sa_backward,
                      sa_forward_fused, sa_forward)

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)   # the same cases on every run


@st.composite
def layer_shapes(draw):
    """((B, C, H, W), G): odd and even G, G = 1, large G, K = 1 (G = C/2), H = W = 1, H != W.

    torch's GroupNorm refuses a single value per channel (B*G = 1 with H = W = 1), so that
    one case is left out.
    """
    groups = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 64]))
    k = draw(st.integers(1, 2 if groups == 64 else 4))
    b = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1 if b * groups > 1 else 2, 6))
    return (b, 2 * groups * k, h, w), groups


def torch_reference(x, params, groups, dout):
    """Output, dx and the six parameter gradients from torch autograd."""
    layer = sa_torch.SALayer(x.shape[1], groups).double()
    layer.load_state_dict({n: torch.from_numpy(v) for n, v in params.items()})
    xt = torch.from_numpy(x).requires_grad_(True)
    out = layer(xt)
    out.backward(torch.from_numpy(dout))
    grads = {n: p.grad for n, p in layer.named_parameters()}
    return out.detach(), xt.grad, grads


def run_fused(x, params, groups, dout):
    out, cache = sa_forward_fused(x, params, groups)
    return (out, *sa_backward_fused(dout, cache))


def run_parts(x, params, groups, dout):
    out, cache = sa_forward(x, params, groups)
    return (out, *sa_backward(dout, cache))


def run_class(x, params, groups, dout):
    layer = SALayer(x.shape[1], groups, dtype=np.float64)
    layer.load_state_dict(params)
    out = layer.forward(x)
    dx = layer.backward(dout)
    return out, dx, layer.grads


IMPLEMENTATIONS = {"sa_forward_fused": run_fused, "sa_forward": run_parts, "SALayer": run_class}


def compare_1e10(name, ours, reference):
    """compare() at rtol 1e-10, with an absolute floor of 1e-10 on the scale of the data (O(1)).

    The floor matters only for a gradient that is zero in exact arithmetic, such as
    dgn.weight when H = W = 1 (every normalised value is 0): torch then returns rounding
    noise of a sum over B*G rows, ~3e-14 at B*G = 64, above compare's default floor.
    """
    scale = float(np.abs(reference.numpy()).max(initial=0.0))
    return compare(name, ours, reference, rtol=1e-10, atol=1e-10 * max(1.0, scale))


def check_against_torch(run, x, params, groups, seed=0):
    dout = np.random.default_rng(seed + 1).normal(size=x.shape)
    out, dx, grads = run(x, params, groups, dout)
    ref_out, ref_dx, ref_grads = torch_reference(np.ascontiguousarray(x), params, groups, dout)
    compare_1e10("out", out, ref_out)
    compare_1e10("dx", dx, ref_dx)
    assert set(grads) == set(PARAM_NAMES)
    for name in PARAM_NAMES:
        compare_1e10(f"d{name}", grads[name], ref_grads[name])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@SETTINGS
@given(case=layer_shapes(), seed=st.integers(0, 2**16))
@example(case=((1, 8, 1, 1), 2), seed=0)          # batch 1, H = W = 1
@example(case=((2, 6, 3, 5), 3), seed=1)          # odd G, K = 1 (G = C/2), H != W
@example(case=((2, 12, 4, 4), 1), seed=2)         # G = 1
@example(case=((1, 256, 3, 2), 64), seed=3)       # large G, K = 2
@example(case=((3, 40, 5, 4), 4), seed=4)         # even G, K = 5
def test_output_and_all_gradients_match_torch_autograd_float64(impl, case, seed):
    shape, groups = case
    x = np.random.default_rng(seed).normal(size=shape)
    params = random_params(shape[1], groups, np.float64, seed=seed)
    check_against_torch(IMPLEMENTATIONS[impl], x, params, groups, seed)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("layout", ["strided", "transposed", "fortran"])
def test_non_contiguous_input_gives_the_same_result(impl, layout):
    rng = np.random.default_rng(5)
    if layout == "strided":
        x = rng.normal(size=(2, 16, 10, 3))[:, :, ::2]          # (2, 16, 5, 3), strided
    elif layout == "transposed":
        x = rng.normal(size=(2, 16, 3, 5)).transpose(0, 1, 3, 2)  # (2, 16, 5, 3)
    else:
        x = np.asfortranarray(rng.normal(size=(2, 16, 5, 3)))
    assert not x.flags.c_contiguous
    check_against_torch(IMPLEMENTATIONS[impl], x, random_params(16, 4, np.float64, seed=5), 4)
    check_against_torch(IMPLEMENTATIONS[impl], x, random_params(16, 8, np.float64, seed=6), 8)


@pytest.mark.parametrize("groups", [2, 3])
def test_flat_parameters_give_flat_gradients_with_the_same_values(groups):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 6 * groups, 4, 3))
    dout = rng.normal(size=x.shape)
    params = random_params(x.shape[1], groups, np.float64, seed=7)
    flat = {n: v.reshape(-1) for n, v in params.items()}
    for run in (run_fused, run_parts):
        out, dx, grads = run(x, flat, groups, dout)
        ref_out, ref_dx, ref_grads = torch_reference(x, params, groups, dout)
        compare("out", out, ref_out)
        compare("dx", dx, ref_dx)
        for name in PARAM_NAMES:
            compare(f"d{name}", grads[name], ref_grads[name].reshape(-1))


def test_torch_tensors_with_requires_grad_are_accepted_as_parameters():
    layer = sa_torch.SALayer(16, 4).double()
    rng = np.random.default_rng(8)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
    params = dict(layer.named_parameters())
    assert all(p.requires_grad for p in params.values())
    x = rng.normal(size=(2, 16, 3, 3))
    out, _ = sa_forward_fused(x, params, 4)
    compare("out", out, layer(torch.from_numpy(x)).detach())
