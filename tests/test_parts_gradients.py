"""Each part's backward against centred differences and against torch autograd (float64).

Random parameters everywhere (never the official zero init, which hides backward bugs).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sa_numpy import (channel_gate_backward, channel_gate_forward, compare, group_merge_backward,
                      group_merge_forward, group_split_backward, group_split_forward, groupnorm_backward,
                      groupnorm_forward, numerical_gradient, spatial_gate_backward, spatial_gate_forward)

NUMERIC_RTOL = 1e-7     # centred differences with h = 1e-6 in float64: error ~h^2 + eps/h ~ 1e-10


def rng(seed):
    return np.random.default_rng(seed)


def t(a):
    return torch.from_numpy(a).requires_grad_(True)


# --- grouping: split into halves and merge back ----------------------------------------------

def test_split_puts_each_groups_halves_in_the_two_branches():
    b, c, h, w, groups = 2, 12, 2, 3, 3           # K = 2
    x = rng(0).normal(size=(b, c, h, w))
    (x0, x1), _ = group_split_forward(x, groups)
    assert x0.shape == x1.shape == (b * groups, 2, h, w)
    # channel c = g*2K + i*K + k of sample n goes to branch i, row n*G + g, channel k
    np.testing.assert_array_equal(x0[1 * groups + 2, 1], x[1, 2 * 4 + 0 * 2 + 1])
    np.testing.assert_array_equal(x1[0 * groups + 1, 0], x[0, 1 * 4 + 1 * 2 + 0])


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_split_backward_matches_numerical_gradient_and_torch(groups):
    r = rng(1)
    x = r.normal(size=(2, 4 * groups, 2, 3))
    (x0, _), cache = group_split_forward(x, groups)
    d0, d1 = r.normal(size=x0.shape), r.normal(size=x0.shape)
    dx = group_split_backward((d0, d1), cache)
    both = np.concatenate([d0.ravel(), d1.ravel()])
    numeric = numerical_gradient(
        lambda v: np.concatenate([a.ravel() for a in group_split_forward(v, groups)[0]]), x, both)
    compare("dx vs numerical", dx, numeric, rtol=NUMERIC_RTOL)
    xt = t(x)
    halves = xt.reshape(2 * groups, 4, 2, 3).chunk(2, dim=1)
    torch.autograd.backward(halves, (torch.from_numpy(d0), torch.from_numpy(d1)))
    compare("dx vs torch", dx, xt.grad)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_merge_is_the_inverse_of_split_and_its_backward_matches_torch(groups):
    r = rng(2)
    x = r.normal(size=(2, 4 * groups, 3, 2))
    (x0, x1), _ = group_split_forward(x, groups)
    y, cache = group_merge_forward(x0, x1, batch=2)
    np.testing.assert_array_equal(y, x)
    dout = r.normal(size=y.shape)
    dy0, dy1 = group_merge_backward(dout, cache)
    n0 = numerical_gradient(lambda v: group_merge_forward(v, x1, 2)[0], x0.copy(), dout)
    n1 = numerical_gradient(lambda v: group_merge_forward(x0, v, 2)[0], x1.copy(), dout)
    compare("dy0 vs numerical", dy0, n0, rtol=NUMERIC_RTOL)
    compare("dy1 vs numerical", dy1, n1, rtol=NUMERIC_RTOL)
    y0t, y1t = t(x0.copy()), t(x1.copy())
    torch.cat([y0t, y1t], dim=1).reshape(y.shape).backward(torch.from_numpy(dout))
    compare("dy0 vs torch", dy0, y0t.grad)
    compare("dy1 vs torch", dy1, y1t.grad)


# --- channel gate -------------------------------------------------------------------------------

def torch_channel_gate(x0, cw, cb):
    s = x0.mean(dim=(2, 3), keepdim=True)
    return x0 * torch.sigmoid(cw.reshape(1, -1, 1, 1) * s + cb.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("param_shape", ["flat", "official"])
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (4, 1, 1, 1), (1, 3, 2, 1)])
def test_channel_gate_backward_matches_numerical_gradient_and_torch(shape, param_shape):
    r = rng(3)
    k = shape[1]
    pshape = (k,) if param_shape == "flat" else (1, k, 1, 1)
    x0, cw, cb = r.normal(size=shape), r.normal(size=pshape), r.normal(size=pshape)
    dout = r.normal(size=shape)
    _, cache = channel_gate_forward(x0, cw, cb)
    dx0, dcw, dcb = channel_gate_backward(dout, cache)
    assert dcw.shape == dcb.shape == pshape
    f = lambda: channel_gate_forward(x0, cw, cb)[0]
    compare("dx0 vs numerical", dx0, numerical_gradient(lambda v: channel_gate_forward(v, cw, cb)[0], x0, dout),
            rtol=NUMERIC_RTOL)
    compare("dcweight vs numerical", dcw, numerical_gradient(lambda v: f(), cw, dout), rtol=NUMERIC_RTOL)
    compare("dcbias vs numerical", dcb, numerical_gradient(lambda v: f(), cb, dout), rtol=NUMERIC_RTOL)
    xt, cwt, cbt = t(x0), t(cw), t(cb)
    torch_channel_gate(xt, cwt, cbt).backward(torch.from_numpy(dout))
    compare("dx0 vs torch", dx0, xt.grad)
    compare("dcweight vs torch", dcw, cwt.grad)
    compare("dcbias vs torch", dcb, cbt.grad)


# --- GroupNorm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("num_groups", [1, 2, 6], ids=["layer-norm", "between", "instance-norm"])
@pytest.mark.parametrize("shape", [(2, 6, 3, 4), (3, 6, 1, 2)])
def test_groupnorm_matches_torch_group_norm_and_numerical_gradient(shape, num_groups):
    r = rng(4)
    c = shape[1]
    x, gamma, beta = r.normal(size=shape), r.normal(size=c), r.normal(size=c)
    dout = r.normal(size=shape)
    out, cache = groupnorm_forward(x, gamma, beta, num_groups)
    dx, dgamma, dbeta = groupnorm_backward(dout, cache)

    xt, gt, bt = t(x), t(gamma), t(beta)
    ref = F.group_norm(xt, num_groups, gt, bt, eps=1e-5)
    ref.backward(torch.from_numpy(dout))
    compare("out vs torch", out, ref.detach())
    compare("dx vs torch", dx, xt.grad)
    compare("dgamma vs torch", dgamma, gt.grad)
    compare("dbeta vs torch", dbeta, bt.grad)

    f = lambda: groupnorm_forward(x, gamma, beta, num_groups)[0]
    compare("dx vs numerical", dx, numerical_gradient(lambda v: groupnorm_forward(v, gamma, beta, num_groups)[0],
                                                      x, dout), rtol=1e-6)
    compare("dgamma vs numerical", dgamma, numerical_gradient(lambda v: f(), gamma, dout), rtol=NUMERIC_RTOL)
    compare("dbeta vs numerical", dbeta, numerical_gradient(lambda v: f(), beta, dout), rtol=NUMERIC_RTOL)


def test_groupnorm_uses_the_biased_variance_and_eps():
    x = np.array([1.0, 2.0, 3.0, 6.0]).reshape(1, 1, 2, 2)   # mean 3, biased variance 3.5
    out, _ = groupnorm_forward(x, np.ones(1), np.zeros(1), 1, eps=0.5)
    np.testing.assert_allclose(out.ravel(), (np.array([1.0, 2.0, 3.0, 6.0]) - 3.0) / 2.0, rtol=1e-15)


# --- spatial gate ---------------------------------------------------------------------------------

def torch_spatial_gate(x1, sw, sb, gw, gb):
    n = F.group_norm(x1, x1.shape[1], gw, gb, eps=1e-5)
    return x1 * torch.sigmoid(sw.reshape(1, -1, 1, 1) * n + sb.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 1, 3, 1), (1, 3, 2, 2)])
def test_spatial_gate_backward_matches_numerical_gradient_and_torch(shape):
    r = rng(5)
    k = shape[1]
    x1 = r.normal(size=shape)
    sw, sb = r.normal(size=(1, k, 1, 1)), r.normal(size=(1, k, 1, 1))
    gw, gb = r.normal(size=k), r.normal(size=k)
    dout = r.normal(size=shape)
    _, cache = spatial_gate_forward(x1, sw, sb, gw, gb)
    dx1, dsw, dsb, dgw, dgb = spatial_gate_backward(dout, cache)
    assert dsw.shape == dsb.shape == (1, k, 1, 1) and dgw.shape == dgb.shape == (k,)

    tensors = [t(a) for a in (x1, sw, sb, gw, gb)]
    torch_spatial_gate(*tensors).backward(torch.from_numpy(dout))
    for name, ours, ref in zip(["dx1", "dsweight", "dsbias", "dgn.weight", "dgn.bias"],
                               [dx1, dsw, dsb, dgw, dgb], tensors):
        compare(f"{name} vs torch", ours, ref.grad)

    f = lambda: spatial_gate_forward(x1, sw, sb, gw, gb)[0]
    compare("dx1 vs numerical", dx1,
            numerical_gradient(lambda v: spatial_gate_forward(v, sw, sb, gw, gb)[0], x1, dout), rtol=1e-6)
    for name, ours, param in [("dsweight", dsw, sw), ("dsbias", dsb, sb), ("dgn.weight", dgw, gw),
                              ("dgn.bias", dgb, gb)]:
        compare(f"{name} vs numerical", ours, numerical_gradient(lambda v: f(), param, dout), rtol=NUMERIC_RTOL)
