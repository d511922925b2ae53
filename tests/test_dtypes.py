"""float32 and float64 both work, keep their dtype, and agree with each other.

Tolerance for float32 against float64: 1e-5 relative to each tensor's largest value
(compare's atol = rtol * max|ref|). float32 rounds at 6e-8; the sums over H*W pixels and
over B*G rows add a few roundings each, and the worst error measured on these shapes is
about 5e-7 of the scale, so 1e-5 leaves a 20x margin without hiding a real bug (a wrong
term shows up at the 1e-2..1e0 level).
"""
import numpy as np
import pytest

from sa_numpy import (PARAM_NAMES, SALayer, channel_gate_backward, channel_gate_forward,
                      channel_shuffle_backward, channel_shuffle_forward, compare, group_merge_backward,
                      group_merge_forward, group_split_backward, group_split_forward, groupnorm_backward,
                      groupnorm_forward, random_params, sa_backward_fused, sa_backward, sa_forward_fused,
                      sa_forward, spatial_gate_backward, spatial_gate_forward)

FLOAT32_RTOL = 1e-5
PAIRS = {"sa_forward_fused": (sa_forward_fused, sa_backward_fused), "sa_forward": (sa_forward, sa_backward)}
SHAPES = [((2, 16, 5, 7), 4), ((2, 12, 3, 3), 3), ((4, 64, 8, 8), 8), ((1, 128, 6, 4), 64)]


def run_layer(forward, backward, x, params, groups, dout):
    out, cache = forward(x, params, groups)
    dx, grads = backward(dout, cache)
    return out, dx, grads


@pytest.mark.parametrize("impl", PAIRS)
@pytest.mark.parametrize("shape,groups", SHAPES)
def test_float32_agrees_with_float64(impl, shape, groups):
    r = np.random.default_rng(0)
    x, dout = r.normal(size=shape), r.normal(size=shape)
    params = random_params(shape[1], groups, np.float64, seed=1)
    out64, dx64, g64 = run_layer(*PAIRS[impl], x, params, groups, dout)
    p32 = {n: v.astype(np.float32) for n, v in params.items()}
    out32, dx32, g32 = run_layer(*PAIRS[impl], x.astype(np.float32), p32, groups, dout.astype(np.float32))
    compare("out", out32.astype(np.float64), out64, rtol=FLOAT32_RTOL)
    compare("dx", dx32.astype(np.float64), dx64, rtol=FLOAT32_RTOL)
    for name in PARAM_NAMES:
        compare(f"d{name}", g32[name].astype(np.float64), g64[name], rtol=FLOAT32_RTOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", PAIRS)
def test_layer_functions_keep_the_dtype(impl, dtype):
    r = np.random.default_rng(2)
    x, dout = r.normal(size=(2, 12, 3, 4)).astype(dtype), r.normal(size=(2, 12, 3, 4)).astype(dtype)
    params = random_params(12, 3, np.float64, seed=3)        # float64 parameters follow x's dtype
    out, dx, grads = run_layer(*PAIRS[impl], x, params, 3, dout)
    assert out.dtype == dx.dtype == dtype
    assert {g.dtype for g in grads.values()} == {np.dtype(dtype)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_salayer_keeps_its_dtype_in_params_output_and_grads(dtype):
    layer = SALayer(16, 4, dtype=dtype)
    layer.load_state_dict(random_params(16, 4, np.float64, seed=4))
    assert {v.dtype for v in layer.params.values()} == {np.dtype(dtype)}
    r = np.random.default_rng(4)
    x = r.normal(size=(2, 16, 3, 3)).astype(dtype)
    out = layer.forward(x)
    dx = layer.backward(r.normal(size=x.shape).astype(dtype))
    assert out.dtype == dx.dtype == dtype
    assert {g.dtype for g in layer.grads.values()} == {np.dtype(dtype)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_part_keeps_the_dtype(dtype):
    r = np.random.default_rng(5)
    x = r.normal(size=(2, 8, 3, 3)).astype(dtype)
    ones = np.ones(2)                                         # float64 parameters
    (x0, x1), split = group_split_forward(x, 2)
    assert x0.dtype == x1.dtype == group_split_backward((x0, x1), split).dtype == dtype

    y0, cg = channel_gate_forward(x0, r.normal(size=2), ones)
    assert y0.dtype == dtype
    assert all(a.dtype == dtype for a in channel_gate_backward(y0, cg))

    n, gn = groupnorm_forward(x1, r.normal(size=2), ones, 1)
    assert n.dtype == dtype
    assert all(a.dtype == dtype for a in groupnorm_backward(n, gn))

    y1, sg = spatial_gate_forward(x1, r.normal(size=2), ones, ones, ones)
    assert y1.dtype == dtype
    assert all(a.dtype == dtype for a in spatial_gate_backward(y1, sg))

    y, merge = group_merge_forward(y0, y1, 2)
    assert y.dtype == dtype and all(a.dtype == dtype for a in group_merge_backward(y, merge))

    out, sh = channel_shuffle_forward(y, 2)
    assert out.dtype == channel_shuffle_backward(out, sh).dtype == dtype


def test_float32_small_gates_keep_their_relative_accuracy():
    """Where a gate is tiny (strongly negative pre-activation), float32 must still be right
    entry by entry, not only relative to the largest value: a sigmoid written as
    (1 + tanh(z/2)) / 2 cancels there and is off by more than 100%."""
    r = np.random.default_rng(3)
    x = r.normal(size=(2, 16, 6, 6))
    params = random_params(16, 4, np.float64, seed=2)
    params["sbias"] = np.full_like(params["sbias"], -14.0)    # spatial gates around sigmoid(-14) ~ 8e-7
    params["cbias"] = np.full_like(params["cbias"], -14.0)
    out64, _ = sa_forward_fused(x, params, 4)
    out32, _ = sa_forward_fused(x.astype(np.float32), {n: v.astype(np.float32) for n, v in params.items()}, 4)
    rel = np.abs(out32 - out64) / np.abs(out64)
    assert rel.max() < 1e-5, f"float32 output off by {rel.max():.1e} relative where the gates are small"
