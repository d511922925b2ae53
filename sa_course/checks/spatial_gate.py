"""Exercise 03's checks: GroupNorm for any number of groups, and the spatial gate built on it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sa_numpy.functional import sigmoid
from sa_numpy.groupnorm import groupnorm_backward, groupnorm_forward
from sa_numpy.spatial_gate import spatial_gate_backward, spatial_gate_forward

from .channel_gate import DSIG
from .harness import EPS, Report, away_from_zero, call, keeps_float32, not_a_view, numeric, rng, short_traceback
from .mistakes import hints


def groupnorm_with(x, gamma, beta, groups, eps, ddof=0, eps_inside=True, sqrt=True, batch_stats=False):
    """GroupNorm forward with switches that reproduce known mistakes."""
    n, c, h, w = x.shape
    xg = x.transpose(1, 0, 2, 3).reshape(c, 1, -1) if batch_stats else x.reshape(n, groups, -1)
    mean, var = xg.mean(axis=2, keepdims=True), xg.var(axis=2, ddof=ddof, keepdims=True)
    std = (np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps) if sqrt else var + eps
    xhat = (xg - mean) / std
    xhat = xhat.reshape(c, n, h, w).transpose(1, 0, 2, 3) if batch_stats else xhat.reshape(x.shape)
    return xhat * np.reshape(gamma, (-1, 1, 1)) + np.reshape(beta, (-1, 1, 1))


def groupnorm_dx(dout, cache, mean_term=True, var_term=True, use_gamma=True):
    """GroupNorm's dx from a reference cache, with switches that drop known terms."""
    n, c, h, w = dout.shape
    g = (dout * cache.gamma[:, None, None] if use_gamma else dout).reshape(n, cache.num_groups, -1)
    xg = cache.xhat.reshape(g.shape)
    dx = g - (g.mean(axis=2, keepdims=True) if mean_term else 0) \
        - (xg * (g * xg).mean(axis=2, keepdims=True) if var_term else 0)
    return (dx * cache.rstd[:, :, None]).reshape(dout.shape)


@short_traceback
def check_groupnorm(groupnorm_forward_fn, groupnorm_backward_fn) -> None:
    """Exercise 03, part 1: GroupNorm for any number of groups, forward and backward."""
    gen = rng(3)
    n, c, h, w, groups = 3, 6, 3, 3, 3
    x = gen.normal(size=(n, c, h, w)) * gen.uniform(0.5, 2, (1, c, 1, 1)) + gen.normal(size=(n, c, 1, 1))
    gamma, beta = away_from_zero(gen, c), gen.normal(size=c)
    report = Report("GroupNorm, forward and backward")
    rout, rcache = groupnorm_forward(x, gamma, beta, groups, eps=EPS)
    ctx = SimpleNamespace(x=x, c=c, rcache=rcache, gn=lambda **kw: groupnorm_with(
        x, **{"gamma": gamma, "beta": beta, "groups": groups, "eps": EPS, **kw}))
    args = [("x", x), ("gamma", gamma), ("beta", beta), ("num_groups", groups)]
    out, cache = call(groupnorm_forward_fn, "groupnorm_forward", args, ("out", "cache"), eps=EPS)
    report.expect("out", out, rout, hints("groupnorm", "out", ctx))
    not_a_view("out", out, {"x": x})
    keeps_float32(groupnorm_forward_fn, "groupnorm_forward",
                  [(label, v.astype(np.float32) if isinstance(v, np.ndarray) else v) for label, v in args],
                  ("out", "cache"), eps=EPS)

    ctx.dout = dout = gen.normal(size=x.shape)
    names = ("dx", "dgamma", "dbeta")
    refs = groupnorm_backward(dout, rcache)
    ours = call(groupnorm_backward_fn, "groupnorm_backward", [("dout", dout), ("cache", cache)], names, watch=args)
    fwd = lambda xx=x, gg=gamma, bb=beta: groupnorm_forward(xx, gg, bb, groups, eps=EPS)[0]
    numerics = (numeric(lambda v: fwd(xx=v), x, dout), numeric(lambda v: fwd(gg=v), gamma, dout),
                numeric(lambda v: fwd(bb=v), beta, dout))
    ctx.refs_by_name = dict(zip(names, refs))
    ctx.dx = lambda **kw: groupnorm_dx(dout, rcache, **kw)
    report.outputs(names, ours, refs, numerics, {nm: hints("groupnorm", nm, ctx) for nm in names}, {"dout": dout})
    report.praise()


def spatial_gate_with(x1, sw, sb, gw, gb, eps, gn_groups=None, normalise=True, sig=True, gate_normalised=False,
                      **gn_kw):
    """The spatial gate's forward with switches that reproduce known mistakes."""
    nrm = groupnorm_with(x1, gw, gb, gn_groups or x1.shape[1], eps, **gn_kw) if normalise else x1
    z = sw * nrm + sb
    return (nrm if gate_normalised else x1) * (sigmoid(z) if sig else z)


def spatial_gate_grads(x1, sw, sb, gw, gb, eps, dout, dsig="full", direct=True, gate_path=True,
                       gn_mean_terms=True):
    """The spatial gate's backward with switches; parameter gradients are per element (unsummed)."""
    nrm, gcache = groupnorm_forward(x1, gw, gb, x1.shape[1], eps)
    sig = sigmoid(sw * nrm + sb)
    dz = dout * x1 * DSIG[dsig](sig)
    dxn = groupnorm_dx(dz * sw, gcache, mean_term=gn_mean_terms, var_term=gn_mean_terms)
    dx1 = (dout * sig if direct else 0) + (dxn if gate_path else 0)
    return dx1, dz * nrm, dz, dz * sw * gcache.xhat, dz * sw


@short_traceback
def check_spatial_gate(spatial_gate_forward_fn, spatial_gate_backward_fn) -> None:
    """Exercise 03, part 2: the spatial gate (GroupNorm with one group per channel), both passes."""
    gen = rng(4)
    n, k, h, w = 4, 3, 3, 3
    x1 = gen.normal(size=(n, k, h, w)) * gen.uniform(0.5, 2, (1, k, 1, 1)) + gen.normal(size=(n, k, 1, 1))
    sw, sb = away_from_zero(gen, (1, k, 1, 1)), gen.normal(size=(1, k, 1, 1))
    gw, gb = away_from_zero(gen, k), gen.normal(size=k)
    params = (sw, sb, gw, gb)
    report = Report("spatial gate, forward and backward")
    ry1, rcache = spatial_gate_forward(x1, *params, eps=EPS)
    ctx = SimpleNamespace(x1=x1, k=k, sg=lambda eps=EPS, gw=gw, gb=gb, **kw: spatial_gate_with(
        x1, sw, sb, gw, gb, eps, **kw))
    labels = ("sweight", "sbias", "gn_weight", "gn_bias")
    args = [("x1", x1), *zip(labels, params)]
    y1, cache = call(spatial_gate_forward_fn, "spatial_gate_forward", args, ("y1", "cache"), eps=EPS)
    report.expect("y1", y1, ry1, hints("spatial_gate", "y1", ctx))
    not_a_view("y1", y1, {"x1": x1})
    keeps_float32(spatial_gate_forward_fn, "spatial_gate_forward",
                  [(label, v.astype(np.float32)) for label, v in args], ("y1", "cache"), eps=EPS)

    dout = gen.normal(size=x1.shape)
    names = ("dx1", "dsweight", "dsbias", "dgn_weight", "dgn_bias")
    refs = spatial_gate_backward(dout, rcache)
    ours = call(spatial_gate_backward_fn, "spatial_gate_backward", [("dout", dout), ("cache", cache)], names,
                watch=args)

    def fwd_with(i):
        def f(v):
            inputs = [x1, *params]
            inputs[i] = v
            return spatial_gate_forward(*inputs, eps=EPS)[0]
        return f
    numerics = tuple(numeric(fwd_with(i), v, dout) for i, v in enumerate((x1, *params)))
    ctx.refs_by_name = dict(zip(names, refs))
    ctx.variant = lambda i, **kw: spatial_gate_grads(x1, *params, EPS, dout, **kw)[i]
    ctx.summed = lambda i, **kw: ctx.variant(i, **kw).sum(axis=(0, 2, 3)).reshape(refs[i].shape)
    report.outputs(names, ours, refs, numerics, {nm: hints("spatial_gate", nm, ctx) for nm in names}, {"dout": dout})
    report.praise()
