"""Exercise 03's checks: GroupNorm for any number of groups, and the spatial gate built on it."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from sa_numpy.functional import sigmoid
from sa_numpy.groupnorm import groupnorm_backward, groupnorm_forward
from sa_numpy.spatial_gate import spatial_gate_backward, spatial_gate_forward

from .channel_gate import DSIG
from .diagnose import Facts
from .facts import Gated, Upstream
from .harness import EPS, Report, away_from_zero, call, keeps_float32, not_a_view, numeric, rng, short_traceback
from .mistakes import hints


def groupnorm_with(x, gamma, beta, groups, eps, ddof=0, eps_inside=True, sqrt=True, batch_stats=False,
                   axis=2, interleaved=False):
    """GroupNorm forward with switches that reproduce known mistakes: the statistics over
    another ``axis`` of the (N, groups, M) view, or groups of every ``groups``-th channel."""
    n, c, h, w = x.shape
    if batch_stats:
        xg = x.transpose(1, 0, 2, 3).reshape(c, 1, -1)
    elif interleaved:
        xg = x.reshape(n, c // groups, groups, h * w).transpose(0, 2, 1, 3).reshape(n, groups, -1)
    else:
        xg = x.reshape(n, groups, -1)
    mean, var = xg.mean(axis=axis, keepdims=True), xg.var(axis=axis, ddof=ddof, keepdims=True)
    std = (np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps) if sqrt else var + eps
    xhat = (xg - mean) / std
    if batch_stats:
        xhat = xhat.reshape(c, n, h, w).transpose(1, 0, 2, 3)
    elif interleaved:
        xhat = xhat.reshape(n, groups, c // groups, h * w).transpose(0, 2, 1, 3).reshape(x.shape)
    else:
        xhat = xhat.reshape(x.shape)
    return xhat * np.reshape(gamma, (-1, 1, 1)) + np.reshape(beta, (-1, 1, 1))


def groupnorm_dx(dout, cache, mean_term=True, var_term=True, use_gamma=True, use_rstd=True, axis=2):
    """GroupNorm's dx from a reference cache, with switches that drop known terms or take the
    means over another ``axis`` of the (N, groups, M) view."""
    n, c, h, w = dout.shape
    g = (dout * cache.gamma[:, None, None] if use_gamma else dout).reshape(n, cache.num_groups, -1)
    xg = cache.xhat.reshape(g.shape)
    dx = g - (g.mean(axis=axis, keepdims=True) if mean_term else 0) \
        - (xg * (g * xg).mean(axis=axis, keepdims=True) if var_term else 0)
    return (dx * (cache.rstd[:, :, None] if use_rstd else 1)).reshape(dout.shape)


def normalised_input(gen, n, c, h, w):
    """A random input whose channels have different scales and means, so that normalising matters."""
    return gen.normal(size=(n, c, h, w)) * gen.uniform(0.5, 2, (1, c, 1, 1)) + gen.normal(size=(n, c, 1, 1))


@short_traceback
def check_groupnorm(groupnorm_forward_fn, groupnorm_backward_fn) -> None:
    """Exercise 03, part 1: GroupNorm for any number of groups, forward and backward."""
    gen = rng(3)
    n, c, h, w, groups = 2, 12, 5, 7, 3      # N, C, C/G, H, W all differ: no mistake hides behind a repeated size
    x = normalised_input(gen, n, c, h, w)
    gamma, beta = away_from_zero(gen, c), gen.normal(size=c)
    report = Report("GroupNorm, forward and backward")
    rout, rcache = groupnorm_forward(x, gamma, beta, groups, eps=EPS)
    rstd = np.repeat(rcache.rstd, c // groups, axis=1)[:, :, None, None]
    facts = Facts(numbers={"N": n, "C": c, "G": groups, "C/G": c // groups, "H": h, "W": w, "H·W": h * w,
                           "(C/G)·H·W": c // groups * h * w, "N·H·W": n * h * w},
                  axes={"out": ("N", "C", "H", "W"), "dx": ("N", "C", "H", "W"), "dgamma": ("C",), "dbeta": ("C",)},
                  factors={"gamma": (gamma, "C"), "rstd = 1/sqrt(var + eps)": rstd, "beta": (beta, "C"), "x": x},
                  splits={"C": groups}, offsets={"out": ("beta", beta.reshape(-1, 1, 1))},
                  inverses={"rstd": "the standard deviation sqrt(var + eps)"})
    ctx = SimpleNamespace(x=x, c=c, rcache=rcache, rout=rout, facts=facts, gn=lambda **kw: groupnorm_with(
        x, **{"gamma": gamma, "beta": beta, "groups": groups, "eps": EPS, **kw}))
    args = [("x", x), ("gamma", gamma), ("beta", beta), ("num_groups", groups)]
    out, cache = call(groupnorm_forward_fn, "groupnorm_forward", args, ("out", "cache"), eps=EPS)
    facts.returned(("out", "cache"), (out, cache), {"out": rout})
    report.expect("out", out, rout, hints("groupnorm", "out", ctx))
    not_a_view("out", out, {"x": x})

    # the forward once more, on another input, before the backward: the backward must use its cache
    other = normalised_input(gen, n, c, h, w)
    out_other, _ = call(groupnorm_forward_fn, "groupnorm_forward", [("x", other), *args[1:]], ("out", "cache"),
                        eps=EPS)
    report.expect("out (second input)", out_other, groupnorm_forward(other, gamma, beta, groups, eps=EPS)[0])

    ctx.dout = dout = gen.normal(size=x.shape)
    names = ("dx", "dgamma", "dbeta")
    refs = groupnorm_backward(dout, rcache)
    facts.upstream = Upstream(dout, lambda: dict(zip(names, groupnorm_backward(np.ones_like(dout), rcache))))
    ours = call(groupnorm_backward_fn, "groupnorm_backward", [("dout", dout), ("cache", cache)], names, watch=args)
    facts.returned(names, ours, dict(zip(names, refs)))
    fwd = lambda xx=x, gg=gamma, bb=beta: groupnorm_forward(xx, gg, bb, groups, eps=EPS)[0]
    numerics = (numeric(lambda v: fwd(xx=v), x, dout), numeric(lambda v: fwd(gg=v), gamma, dout),
                numeric(lambda v: fwd(bb=v), beta, dout))
    ctx.refs_by_name = dict(zip(names, refs))
    ctx.last_forward = groupnorm_backward(dout, groupnorm_forward(other, gamma, beta, groups, eps=EPS)[1])
    ctx.dx = lambda **kw: groupnorm_dx(dout, rcache, **kw)
    ctx.backward_from = lambda **fields: groupnorm_backward(dout, replace(rcache, **fields))   # a cache overwritten
    report.outputs(names, ours, refs, numerics, {nm: hints("groupnorm", nm, ctx) for nm in names}, {"dout": dout})

    args32 = [(label, v.astype(np.float32) if isinstance(v, np.ndarray) else v) for label, v in args]
    _, cache32 = keeps_float32(groupnorm_forward_fn, "groupnorm_forward", args32, ("out", "cache"), eps=EPS)
    keeps_float32(groupnorm_backward_fn, "groupnorm_backward",
                  [("dout", dout.astype(np.float32)), ("cache", cache32)], names)
    report.praise()


def spatial_gate_with(x1, sw, sb, gw, gb, eps, gn_groups=None, normalise=True, sig=True, gate_normalised=False,
                      affines_swapped=False, **gn_kw):
    """The spatial gate's forward with switches that reproduce known mistakes."""
    k = x1.shape[1]
    if affines_swapped:      # the gate's affine first, GroupNorm's after it
        xhat = groupnorm_with(x1, np.ones(k), np.zeros(k), gn_groups or k, eps, **gn_kw)
        z = gw.reshape(-1, 1, 1) * (sw * xhat + sb) + gb.reshape(-1, 1, 1)
        return x1 * sigmoid(z)
    nrm = groupnorm_with(x1, gw, gb, gn_groups or k, eps, **gn_kw) if normalise else x1
    z = sw * nrm + sb
    return (nrm if gate_normalised else x1) * (sigmoid(z) if sig else z)


def spatial_gate_grads(x1, sw, sb, gw, gb, eps, dout, dsig="full", direct=True, gate_path=True,
                       gn_mean_terms=True, chain_sweight=True):
    """The spatial gate's backward with switches; parameter gradients are per element (unsummed)."""
    nrm, gcache = groupnorm_forward(x1, gw, gb, x1.shape[1], eps)
    sig = sigmoid(sw * nrm + sb)
    dz = dout * x1 * DSIG[dsig](sig)
    dxn = groupnorm_dx(dz * (sw if chain_sweight else 1), gcache, mean_term=gn_mean_terms, var_term=gn_mean_terms)
    dx1 = (dout * sig if direct else 0) + (dxn if gate_path else 0)
    return dx1, dz * nrm, dz, dz * sw * gcache.xhat, dz * sw


@short_traceback
def check_spatial_gate(spatial_gate_forward_fn, spatial_gate_backward_fn) -> None:
    """Exercise 03, part 2: the spatial gate (GroupNorm with one group per channel), both passes."""
    gen = rng(4)
    n, k, h, w = 6, 4, 5, 7              # every axis its own size: no mistake hides behind a repeated one
    x1 = normalised_input(gen, n, k, h, w)
    sw, sb = away_from_zero(gen, (1, k, 1, 1)), gen.normal(size=(1, k, 1, 1))
    gw, gb = away_from_zero(gen, k), gen.normal(size=k)
    params = (sw, sb, gw, gb)
    report = Report("spatial gate, forward and backward")
    ry1, rcache = spatial_gate_forward(x1, *params, eps=EPS)
    rows, param, vector = ("N", "K", "H", "W"), ("1", "K", "1", "1"), ("K",)
    facts = Facts(numbers={"N": n, "K": k, "H": h, "W": w, "H·W": h * w, "N·H·W": n * h * w},
                  axes={"y1": rows, "dx1": rows, "dsweight": param, "dsbias": param, "dgn_weight": vector,
                        "dgn_bias": vector},
                  factors={"sweight": (sw, "K"), "gn_weight": (gw, "K"), "sbias": (sb, "K"), "gn_bias": (gb, "K"),
                           "x1": x1},
                  gated={"y1": Gated(x1, rcache.gate)})
    ctx = SimpleNamespace(x1=x1, k=k, sb=sb, ry1=ry1, rcache=rcache, facts=facts,
                          sg=lambda eps=EPS, gw=gw, gb=gb, **kw: spatial_gate_with(x1, sw, sb, gw, gb, eps, **kw))
    labels = ("sweight", "sbias", "gn_weight", "gn_bias")
    args = [("x1", x1), *zip(labels, params)]
    y1, cache = call(spatial_gate_forward_fn, "spatial_gate_forward", args, ("y1", "cache"), eps=EPS)
    facts.returned(("y1", "cache"), (y1, cache), {"y1": ry1})
    report.expect("y1", y1, ry1, hints("spatial_gate", "y1", ctx))
    not_a_view("y1", y1, {"x1": x1})

    # the forward once more, on another input, before the backward: the backward must use its cache
    other = normalised_input(gen, n, k, h, w)
    y1_other, _ = call(spatial_gate_forward_fn, "spatial_gate_forward", [("x1", other), *args[1:]],
                       ("y1", "cache"), eps=EPS)
    report.expect("y1 (second input)", y1_other, spatial_gate_forward(other, *params, eps=EPS)[0])

    dout = gen.normal(size=x1.shape)
    names = ("dx1", "dsweight", "dsbias", "dgn_weight", "dgn_bias")
    refs = spatial_gate_backward(dout, rcache)
    facts.upstream = Upstream(dout, lambda: dict(zip(names, spatial_gate_backward(np.ones_like(dout), rcache))))
    ours = call(spatial_gate_backward_fn, "spatial_gate_backward", [("dout", dout), ("cache", cache)], names,
                watch=args)
    facts.returned(names, ours, dict(zip(names, refs)))

    def fwd_with(i):
        def f(v):
            inputs = [x1, *params]
            inputs[i] = v
            return spatial_gate_forward(*inputs, eps=EPS)[0]
        return f
    numerics = tuple(numeric(fwd_with(i), v, dout) for i, v in enumerate((x1, *params)))
    ctx.refs_by_name = dict(zip(names, refs))
    ctx.last_forward = spatial_gate_backward(dout, spatial_gate_forward(other, *params, eps=EPS)[1])
    ctx.variant = lambda i, **kw: spatial_gate_grads(x1, *params, EPS, dout, **kw)[i]
    ctx.summed = lambda i, **kw: ctx.variant(i, **kw).sum(axis=(0, 2, 3)).reshape(refs[i].shape)
    ctx.backward_from = lambda **fields: spatial_gate_backward(dout, replace(rcache, **fields))   # a cache overwritten
    report.outputs(names, ours, refs, numerics, {nm: hints("spatial_gate", nm, ctx) for nm in names}, {"dout": dout})

    args32 = [(label, v.astype(np.float32)) for label, v in args]
    _, cache32 = keeps_float32(spatial_gate_forward_fn, "spatial_gate_forward", args32, ("y1", "cache"), eps=EPS)
    keeps_float32(spatial_gate_backward_fn, "spatial_gate_backward",
                  [("dout", dout.astype(np.float32)), ("cache", cache32)], names)
    report.praise()
