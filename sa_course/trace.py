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
``gate`` for the gates); a cache without them shows ``n/a`` on those rows.

This module never imports torch at import time: PyTorch is loaded inside
:func:`trace_layer`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sa_numpy.gradcheck import compare, default_rtol
from sa_numpy.layer import random_params, resolve_parts, sa_backward, sa_forward
from sa_numpy.validate import PARAM_NAMES, check_channels_groups, check_input, check_params, check_same_shape

#: What each intermediate is, shown next to the first one that differs.
HINTS = {
    "x0": "group_split_forward: view x (B, C, H, W) as (B*G, C/G, H, W); the first K "
          "channels of every group are x0 (channel branch), the last K are x1",
    "x1": "group_split_forward: x1 is the second half, channels K..2K-1 of every group",
    "s": "channel gate: s = mean of x0 over H and W (global average pooling), one value "
         "per row and channel, shape (B*G, K)",
    "channel_gate": "channel gate: sigmoid(cweight * s + cbias), the same K parameters "
                    "for every group",
    "y0": "channel gate: y0 = x0 * gate, the gate broadcast over H and W",
    "n": "spatial gate: GroupNorm with num_groups = K, i.e. every channel of every row "
         "normalised over its own H*W pixels with the biased variance (divide by H*W, "
         "not H*W - 1), eps inside the sqrt, then gn.weight * xhat + gn.bias",
    "spatial_gate": "spatial gate: sigmoid(sweight * n + sbias), one value per pixel",
    "y1": "spatial gate: y1 = x1 * gate",
    "y": "group_merge_forward: concatenate y0 and y1 along the channels of each row, "
         "then reshape (B*G, 2K, H, W) back to (B, C, H, W)",
    "out": "channel_shuffle_forward with 2 groups: output channel 2j + i is input "
           "channel i*C/2 + j (channels 1..8 become 1,5,2,6,3,7,4,8)",
    "dy": "channel_shuffle_backward: the inverse permutation, itself a shuffle with C/2 groups",
    "dy0": "group_merge_backward: reshape dout to (B*G, 2K, H, W); dy0 is the first K channels",
    "dy1": "group_merge_backward: dy1 is the last K channels of each row",
    "dx1": "spatial_gate_backward: x1 is used twice, so dx1 = dy1 * gate + the path through "
           "the gate and the GroupNorm (its mean and variance terms)",
    "dsweight": "spatial_gate_backward: sum over rows and pixels of dz * n, "
                "dz = dy1 * x1 * gate * (1 - gate)",
    "dsbias": "spatial_gate_backward: sum over rows and pixels of dz",
    "dgn.weight": "spatial_gate_backward: sum of (dz * sweight) * xhat",
    "dgn.bias": "spatial_gate_backward: sum of dz * sweight",
    "dx0": "channel_gate_backward: dx0 = dy0 * gate + cweight * dz / (H*W), the second "
           "term flows back through the mean; dz = sum_hw(dy0 * x0) * gate * (1 - gate)",
    "dcweight": "channel_gate_backward: sum over rows of dz * s",
    "dcbias": "channel_gate_backward: sum over rows of dz",
    "dx": "group_split_backward: concatenate dx0 and dx1 along the channels of each row "
          "and reshape back to (B, C, H, W)",
}

#: The parts in the order they run, each with the tensors it produces.
FORWARD_STEPS = (
    ("group_split_forward", ("x0", "x1")),
    ("channel_gate_forward", ("s", "channel_gate", "y0")),
    ("spatial_gate_forward", ("n", "spatial_gate", "y1")),
    ("group_merge_forward", ("y",)),
    ("channel_shuffle_forward", ("out",)),
)
BACKWARD_STEPS = (
    ("channel_shuffle_backward", ("dy",)),
    ("group_merge_backward", ("dy0", "dy1")),
    ("spatial_gate_backward", ("dx1", "dsweight", "dsbias", "dgn.weight", "dgn.bias")),
    ("channel_gate_backward", ("dx0", "dcweight", "dcbias")),
    ("group_split_backward", ("dx",)),
)
PART_NAMES = tuple(name for name, _ in FORWARD_STEPS + BACKWARD_STEPS)
_FORWARD_OF = {bw: fw for (fw, _), (bw, _) in zip(FORWARD_STEPS, reversed(BACKWARD_STEPS))}
_CACHED = ("s", "channel_gate", "n", "spatial_gate")   # read from a forward part's cache
_SMALL = 1e-12      # diffs below this (0 included) print as "<1e-12", the same on every machine
_RAISED = object()  # the cache of a part that raised


@dataclass(frozen=True)
class TraceRow:
    """One compared tensor. status: "ok", "DIFFERS", "raised", "n/a" (not in the cache)
    or "skipped" (its forward raised, so there is no cache to run the backward with)."""
    step: str
    tensor: str
    shape: tuple
    max_abs: float
    max_rel: float
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def diverged(self) -> bool:
        return self.status in ("DIFFERS", "raised")

    def cells(self) -> tuple[str, ...]:
        return (self.step, self.tensor, str(self.shape), _fmt(self.max_abs), _fmt(self.max_rel), self.status)


def _fmt(value: float) -> str:
    if np.isnan(value):
        return "-"
    return f"<{_SMALL:.0e}" if value < _SMALL else f"{value:.1e}"      # exact 0 too: stable across CPUs


_HEADER = ("step", "tensor", "shape", "max abs diff", "max rel diff", "ok")


@dataclass(repr=False)
class TraceReport:
    """Every compared intermediate (``rows``, forward then backward order) and the first
    one that differs (``first_divergence``, None when all agree)."""
    rows: list[TraceRow]
    rtol: float

    @property
    def first_divergence(self) -> TraceRow | None:
        return next((row for row in self.rows if row.diverged), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    def summary(self) -> str:
        """The verdict, with the hint for the first divergence."""
        first = self.first_divergence
        note = f"(float64, rtol {self.rtol:g}; max rel diff = max abs diff / max |torch value|)"
        if first is None:
            return f"All {sum(row.ok for row in self.rows)} intermediates match sa_torch.SALayer {note}."
        return (f"First divergence: {first.tensor!r} in {first.step} ({first.status}) {note}.\n"
                f"  {first.detail}\n  what this step does: {HINTS[first.tensor]}")

    def __repr__(self) -> str:
        first = self.first_divergence
        where = "none" if first is None else f"{first.tensor!r} in {first.step} ({first.status})"
        return f"<TraceReport: {len(self.rows)} tensors compared, first divergence: {where}>"

    def __str__(self) -> str:
        table = [_HEADER] + [row.cells() for row in self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(_HEADER))]
        lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines + ["", self.summary()])

    def _repr_markdown_(self) -> str:
        rows = [_HEADER] + [row.cells() for row in self.rows]
        md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(_HEADER)]
        for row, cells in zip(self.rows, rows[1:]):
            mark = "**" if row is self.first_divergence else ""
            md.append("| " + " | ".join(f"{mark}{c}{mark}" for c in cells) + " |")
        return "\n".join(md) + "\n\n" + self.summary().replace("\n", "  \n")


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


def _from_cache(cache, *names):
    """The first of ``names`` found on a part's cache (attribute or key), else None."""
    for name in names:
        if isinstance(cache, Mapping) and name in cache:
            return cache[name]
        if hasattr(cache, name):
            return getattr(cache, name)
    return None


_PARAM_GRADS = tuple("d" + name for name in PARAM_NAMES)


class _Tracer:
    """Runs the parts one step at a time and keeps a row per tensor."""

    def __init__(self, ref: dict, rtol: float):
        self.ref, self.rtol, self.rows = ref, rtol, []

    def step(self, part: str, tensors: tuple, run, from_cache=()):
        """Call ``run() -> (values, cache)``; compare each named value with PyTorch.

        Returns (values, cache); when the part raises, PyTorch's values and ``_RAISED``.
        ``from_cache`` names values read from the cache: None there means "n/a", and a
        value of the right size is reshaped (the cache's layout is the learner's choice).
        """
        try:
            values, cache = run()
        except Exception as exc:  # any failure in a learner's part is reported, not raised
            self._fill(part, tensors, "raised", f"{type(exc).__name__}: {exc}")
            return {t: self.ref[t] for t in tensors}, _RAISED
        for t in tensors:
            self._compare(part, t, values[t], t in from_cache)
        return values, cache

    def skip(self, part: str, tensors: tuple, why: str) -> dict:
        self._fill(part, tensors, "skipped", why)
        return {t: self.ref[t] for t in tensors}

    def _fill(self, part, tensors, status, detail):
        for t in tensors:
            self.rows.append(TraceRow(part, t, self.ref[t].shape, np.nan, np.nan, status, detail))

    def _compare(self, part, name, value, cached: bool):
        ref = self.ref[name]
        if cached and value is None:
            self.rows.append(TraceRow(part, name, ref.shape, np.nan, np.nan, "n/a",
                                      "the part's cache has no such field"))
            return
        # a cache's layout, and a parameter gradient's (K,) or (1, K, 1, 1), are the learner's choice
        if cached or name in _PARAM_GRADS:
            if isinstance(value, np.ndarray) and value.size == ref.size:
                value = value.reshape(ref.shape)
        max_abs = max_rel = np.nan
        try:
            compare(name, value, ref, rtol=self.rtol)
            status, detail = "ok", ""
        except AssertionError as exc:
            status, detail = "DIFFERS", str(exc).splitlines()[0]
        mine = np.asarray(value) if isinstance(value, np.ndarray) else None
        if mine is not None and mine.shape == ref.shape and np.issubdtype(mine.dtype, np.number):
            with np.errstate(invalid="ignore", over="ignore"):
                max_abs = float(np.max(np.abs(mine.astype(np.float64) - ref), initial=0.0))
            scale = float(np.max(np.abs(ref), initial=0.0))
            max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
        self.rows.append(TraceRow(part, name, tuple(ref.shape), max_abs, max_rel, status, detail))


def trace_layer(x: np.ndarray, params: dict | None, groups: int, dout: np.ndarray | None = None,
                parts: Mapping | None = None, eps: float = 1e-5, seed: int = 0) -> TraceReport:
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

    Returns a :class:`TraceReport`; print it for the table and the first divergence.
    """
    check_input(x)
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
    t = _Tracer(_torch_reference(x, p, groups, dout, eps), rtol)

    def forward_part(part, tensors, named):
        """The learner's forward part, traced: ``named(outputs)`` -> its tensors by name."""
        def run(*args):
            def call():
                outputs = fns[part](*args)
                return named(outputs), outputs[1]
            values, cache = t.step(part, tensors, call, from_cache=_CACHED)
            main = [values[name] for name in tensors if name not in _CACHED]
            return (tuple(main) if len(main) > 1 else main[0]), cache
        return run

    def backward_part(part, tensors):
        """The learner's backward part, traced; it gets the cache of its own forward part.
        Gradients of the parameters go on as PyTorch's (nothing downstream uses them)."""
        def run(upstream, cache):
            if cache is _RAISED:
                values = t.skip(part, tensors, f"{_FORWARD_OF[part]} raised, so there is no cache")
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
            out = [t.ref[n] if n in _PARAM_GRADS else values[n] for n in tensors]
            return tuple(out) if len(out) > 1 else out[0]
        return run

    traced = {
        "group_split_forward": forward_part(
            "group_split_forward", ("x0", "x1"), lambda o: {"x0": o[0][0], "x1": o[0][1]}),
        "channel_gate_forward": forward_part(
            "channel_gate_forward", ("s", "channel_gate", "y0"),
            lambda o: {"s": _from_cache(o[1], "s"), "channel_gate": _from_cache(o[1], "gate", "channel_gate"),
                       "y0": o[0]}),
        "spatial_gate_forward": forward_part(
            "spatial_gate_forward", ("n", "spatial_gate", "y1"),
            lambda o: {"n": _from_cache(o[1], "n"), "spatial_gate": _from_cache(o[1], "gate", "spatial_gate"),
                       "y1": o[0]}),
        "group_merge_forward": forward_part("group_merge_forward", ("y",), lambda o: {"y": o[0]}),
        "channel_shuffle_forward": forward_part("channel_shuffle_forward", ("out",), lambda o: {"out": o[0]}),
        **{part: backward_part(part, tensors) for part, tensors in BACKWARD_STEPS},
    }
    out, cache = sa_forward(x, official, groups, eps, parts=traced)
    sa_backward(dout, cache)
    return TraceReport(t.rows, rtol)
