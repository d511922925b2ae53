"""Trace a NumPy Shuffle Attention layer against PyTorch, one named intermediate at a time.

A final output that differs from PyTorch says *that* something is wrong; the tracer
says *where*. It runs the layer composed from the parts (the reference ones, or your own
functions plugged in) and :class:`sa_torch.SALayer` on the same input and parameters in
float64, compares every intermediate of the forward and the backward, and points at the
first one that differs::

    >>> from sa_course.trace import trace_layer
    >>> report = trace_layer(x, params, groups=4, parts={"channel_gate_forward": my_forward})
    >>> print(report)                      # the table, then the first divergence and a hint
    >>> report.first_divergence.tensor     # e.g. 's'

The parts are chained as in :func:`sa_numpy.layer.sa_forward`: each part gets the
previous part's output, so the first row that differs belongs to the first wrong part.
A part that raises is reported on its row; the steps after it get PyTorch's values and
are still checked. The pooled ``s``, the ``channel_gate``, the normalised ``n`` and the
``spatial_gate`` are read from the part's cache (an attribute or a key of that name;
``gate`` for the gates); a row that cannot be compared says why, in words, under the table.

Your own chain, your ``sa_forward`` and ``sa_backward`` of exercise 05, is traced with
``trace_layer(x, params, groups, forward=sa_forward, backward=sa_backward)``: see
:mod:`sa_course.trace_chain`.

This module never imports torch at import time: PyTorch is loaded inside
:func:`trace_layer`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sa_numpy.gradcheck import default_rtol
from sa_numpy.layer import random_params, resolve_parts, sa_backward, sa_forward
from sa_numpy.validate import PARAM_NAMES, check_channels_groups, check_input, check_params, check_same_shape

from .trace_chain import trace_chain
from .trace_rows import (BACKWARD_STEPS, CACHED, FORWARD_OF, FORWARD_STEPS, HINTS, PARAM_GRADS, PART_NAMES, RAISED,
                         TraceReport, TraceRow, Tracer, from_cache)

__all__ = ["trace_layer", "TraceReport", "TraceRow", "HINTS", "PART_NAMES", "FORWARD_STEPS", "BACKWARD_STEPS"]


def _torch_reference(x, p, groups, dout, eps) -> dict[str, np.ndarray]:
    """Every intermediate and gradient of sa_torch.SALayer, float64, by the tracer's names."""
    import torch

    from sa_torch import SALayer
    from sa_torch.gates import sa_intermediates

    layer = SALayer(x.shape[1], groups).double()
    layer.gn.eps = eps
    state = layer.state_dict()
    layer.load_state_dict({n: torch.from_numpy(p[n]).reshape(state[n].shape) for n in PARAM_NAMES})
    xt = torch.tensor(x, requires_grad=True)
    steps = sa_intermediates(layer, xt)
    for value in steps.values():
        value.retain_grad()
    steps["out"].backward(torch.from_numpy(dout))
    ref = {name: v.detach().numpy() for name, v in steps.items()}
    rows = x.shape[0] * groups
    ref["s"], ref["channel_gate"] = ref["s"].reshape(rows, -1), ref["channel_gate"].reshape(rows, -1)
    for name in ("y", "y0", "y1", "x0", "x1"):
        ref["d" + name] = steps[name].grad.numpy()
    ref["dx"] = xt.grad.numpy()
    params = dict(layer.named_parameters())
    for name in PARAM_NAMES:
        ref["d" + name] = params[name].grad.numpy()          # official shapes, as the exercises return them
    return ref


def trace_layer(x: np.ndarray, params: dict | None, groups: int, dout: np.ndarray | None = None,
                parts: Mapping | None = None, eps: float = 1e-5, seed: int = 0, forward=None,
                backward=None) -> TraceReport:
    """Compare every intermediate of the parts-composed NumPy layer with sa_torch.SALayer.

    x: (B, C, H, W), converted to float64. params: the six official names, (K,) or
    (1, K, 1, 1); None draws :func:`~sa_numpy.layer.random_params` with ``seed``.
    dout: (B, C, H, W) upstream gradient; None draws a standard normal one from a stream of
    its own (seeded by ``(seed, 1)``), independent of the parameters' stream.
    parts: functions to plug in instead of the reference ones, keyed by their names
    (``"channel_gate_forward"``, ``"group_merge_backward"``, ... see ``PART_NAMES``), with
    the reference signatures. The parts get the parameters in the official shapes, as the
    exercises do: cweight, cbias, sweight, sbias (1, K, 1, 1), gn.weight, gn.bias (K,),
    float64; gradients of the right size are accepted in any shape.
    forward, backward: your own ``sa_forward(x, params, groups, eps)`` and, optionally,
    ``sa_backward(dout, cache)`` (exercise 05), traced instead of the parts' chain: every
    part they call by its name is watched (:mod:`sa_course.trace_chain`). Not with ``parts``.

    Returns a :class:`TraceReport`; print it for the table and the first divergence.
    """
    check_input(x)
    for label, fn in (("forward", forward), ("backward", backward)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{label} must be a function (your sa_{label}), got {type(fn).__name__}")
    if parts is not None and forward is not None:
        raise ValueError("give parts= (parts in the reference chain) or forward= (your own chain), not both")
    if backward is not None and forward is None:
        raise ValueError("backward= needs forward=: your sa_backward runs on the cache of your sa_forward")
    x = np.array(x, dtype=np.float64)           # a copy: a part that writes into x cannot hurt
    b, c, h, w = x.shape
    k = check_channels_groups(c, groups)
    fns = resolve_parts(parts)
    p = check_params(random_params(c, groups, seed=seed) if params is None else params, k, np.float64)
    official = {n: v.reshape(1, k, 1, 1) if n in ("cweight", "cbias", "sweight", "sbias") else v
                for n, v in p.items()}
    if dout is None:     # not the parameters' stream: its first values would equal cweight
        dout = np.random.default_rng([seed, 1]).standard_normal(x.shape)
    check_same_shape(dout, x.shape, "dout", "the layer's output")
    dout = np.array(dout, dtype=np.float64)
    rtol = default_rtol(np.float64)
    t = Tracer(_torch_reference(x, p, groups, dout, eps), rtol)
    if forward is not None:
        return trace_chain(forward, backward, x, official, groups, dout, eps, t)

    def forward_part(part, tensors, named):
        """The learner's forward part, traced: ``named(outputs)`` -> its tensors by name."""
        def run(*args):
            def call():
                outputs = fns[part](*args)
                return named(outputs), outputs[1]
            values, cache = t.step(part, tensors, call, cached=CACHED)
            main = [values[name] for name in tensors if name not in CACHED]
            return (tuple(main) if len(main) > 1 else main[0]), cache
        return run

    def backward_part(part, tensors):
        """The learner's backward part, traced; it gets the cache of its own forward part.
        Gradients of the parameters go on as PyTorch's (nothing downstream uses them)."""
        def run(upstream, cache):
            if cache is RAISED:
                values = t.skip(part, tensors, f"{FORWARD_OF[part]} raised, so there is no cache")
            else:
                def call():
                    outputs = fns[part](upstream, cache)
                    if len(tensors) == 1:
                        outputs = (outputs,)
                    if not isinstance(outputs, (tuple, list)) or len(outputs) != len(tensors):
                        got = len(outputs) if isinstance(outputs, (tuple, list)) else f"one {type(outputs).__name__}"
                        raise ValueError(f"{part} must return {len(tensors)} values {tensors}, got {got}")
                    return dict(zip(tensors, outputs)), None
                values, _ = t.step(part, tensors, call)
            out = [t.ref[n] if n in PARAM_GRADS else values[n] for n in tensors]
            return tuple(out) if len(out) > 1 else out[0]
        return run

    traced = {
        "group_split_forward": forward_part(
            "group_split_forward", ("x0", "x1"), lambda o: {"x0": o[0][0], "x1": o[0][1]}),
        "channel_gate_forward": forward_part(
            "channel_gate_forward", ("s", "channel_gate", "y0"),
            lambda o: {"s": from_cache(o[1], "s"), "channel_gate": from_cache(o[1], "gate", "channel_gate"),
                       "y0": o[0]}),
        "spatial_gate_forward": forward_part(
            "spatial_gate_forward", ("n", "spatial_gate", "y1"),
            lambda o: {"n": from_cache(o[1], "n"), "spatial_gate": from_cache(o[1], "gate", "spatial_gate"),
                       "y1": o[0]}),
        "group_merge_forward": forward_part("group_merge_forward", ("y",), lambda o: {"y": o[0]}),
        "channel_shuffle_forward": forward_part("channel_shuffle_forward", ("out",), lambda o: {"out": o[0]}),
        **{part: backward_part(part, tensors) for part, tensors in BACKWARD_STEPS},
    }
    out, cache = sa_forward(x, official, groups, eps, parts=traced)
    sa_backward(dout, cache)
    return TraceReport(t.rows, rtol)
