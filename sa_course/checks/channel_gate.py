"""Exercise 02's check: the channel gate, forward and backward."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from sa_numpy.channel_gate import channel_gate_backward, channel_gate_forward
from sa_numpy.functional import sigmoid

from .diagnose import Facts
from .facts import Gated, Upstream
from .harness import Report, away_from_zero, call, keeps_float32, not_a_view, numeric, rng, short_traceback
from .mistakes import hints

#: the sigmoid's derivative, and two ways of getting it wrong
DSIG = {"full": lambda s: s * (1 - s), "none": lambda s: 1.0, "sigma": lambda s: s}
ROWS, PARAM = ("N", "K", "H", "W"), ("1", "K", "1", "1")


def channel_gate_grads(x0, cw, cb, dout, dsig="full", per_pixel=True, pool_path=True, direct=True,
                       pool_cweight=True):
    """The channel gate's backward, with switches that reproduce known mistakes.

    Returns dx0, and the per-row dcweight and dcbias terms (N, K, 1, 1) before the sum over rows.
    """
    s = x0.mean(axis=(2, 3), keepdims=True)
    sig = sigmoid(cw * s + cb)
    dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * DSIG[dsig](sig)
    npix = x0.shape[2] * x0.shape[3] if per_pixel else 1
    pooled = dz * (cw if pool_cweight else 1) / npix
    dx0 = np.broadcast_to((dout * sig if direct else 0) + (pooled if pool_path else 0), x0.shape)
    return dx0, dz * s, dz


def gate_input(gen, n, k, h, w):
    """A random x0 whose channels have different means, so that pooling matters."""
    return gen.normal(size=(n, k, h, w)) + gen.normal(size=(n, k, 1, 1))


@short_traceback
def check_channel_gate(channel_gate_forward_fn, channel_gate_backward_fn) -> None:
    """Exercise 02: the channel gate, forward and backward."""
    gen = rng(2)
    n, k, h, w = 6, 4, 5, 7              # every axis its own size: no mistake hides behind a repeated one
    x0 = gate_input(gen, n, k, h, w)
    cw, cb = away_from_zero(gen, (1, k, 1, 1)), gen.normal(size=(1, k, 1, 1))
    report = Report("channel gate, forward and backward")
    ry0, rcache = channel_gate_forward(x0, cw, cb)
    facts = Facts(numbers={"N": n, "K": k, "H": h, "W": w, "H·W": h * w, "N·H·W": n * h * w},
                  axes={"y0": ROWS, "dx0": ROWS, "dcweight": PARAM, "dcbias": PARAM},
                  factors={"cweight": (cw, "K"), "cbias": (cb, "K"), "x0": x0})
    ctx = SimpleNamespace(x0=x0, cw=cw, cb=cb, h=h, w=w, rcache=rcache, facts=facts,
                          s=x0.mean(axis=(2, 3), keepdims=True))
    facts.gated["y0"] = Gated(x0, sigmoid(cw * ctx.s + cb))
    # x0 gated by sigmoid(affine(pooled)): the forward, with the pooling or the affine swapped
    ctx.gate = lambda pooled, affine=lambda p: cw * p + cb: x0 * sigmoid(affine(pooled))
    args = [("x0", x0), ("cweight", cw), ("cbias", cb)]
    y0, cache = call(channel_gate_forward_fn, "channel_gate_forward", args, ("y0", "cache"))
    facts.returned(("y0", "cache"), (y0, cache), {"y0": ry0})
    report.expect("y0", y0, ry0, hints("channel_gate", "y0", ctx))
    not_a_view("y0", y0, {"x0": x0})

    # the forward once more, on another input, before the backward: the backward must use its cache
    other = gate_input(gen, n, k, h, w)
    y0_other, _ = call(channel_gate_forward_fn, "channel_gate_forward", [("x0", other), *args[1:]], ("y0", "cache"))
    report.expect("y0 (second input)", y0_other, channel_gate_forward(other, cw, cb)[0])

    dout = gen.normal(size=x0.shape)
    names = ("dx0", "dcweight", "dcbias")
    refs = channel_gate_backward(dout, rcache)
    facts.upstream = Upstream(dout, lambda: dict(zip(names, channel_gate_backward(np.ones_like(dout), rcache))))
    ours = call(channel_gate_backward_fn, "channel_gate_backward", [("dout", dout), ("cache", cache)],
                names, watch=args)
    facts.returned(names, ours, dict(zip(names, refs)))
    numerics = (numeric(lambda v: channel_gate_forward(v, cw, cb)[0], x0, dout),
                numeric(lambda v: channel_gate_forward(x0, v, cb)[0], cw, dout),
                numeric(lambda v: channel_gate_forward(x0, cw, v)[0], cb, dout))
    ctx.refs_by_name = dict(zip(names, refs))
    ctx.last_forward = channel_gate_backward(dout, channel_gate_forward(other, cw, cb)[1])
    ctx.variant = lambda i, **kw: channel_gate_grads(x0, cw, cb, dout, **kw)[i]
    ctx.sum0 = lambda i, **kw: ctx.variant(i, **kw).sum(axis=0, keepdims=True)
    ctx.backward_from = lambda **fields: channel_gate_backward(dout, replace(rcache, **fields))   # a cache overwritten
    report.outputs(names, ours, refs, numerics, {nm: hints("channel_gate", nm, ctx) for nm in names}, {"dout": dout})

    args32 = [(label, v.astype(np.float32)) for label, v in args]
    _, cache32 = keeps_float32(channel_gate_forward_fn, "channel_gate_forward", args32, ("y0", "cache"))
    keeps_float32(channel_gate_backward_fn, "channel_gate_backward",
                  [("dout", dout.astype(np.float32)), ("cache", cache32)], names)
    report.praise()
