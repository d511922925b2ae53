"""Exercise 05's check: the whole layer, composed from the parts, forward and backward."""
from __future__ import annotations

import functools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from sa_numpy.channel_gate import channel_gate_backward, channel_gate_forward
from sa_numpy.fused import sa_backward_fused, sa_forward_fused
from sa_numpy.grouping import group_merge_backward, group_merge_forward, group_split_backward, group_split_forward
from sa_numpy.layer import random_params, sa_forward
from sa_numpy.shuffle import channel_shuffle_backward, channel_shuffle_forward
from sa_numpy.spatial_gate import spatial_gate_backward, spatial_gate_forward
from sa_numpy.validate import PARAM_NAMES

from .diagnose import Facts, a_kind, hinted
from .facts import Gated, Upstream
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


def layer_backward_with(cache, dout, unshuffle="inverse", swap_dy=False, swap_dx=False, stale=()):
    """The backward from the parts' caches (:func:`sa_numpy.sa_forward`), with switches that
    reproduce known mistakes: dout un-shuffled wrongly ("skipped", or with the "forward"
    shuffle), dy0 and dy1 sent to the wrong gates, dx0 and dx1 to the wrong halves, or the
    halves in the gates' caches overwritten by the gates' outputs (``stale`` holds "x0", "x1").
    Returns dx and the six parameter gradients in PARAM_NAMES order."""
    dy = {"inverse": lambda: channel_shuffle_backward(dout, cache.shuffle), "skipped": lambda: dout,
          "forward": lambda: channel_shuffle_forward(dout, 2)[0]}[unshuffle]()
    dy0, dy1 = group_merge_backward(dy, cache.merge)
    if swap_dy:
        dy0, dy1 = dy1, dy0
    channel, spatial = cache.channel, cache.spatial
    if "x0" in stale:
        channel = replace(channel, x0=cache.x0 * channel.gate[:, :, None, None])
    if "x1" in stale:
        spatial = replace(spatial, x1=cache.x1 * spatial.gate)
    dx1, dsw, dsb, dgw, dgb = spatial_gate_backward(dy1, spatial)
    dx0, dcw, dcb = channel_gate_backward(dy0, channel)
    dx = group_split_backward((dx1, dx0) if swap_dx else (dx0, dx1), cache.split)
    grads = dict(zip(PARAM_NAMES, (dcw, dcb, dsw, dsb, dgw, dgb)))
    return (dx, *(grads[n].reshape(cache.param_shapes[n]) for n in PARAM_NAMES))


def layer_gates(x, cache) -> Gated:
    """The layer's output as x (shuffled) times the two gates (merged and shuffled in the same way),
    with the output channels each gate produces, from the parts' cache of :func:`sa_numpy.sa_forward`."""
    route = lambda v0, v1: channel_shuffle_forward(group_merge_forward(v0, v1, x.shape[0])[0], 2)[0]
    x0 = cache.x0
    gate = route(np.broadcast_to(cache.channel.gate[:, :, None, None], x0.shape), cache.spatial.gate)
    channel = route(np.ones_like(x0), np.zeros_like(x0)) > 0.5
    return Gated(channel_shuffle_forward(x, 2)[0], gate, {"channel gate": channel, "spatial gate": ~channel})


def layer_input(gen, b, c, h, w):
    return gen.normal(size=(b, c, h, w)) + gen.normal(size=(b, c, 1, 1))


@short_traceback
def check_sa_layer(sa_forward_fn, sa_backward_fn) -> None:
    """Exercise 05: the whole layer, composed from the parts, forward and backward."""
    gen = rng(6)
    b, groups, k, h, w = 2, 3, 4, 5, 7   # every axis its own size: no mistake hides behind a repeated one
    c = 2 * groups * k
    x = layer_input(gen, b, c, h, w)
    params = random_params(c, groups, np.float64, seed=seed(7))
    report = Report("Shuffle Attention layer, forward and backward")
    rout, rcache = sa_forward_fused(x, params, groups, eps=EPS)
    facts = Facts(numbers={"B": b, "G": groups, "K": k, "2K": 2 * k, "H": h, "W": w, "C": c, "H·W": h * w,
                           "B·G": b * groups,
                           "B·G·H·W": b * groups * h * w},
                  axes={"out": ("B", "C", "H", "W"), "dx": ("B", "C", "H", "W"),
                        **{f"grads[{n!r}]": ("K",) if n.startswith("gn.") else ("1", "K", "1", "1")
                           for n in PARAM_NAMES}},
                  factors={**{n: (params[n], "K") for n in ("cweight", "sweight", "gn.weight", "cbias", "sbias",
                                                            "gn.bias")}, "x": x},
                  twice={"out": ("the final shuffle", lambda v: channel_shuffle_forward(v, 2)[0])})
    ctx = SimpleNamespace(c=c, groups=groups, facts=facts,
                          layer=lambda **kw: layer_with(x, params, groups, **{"eps": EPS, **kw}))
    parts_cache = sa_forward(x, params, groups, eps=EPS)[1]
    facts.gated["out"] = layer_gates(x, parts_cache)
    args = [("x", x), ("params", params), ("groups", groups)]
    out, cache = call(sa_forward_fn, "sa_forward", args, ("out", "cache"), eps=EPS)
    facts.returned(("out", "cache"), (out, cache), {"out": rout})
    report.expect("out", out, rout, hints("sa_layer", "out", ctx))
    not_a_view("out", out, {"x": x})

    # the forward once more, on another input, before the backward: the backward must use its cache
    other = layer_input(gen, b, c, h, w)
    out_other, _ = call(sa_forward_fn, "sa_forward", [("x", other), *args[1:]], ("out", "cache"), eps=EPS)
    report.expect("out (second input)", out_other, sa_forward_fused(other, params, groups, eps=EPS)[0])

    dout = gen.normal(size=x.shape)
    rdx, rgrads = sa_backward_fused(dout, rcache)
    dx, grads = call(sa_backward_fn, "sa_backward", [("dout", dout), ("cache", cache)], ("dx", "grads"), watch=args)
    if isinstance(dx, dict) and isinstance(grads, np.ndarray):
        raise hinted("sa_backward should return (dx, grads): yours returned a dict first and an array second",
                     "generic.swapped", "dx and grads are swapped: return (dx, grads), the input's gradient first")
    if not isinstance(grads, dict) or set(grads) != set(PARAM_NAMES):
        keys = sorted(map(str, grads)) if isinstance(grads, dict) else a_kind(grads)
        raise AssertionError(f"grads: expected a dict with exactly the keys {list(PARAM_NAMES)}; yours is {keys}")

    def fwd_with(name):
        return lambda v: sa_forward_fused(v, params, groups, eps=EPS)[0] if name is None else \
            sa_forward_fused(x, {**params, name: v}, groups, eps=EPS)[0]
    numerics = (numeric(fwd_with(None), x, dout), *(numeric(fwd_with(n), params[n], dout) for n in PARAM_NAMES))
    refs = (rdx, *(rgrads[n] for n in PARAM_NAMES))
    ours = (dx, *(grads[n] for n in PARAM_NAMES))
    facts.returned(LAYER_GRADIENTS, ours, dict(zip(LAYER_GRADIENTS, refs)),
                   fix="check the order in which you unpack each part's backward, and the key each gradient gets")
    ctx.refs_by_name = dict(zip(LAYER_GRADIENTS, refs))
    facts.upstream = Upstream(dout, lambda: dict(zip(LAYER_GRADIENTS, layer_backward_with(parts_cache,
                                                                                          np.ones_like(dout)))))
    ctx.backward_of = functools.cache(lambda **kw: layer_backward_with(parts_cache, dout, **kw))
    last_dx, last_grads = sa_backward_fused(dout, sa_forward_fused(other, params, groups, eps=EPS)[1])
    ctx.last_forward = (last_dx, *(last_grads[n] for n in PARAM_NAMES))
    report.outputs(LAYER_GRADIENTS, ours, refs, numerics, {nm: hints("sa_layer", nm, ctx) for nm in LAYER_GRADIENTS},
                   {"dout": dout})

    params32 = {n: v.astype(np.float32) for n, v in params.items()}
    _, cache32 = keeps_float32(sa_forward_fn, "sa_forward",
                               [("x", x.astype(np.float32)), ("params", params32), ("groups", groups)],
                               ("out", "cache"), eps=EPS)
    keeps_float32(sa_backward_fn, "sa_backward", [("dout", dout.astype(np.float32)), ("cache", cache32)],
                  ("dx", "grads"))
    report.praise()
