"""Exercise 04's check: channel shuffle and its inverse, for several numbers of groups."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sa_numpy.shuffle import channel_shuffle_backward, channel_shuffle_forward

from .diagnose import Facts
from .facts import Upstream
from .harness import Report, call, keeps_float32, not_a_view, numeric, rng, short_traceback
from .mistakes import hints


@short_traceback
def check_shuffle(channel_shuffle_forward_fn, channel_shuffle_backward_fn) -> None:
    """Exercise 04: channel shuffle and its inverse, for several numbers of groups."""
    gen = rng(5)
    b, c, h, w = 2, 12, 5, 7             # every axis its own size: no mistake hides behind a repeated one
    report = Report("channel shuffle, forward and backward")
    shuffle = lambda v, groups: channel_shuffle_forward(v, groups)[0]
    axes = ("B", "C", "H", "W")
    for groups in (2, 3, 1):
        x = gen.normal(size=(b, c, h, w))
        tag = f" (groups={groups})"
        facts = Facts(numbers={"B": b, "C": c, "H": h, "W": w, "groups": groups, "C/groups": c // groups},
                      axes={"out": axes, "dx": axes}, twice={"out": ("the shuffle", lambda v, g=groups: shuffle(v, g))})
        ctx = SimpleNamespace(x=x, c=c, groups=groups, shuffle=shuffle, facts=facts,
                              hint_numbers={"groups": groups, "c_over_groups": c // groups, "half": c // 2})
        rout, rcache = channel_shuffle_forward(x, groups)
        out, cache = call(channel_shuffle_forward_fn, "channel_shuffle_forward",
                          [("x", x), ("groups", groups)], ("out", "cache"))
        facts.returned(("out", "cache"), (out, cache), {"out": rout})
        report.expect("out" + tag, out, rout, hints("shuffle", "out", ctx))
        not_a_view("out" + tag, out, {"x": x})

        ctx.dout = dout = gen.normal(size=x.shape)
        rdx = channel_shuffle_backward(dout, rcache)
        facts.upstream = Upstream(dout, lambda rc=rcache: {"dx": channel_shuffle_backward(np.ones_like(dout), rc)})
        dx = call(channel_shuffle_backward_fn, "channel_shuffle_backward", [("dout", dout), ("cache", cache)],
                  ("dx",), watch=[("x", x)])
        facts.returned(("dx",), (dx,), {"dx": rdx})
        num = numeric(lambda v: shuffle(v, groups), x, dout)
        report.outputs(("dx" + tag,), (dx,), (rdx,), (num,), {"dx" + tag: hints("shuffle", "dx", ctx)},
                       {"dout": dout})

    _, cache32 = keeps_float32(channel_shuffle_forward_fn, "channel_shuffle_forward",
                               [("x", x.astype(np.float32)), ("groups", 3)], ("out", "cache"))
    keeps_float32(channel_shuffle_backward_fn, "channel_shuffle_backward",
                  [("dout", dout.astype(np.float32)), ("cache", cache32)], ("dx",))
    report.praise()
