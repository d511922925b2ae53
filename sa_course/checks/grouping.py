"""Exercise 01's check: split into groups and halves, merge back, and both backwards."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sa_numpy.grouping import group_merge_backward, group_merge_forward, group_split_backward, group_split_forward

from .diagnose import Facts, a_kind, hinted
from .harness import Report, call, keeps_float32, not_a_view, numeric, rng, short_traceback
from .mistakes import hints

HALF, FULL = ("B·G", "K", "H", "W"), ("B", "C", "H", "W")


@short_traceback
def check_grouping(group_split_forward_fn, group_split_backward_fn,
                   group_merge_forward_fn, group_merge_backward_fn) -> None:
    """Exercise 01: split into groups and halves, merge back, and both backwards."""
    gen = rng(1)
    b, g, k, h, w = 2, 3, 4, 5, 7        # every axis its own size: no mistake hides behind a repeated one
    c = 2 * g * k
    x = gen.normal(size=(b, c, h, w))
    report = Report("grouping, split and merge, forward and backward")
    (rx0, rx1), rcache = group_split_forward(x, g)
    facts = Facts(numbers={"B": b, "G": g, "K": k, "2K": 2 * k, "H": h, "W": w, "C": c, "B·G": b * g},
                  axes={"x0": HALF, "x1": HALF, "dx": FULL, "y": FULL, "dy0": HALF, "dy1": HALF})
    ctx = SimpleNamespace(b=b, c=c, h=h, w=w, k=k, rcache=rcache, facts=facts,
                          xg=x.reshape(b, g, 2 * k, h, w), halves_first=x.reshape(b, 2, c // 2, h, w),
                          half=lambda v: v.reshape(b * g, k, h, w))
    halves, cache = call(group_split_forward_fn, "group_split_forward", [("x", x), ("groups", g)],
                         ("(x0, x1)", "cache"))
    if not isinstance(halves, (tuple, list)) or len(halves) != 2:
        message = ("group_split_forward should return ((x0, x1), cache): its first item must be a pair; "
                   f"yours is {a_kind(halves)}")
        if isinstance(cache, (tuple, list)) and len(cache) == 2 and all(isinstance(v, np.ndarray) for v in cache):
            raise hinted(message, "generic.swapped", "your second item is the pair of halves: you returned "
                         "(cache, (x0, x1)); return ((x0, x1), cache)")
        raise AssertionError(message)
    facts.returned(("x0", "x1"), halves, {"x0": rx0, "x1": rx1})
    for half, ours, ref in (("x0", halves[0], rx0), ("x1", halves[1], rx1)):
        report.expect(half, ours, ref, hints("grouping", half, ctx))

    ctx.dx0, ctx.dx1 = dx0, dx1 = gen.normal(size=rx0.shape), gen.normal(size=rx1.shape)
    rdx = group_split_backward((dx0, dx1), rcache)
    dx = call(group_split_backward_fn, "group_split_backward",
              [("(dx0, dx1)", (dx0, dx1)), ("cache", cache)], ("dx",), watch=[("x", x)])
    facts.returned(("dx",), (dx,), {"dx": rdx})
    halves_of = lambda v: np.concatenate(group_split_forward(v, g)[0], axis=1)
    num = numeric(halves_of, x, np.concatenate([dx0, dx1], axis=1))
    report.outputs(("dx",), (dx,), (rdx,), (num,), {"dx": hints("grouping", "dx", ctx)}, {"dx0": dx0, "dx1": dx1})

    ctx.y0, ctx.y1 = y0, y1 = gen.normal(size=rx0.shape), gen.normal(size=rx1.shape)
    ry, rmcache = group_merge_forward(y0, y1, b)
    y, mcache = call(group_merge_forward_fn, "group_merge_forward",
                     [("y0", y0), ("y1", y1), ("batch", b)], ("y", "cache"))
    facts.returned(("y", "cache"), (y, mcache), {"y": ry})
    report.expect("y", y, ry, hints("grouping", "y", ctx))
    not_a_view("y", y, {"y0": y0, "y1": y1})

    dy = gen.normal(size=x.shape)
    rdy0, rdy1 = group_merge_backward(dy, rmcache)
    ours = call(group_merge_backward_fn, "group_merge_backward", [("dout", dy), ("cache", mcache)],
                ("dy0", "dy1"), watch=[("y0", y0), ("y1", y1)])
    facts.returned(("dy0", "dy1"), ours, {"dy0": rdy0, "dy1": rdy1})
    numerics = (numeric(lambda v: group_merge_forward(v, y1, b)[0], y0, dy),
                numeric(lambda v: group_merge_forward(y0, v, b)[0], y1, dy))
    report.outputs(("dy0", "dy1"), ours, (rdy0, rdy1), numerics,
                   {n: hints("grouping", n, ctx) for n in ("dy0", "dy1")}, {"dout": dy})

    f32 = lambda v: v.astype(np.float32)
    _, cache32 = keeps_float32(group_split_forward_fn, "group_split_forward", [("x", f32(x)), ("groups", g)],
                               ("(x0, x1)", "cache"))
    keeps_float32(group_split_backward_fn, "group_split_backward",
                  [("(dx0, dx1)", (f32(dx0), f32(dx1))), ("cache", cache32)], ("dx",))
    _, mcache32 = keeps_float32(group_merge_forward_fn, "group_merge_forward",
                                [("y0", f32(y0)), ("y1", f32(y1)), ("batch", b)], ("y", "cache"))
    keeps_float32(group_merge_backward_fn, "group_merge_backward", [("dout", f32(dy)), ("cache", mcache32)],
                  ("dy0", "dy1"))
    report.praise()
