"""Exercise 05's check: the whole layer, composed from the parts, forward and backward."""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from sa_numpy.channel_gate import channel_gate_forward
from sa_numpy.fused import sa_backward_fused, sa_forward_fused
from sa_numpy.grouping import group_merge_forward, group_split_forward
from sa_numpy.layer import random_params
from sa_numpy.shuffle import channel_shuffle_forward
from sa_numpy.spatial_gate import spatial_gate_forward
from sa_numpy.validate import PARAM_NAMES

from .harness import EPS, Report, call, keeps_float32, not_a_view, numeric, rng, seed, short_traceback
from .mistakes import LAYER_GRADIENTS, hints


def layer_with(x, p, groups, eps, shuffle_groups=2, swap_branches=False, swap_merge=False):
    """The layer composed from the reference parts, with switches that reproduce known mistakes."""
    (x0, x1), _ = group_split_forward(x, groups)
    if swap_branches:
        x0, x1 = x1, x0
    y0 = channel_gate_forward(x0, p["cweight"], p["cbias"])[0]
    y1 = spatial_gate_forward(x1, p["sweight"], p["sbias"], p["gn.weight"], p["gn.bias"], eps)[0]
    y = group_merge_forward(*((y1, y0) if swap_merge else (y0, y1)), x.shape[0])[0]
    return channel_shuffle_forward(y, shuffle_groups)[0] if shuffle_groups else y


@short_traceback
def check_sa_layer(sa_forward_fn, sa_backward_fn) -> None:
    """Exercise 05: the whole layer, composed from the parts, forward and backward."""
    gen = rng(6)
    b, c, h, w, groups = 2, 24, 3, 3, 3
    x = gen.normal(size=(b, c, h, w)) + gen.normal(size=(b, c, 1, 1))
    params = random_params(c, groups, np.float64, seed=seed(7))
    report = Report("Shuffle Attention layer, forward and backward")
    rout, rcache = sa_forward_fused(x, params, groups, eps=EPS)
    ctx = SimpleNamespace(c=c, groups=groups, layer=lambda **kw: layer_with(x, params, groups, **{"eps": EPS, **kw}))
    args = [("x", x), ("params", params), ("groups", groups)]
    out, cache = call(sa_forward_fn, "sa_forward", args, ("out", "cache"), eps=EPS)
    report.expect("out", out, rout, hints("sa_layer", "out", ctx))
    not_a_view("out", out, {"x": x})
    keeps_float32(sa_forward_fn, "sa_forward",
                  [("x", x.astype(np.float32)), ("params", {n: v.astype(np.float32) for n, v in params.items()}),
                   ("groups", groups)], ("out", "cache"), eps=EPS)

    dout = gen.normal(size=x.shape)
    rdx, rgrads = sa_backward_fused(dout, rcache)
    dx, grads = call(sa_backward_fn, "sa_backward", [("dout", dout), ("cache", cache)], ("dx", "grads"), watch=args)
    if not isinstance(grads, dict) or set(grads) != set(PARAM_NAMES):
        keys = sorted(map(str, grads)) if isinstance(grads, dict) else type(grads).__name__
        raise AssertionError(f"grads: expected a dict with exactly the keys {list(PARAM_NAMES)}, got {keys}")

    def fwd_with(name):
        return lambda v: sa_forward_fused(v, params, groups, eps=EPS)[0] if name is None else \
            sa_forward_fused(x, {**params, name: v}, groups, eps=EPS)[0]
    numerics = (numeric(fwd_with(None), x, dout), *(numeric(fwd_with(n), params[n], dout) for n in PARAM_NAMES))
    refs = (rdx, *(rgrads[n] for n in PARAM_NAMES))
    ctx.refs_by_name = dict(zip(LAYER_GRADIENTS, refs))
    shuffled = lambda v: channel_shuffle_forward(v, 2)[0]

    @functools.cache
    def backward_of(unshuffle: str):
        """The reference backward with dout un-shuffled wrongly: "skipped", or with the "forward" shuffle."""
        wrong = shuffled(dout) if unshuffle == "skipped" else shuffled(shuffled(dout))
        dx_, grads_ = sa_backward_fused(wrong, rcache)
        return (dx_, *(grads_[n] for n in PARAM_NAMES))
    ctx.backward_of = backward_of
    ours = (dx, *(grads[n] for n in PARAM_NAMES))
    report.outputs(LAYER_GRADIENTS, ours, refs, numerics, {nm: hints("sa_layer", nm, ctx) for nm in LAYER_GRADIENTS},
                   {"dout": dout})
    report.praise()
