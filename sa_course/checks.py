"""Checks for the exercises: they take *your* functions and tell you what is wrong.

Each ``check_*`` runs your functions on small random float64 inputs with random,
non-trivial parameters, and compares every output with the reference in ``sa_numpy``
(to about 1e-10) and every gradient with a numerical gradient (centred differences,
about 1e-7). On the first disagreement it raises ``AssertionError``: the message names
the tensor, reports a wrong shape or dtype before any value, gives the largest absolute
and relative error and the first index that differs, and, when your output matches a
*known mistake* (the checks recompute each one and compare), a hint that names it.

Other outcomes, each its own exception so that the grader can tell them apart:

- :class:`NotAttempted` (a ``NotImplementedError``): a function still raises
  ``NotImplementedError``, so it has not been written yet;
- :class:`LearnerError` (an ``AssertionError``): your function raised an exception;
  the message quotes the line of your code that raised it.

A passing check prints one line with the largest errors it measured.
"""
from __future__ import annotations

import functools
import os
import traceback
from dataclasses import dataclass

import numpy as np

from sa_numpy.channel_gate import channel_gate_backward, channel_gate_forward
from sa_numpy.functional import sigmoid
from sa_numpy.gradcheck import compare, numerical_gradient
from sa_numpy.groupnorm import groupnorm_backward, groupnorm_forward
from sa_numpy.grouping import group_merge_backward, group_merge_forward, group_split_backward, group_split_forward
from sa_numpy.fused import sa_backward_fused, sa_forward_fused
from sa_numpy.layer import random_params
from sa_numpy.shuffle import channel_shuffle_backward, channel_shuffle_forward
from sa_numpy.spatial_gate import spatial_gate_backward, spatial_gate_forward
from sa_numpy.validate import PARAM_NAMES

NUMERIC_RTOL = 1e-7   # analytic vs centred differences with h = 1e-6, in float64
EPS = 1e-3            # the checks pass eps explicitly, larger than the default, so eps mistakes show


class NotAttempted(NotImplementedError):
    """A function of the exercise still raises NotImplementedError."""


class LearnerError(AssertionError):
    """A function of the exercise raised an exception while being checked."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _short_traceback(check):
    """Re-raise a failed check from the check itself, so that the learner sees the message
    and the hint at the bottom of a short traceback rather than the checks' internals."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except (AssertionError, NotImplementedError) as exc:
            failure = exc
        raise failure.with_traceback(None)
    return wrapper


def _where(tb) -> str:
    """The innermost frame of the learner's own code in a traceback, as ' (line N: `src`)'."""
    frames = [f for f in traceback.extract_tb(tb)
              if not f.filename.startswith(_PACKAGE_DIR) and "site-packages" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    src = f" `{f.line.strip()}`" if f.line else ""
    return f"\n  at line {f.lineno} of your {f.name}:{src}"


def _arrays(value):
    """Every ndarray inside a value (arrays, tuples and lists of them, dicts of them)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)


def _call(fn, name: str, args: list[tuple[str, object]], returns: tuple[str, ...], watch=(), **kwargs):
    """Call a learner's function; check it left its array inputs alone and returned ``returns``.

    ``args`` are (label, value) pairs in positional order; arrays inside any argument
    except one labelled "cache", and inside the (label, value) pairs of ``watch`` (a
    backward's cache may hold the forward's inputs), must be unchanged after the call.
    """
    if not callable(fn):
        raise AssertionError(f"{name} should be a function, got {type(fn).__name__}")
    watched = [(label, a, a.copy()) for label, v in (*args, *watch) if label != "cache" for a in _arrays(v)]
    try:
        result = fn(*(v for _, v in args), **kwargs)
    except NotImplementedError:
        raise NotAttempted(f"{name} is not written yet: it still raises NotImplementedError. "
                           f"Replace the `raise NotImplementedError(...)` line with your code.") from None
    except Exception as exc:
        raise LearnerError(f"{name} raised {type(exc).__name__}: {exc}{_where(exc.__traceback__)}") from exc
    for label, arr, before in watched:
        if not np.array_equal(arr, before, equal_nan=True):
            changed = np.argwhere(~((arr == before) | (np.isnan(arr) & np.isnan(before))))[0]
            raise AssertionError(
                f"{name} changed its input {label} in place (first at index {tuple(int(i) for i in changed)})."
                f"\n  hint: never write into an input: `{label} *= ...`, `{label}[...] = ...` or "
                f"`out={label}` modify the caller's array. Compute into a new array instead.")
    expected = returns[0] if len(returns) == 1 else f"a tuple ({', '.join(returns)})"
    if len(returns) > 1:
        if not isinstance(result, (tuple, list)):
            raise AssertionError(f"{name} should return {expected}, got {type(result).__name__}")
        if len(result) != len(returns):
            raise AssertionError(f"{name} should return {expected} ({len(returns)} items), "
                                 f"got a {type(result).__name__} of {len(result)} items")
        return tuple(result)
    return result


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a learner's array matches a candidate (a known mistake) to rounding error."""
    scale = float(np.max(np.abs(b), initial=0.0))
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-8 * scale + 1e-12))


def _diagnose(ours, reference: np.ndarray, mistakes) -> str | None:
    """The hint for a failed comparison: a dtype hint, or the first known mistake (hint, make)
    whose make() the learner's array matches."""
    if not isinstance(ours, np.ndarray):
        return None
    if ours.dtype != reference.dtype:
        return (f"compute in the input's dtype ({reference.dtype}): look for .astype(...), "
                f"np.float32 or an array created without dtype=x.dtype")
    with np.errstate(all="ignore"):
        mine = ours.astype(np.float64)
        return next((text for text, make in mistakes if _close(mine, np.asarray(make(), dtype=np.float64))), None)


def _expect(name: str, ours, reference, mistakes=(), rtol: float | None = None):
    """compare(), with a hint when the learner's array matches a known mistake."""
    if ours is not None and not isinstance(ours, np.ndarray):
        raise AssertionError(f"{name}: got {type(ours).__name__}, expected a numpy.ndarray")
    try:
        return compare(name, ours, reference, rtol=rtol)
    except AssertionError:
        hint = _diagnose(ours, reference, mistakes)
    return compare(name, ours, reference, rtol=rtol, hint=hint)   # fails again, now with the hint


def _not_a_view(name: str, out: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
    for label, arr in inputs.items():
        if np.shares_memory(out, arr):
            raise AssertionError(
                f"{name} shares memory with the input {label}: it is a view of it, so writing into "
                f"one changes the other.\n  hint: reshape and slicing return views when they can; "
                f"return a new array (add .copy())")


def _numeric(f, x: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """Numerical gradient of sum(f(x) * dout) on a private copy of x."""
    return numerical_gradient(f, np.array(x, dtype=np.float64, copy=True), dout)


@dataclass
class _Report:
    """Collects the errors a check measured, for its one line of praise. An error is the largest
    absolute difference divided by the largest entry of the expected tensor."""
    title: str
    ref: float = 0.0
    num: float | None = None

    def expect(self, name: str, ours, expected, mistakes=(), numeric: bool = False):
        """_expect() (at NUMERIC_RTOL against a numerical gradient), and record the error."""
        comparison = _expect(name, ours, expected, mistakes, rtol=NUMERIC_RTOL if numeric else None)
        scale = float(np.max(np.abs(expected), initial=0.0))
        error = comparison.max_abs / scale if scale > 0 else comparison.max_abs
        if numeric:
            self.num = max(self.num or 0.0, error)
        else:
            self.ref = max(self.ref, error)

    def praise(self) -> None:
        fmt = lambda v: f"{v:.0e}" if v else "0"
        num = "" if self.num is None else f", vs numerical gradients {fmt(self.num)}"
        print(f"Correct: {self.title}. Largest relative error vs sa_numpy {fmt(self.ref)}{num}. Well done!")


def _keeps_float32(fn, name: str, args: list[tuple[str, object]], returns: tuple[str, ...], **kwargs):
    """Run a forward on float32 inputs: the output must stay float32."""
    out = _call(fn, name, args, returns, **kwargs)
    first = out[0] if len(returns) > 1 else out
    if isinstance(first, np.ndarray) and first.dtype != np.float32:
        raise AssertionError(f"{returns[0]}: dtype {first.dtype} for float32 input, expected float32\n"
                             f"  hint: keep the input's dtype: create arrays with dtype=x.dtype "
                             f"(np.zeros(shape) is float64) and avoid .astype(np.float64)")


def _rng(seed: int):
    return np.random.default_rng(seed)


def _away_from_zero(rng, shape) -> np.ndarray:
    """Random values with |v| in [0.5, 1.5] and random signs: never a trivial parameter."""
    return rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


def _check_outputs(report: _Report, names, ours, refs, numerics, mistakes: dict, no_alias: dict) -> None:
    """Each output against its numerical gradient (when given), then against the reference."""
    for name, mine, ref, num in zip(names, ours, refs, numerics):
        if num is not None:
            report.expect(f"{name} (vs numerical gradient)", mine, num, mistakes.get(name, ()), numeric=True)
        report.expect(name, mine, ref, mistakes.get(name, ()))
        _not_a_view(name, mine, no_alias)


_SUMMED = "it is shared by every row and pixel, so sum its gradient over all of them"


def _shape_mistakes(name: str, ref: np.ndarray, unsummed=None):
    """Hints every parameter gradient shares: right values in the wrong shape, and, when the
    per-row terms are given, not summed over the rows."""
    reshape = (f"right values, wrong shape: return {name} in the parameter's shape {ref.shape}, "
               f"e.g. with .reshape(param.shape)")
    hints = [(reshape, lambda: ref.reshape(-1)), (reshape, lambda: ref.reshape(1, -1, 1, 1))]
    if unsummed is not None:
        hints.insert(0, (f"{name} must have the shape of the parameter, {ref.shape}: {_SUMMED}", lambda: unsummed))
    return hints


# --------------------------------------------------------------------------- grouping

@_short_traceback
def check_grouping(group_split_forward_fn, group_split_backward_fn,
                   group_merge_forward_fn, group_merge_backward_fn) -> None:
    """Exercise 01: split into groups and halves, merge back, and both backwards."""
    rng = _rng(1)
    b, c, h, w, g = 2, 12, 2, 3, 3
    k = c // (2 * g)
    x = rng.normal(size=(b, c, h, w))
    report = _Report("grouping, split and merge, forward and backward")
    (rx0, rx1), rcache = group_split_forward(x, g)
    xg = x.reshape(b, g, 2 * k, h, w)
    halves_first = x.reshape(b, 2, c // 2, h, w)
    split_mistakes = {
        "x0": [("x0 is the FIRST half of each group (the channel branch) and x1 the second; "
                "you swapped them", lambda: rx1)],
        "x1": [("x1 is the SECOND half of each group; you swapped x0 and x1", lambda: rx0)],
    }
    for i, half in enumerate(("x0", "x1")):
        split_mistakes[half] += [
            ("group first, then split each group in two: reshape to (B*G, 2K, H, W) and take "
             "[:, :K] and [:, K:]. You split all C channels in half first",
             lambda i=i: halves_first[:, i].reshape(b * g, k, h, w)),
            ("row n of the halves is sample n // G, group n % G (sample-major): "
             "x.reshape(B*G, 2K, H, W) gives that order; you put the groups first",
             lambda i=i: xg.transpose(1, 0, 2, 3, 4)[:, :, i * k:(i + 1) * k].reshape(b * g, k, h, w)),
            ("each half is a block of K consecutive channels, not every other channel",
             lambda i=i: xg[:, :, i::2].reshape(b * g, k, h, w)),
            ("merge the batch and group axes: each half has shape (B*G, K, H, W)",
             lambda i=i: xg[:, :, i * k:(i + 1) * k]),
        ]
    halves, cache = _call(group_split_forward_fn, "group_split_forward", [("x", x), ("groups", g)],
                          ("(x0, x1)", "cache"))
    if not isinstance(halves, (tuple, list)) or len(halves) != 2:
        raise AssertionError("group_split_forward should return ((x0, x1), cache): "
                             f"its first item must be a pair, got {type(halves).__name__}")
    for half, ours, ref in (("x0", halves[0], rx0), ("x1", halves[1], rx1)):
        report.expect(half, ours, ref, split_mistakes[half])

    dx0, dx1 = rng.normal(size=rx0.shape), rng.normal(size=rx1.shape)
    rdx = group_split_backward((dx0, dx1), rcache)
    dx = _call(group_split_backward_fn, "group_split_backward",
               [("(dx0, dx1)", (dx0, dx1)), ("cache", cache)], ("dx",), watch=[("x", x)])
    halves_of = lambda v: np.concatenate(group_split_forward(v, g)[0], axis=1)
    numeric = _numeric(halves_of, x, np.concatenate([dx0, dx1], axis=1))
    _check_outputs(report, ("dx",), (dx,), (rdx,), (numeric,), {"dx": [
        ("dx0 goes back to the first half of each group and dx1 to the second; you swapped them",
         lambda: group_split_backward((dx1, dx0), rcache)),
        ("undo the forward exactly: concatenate dx0 and dx1 along the channel axis (axis=1), "
         "then reshape to (B, C, H, W)",
         lambda: np.concatenate([dx0.reshape(b, -1, h, w), dx1.reshape(b, -1, h, w)], axis=1)),
    ]}, {"dx0": dx0, "dx1": dx1})

    y0, y1 = rng.normal(size=rx0.shape), rng.normal(size=rx1.shape)
    ry, rmcache = group_merge_forward(y0, y1, b)
    y, mcache = _call(group_merge_forward_fn, "group_merge_forward",
                      [("y0", y0), ("y1", y1), ("batch", b)], ("y", "cache"))
    report.expect("y", y, ry, [
        ("y0 goes into the first half of each group and y1 into the second; you swapped them",
         lambda: group_merge_forward(y1, y0, b)[0]),
        ("concatenate along the channel axis (axis=1) before reshaping to (B, C, H, W)",
         lambda: np.concatenate([y0, y1], axis=0).reshape(b, c, h, w)),
    ])
    _not_a_view("y", y, {"y0": y0, "y1": y1})

    dy = rng.normal(size=x.shape)
    rdy0, rdy1 = group_merge_backward(dy, rmcache)
    ours = _call(group_merge_backward_fn, "group_merge_backward", [("dout", dy), ("cache", mcache)],
                 ("dy0", "dy1"), watch=[("y0", y0), ("y1", y1)])
    numerics = (_numeric(lambda v: group_merge_forward(v, y1, b)[0], y0, dy),
                _numeric(lambda v: group_merge_forward(y0, v, b)[0], y1, dy))
    swapped = "dy0 is the first half of each group of dout and dy1 the second; you swapped them"
    _check_outputs(report, ("dy0", "dy1"), ours, (rdy0, rdy1), numerics,
                   {"dy0": [(swapped, lambda: rdy1)], "dy1": [(swapped, lambda: rdy0)]}, {"dout": dy})
    report.praise()


# --------------------------------------------------------------------------- channel gate

_DSIG = {"full": lambda s: s * (1 - s), "none": lambda s: 1.0, "sigma": lambda s: s}


def _channel_gate_grads(x0, cw, cb, dout, dsig="full", per_pixel=True, pool_path=True, direct=True):
    """The channel gate's backward, with switches that reproduce known mistakes.

    Returns dx0, and the per-row dcweight and dcbias terms (N, K, 1, 1) before the sum over rows.
    """
    s = x0.mean(axis=(2, 3), keepdims=True)
    sig = sigmoid(cw * s + cb)
    dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * _DSIG[dsig](sig)
    npix = x0.shape[2] * x0.shape[3] if per_pixel else 1
    dx0 = np.broadcast_to((dout * sig if direct else 0) + (dz * cw / npix if pool_path else 0), x0.shape)
    return dx0, dz * s, dz


@_short_traceback
def check_channel_gate(channel_gate_forward_fn, channel_gate_backward_fn) -> None:
    """Exercise 02: the channel gate, forward and backward."""
    rng = _rng(2)
    n, k, h, w = 4, 3, 3, 4
    x0 = rng.normal(size=(n, k, h, w)) + rng.normal(size=(n, k, 1, 1))
    cw, cb = _away_from_zero(rng, (1, k, 1, 1)), rng.normal(size=(1, k, 1, 1))
    report = _Report("channel gate, forward and backward")
    ry0, rcache = channel_gate_forward(x0, cw, cb)
    s = x0.mean(axis=(2, 3), keepdims=True)

    def gate(pooled, affine=lambda p: cw * p + cb):
        """x0 gated by sigmoid(affine(pooled)): the forward, with the pooling or the affine swapped."""
        return x0 * sigmoid(affine(pooled))
    args = [("x0", x0), ("cweight", cw), ("cbias", cb)]
    y0, cache = _call(channel_gate_forward_fn, "channel_gate_forward", args, ("y0", "cache"))
    report.expect("y0", y0, ry0, [
        ("apply the sigmoid: the gate is sigmoid(cweight * s + cbias), not the affine itself",
         lambda: x0 * (cw * s + cb)),
        ("pool first: s is the mean of each channel over its H*W pixels "
         "(x0.mean(axis=(2, 3), keepdims=True)); you gated every pixel by itself", lambda: gate(x0)),
        ("average each channel over its pixels only, axis=(2, 3); you also averaged over the channels",
         lambda: gate(x0.mean(axis=(1, 2, 3), keepdims=True))),
        ("average over the pixels of each row, axis=(2, 3); you also averaged over the batch axis",
         lambda: gate(x0.mean(axis=(0, 2, 3), keepdims=True))),
        ("global AVERAGE pooling: use the mean over (H, W), not the max",
         lambda: gate(x0.max(axis=(2, 3), keepdims=True))),
        ("global AVERAGE pooling: divide the sum over (H, W) by H*W", lambda: gate(s * h * w)),
        ("the affine is per channel (cweight[k] * s[n, k] + cbias[k]), each channel gets its own gate; "
         "you shared one gate across the group's channels (a dot product, as in SE's FC layer)",
         lambda: gate(s, lambda p: (cw * p).sum(axis=1, keepdims=True) + cb)),
        ("add cbias inside the sigmoid", lambda: gate(s, lambda p: cw * p)),
        ("return the gated input x0 * gate, not the gate alone", lambda: sigmoid(cw * s + cb)),
    ])
    _not_a_view("y0", y0, {"x0": x0})
    _keeps_float32(channel_gate_forward_fn, "channel_gate_forward",
                   [(label, v.astype(np.float32)) for label, v in args], ("y0", "cache"))

    dout = rng.normal(size=x0.shape)
    refs = channel_gate_backward(dout, rcache)
    ours = _call(channel_gate_backward_fn, "channel_gate_backward", [("dout", dout), ("cache", cache)],
                 ("dx0", "dcweight", "dcbias"), watch=args)
    numerics = (_numeric(lambda v: channel_gate_forward(v, cw, cb)[0], x0, dout),
                _numeric(lambda v: channel_gate_forward(x0, v, cb)[0], cw, dout),
                _numeric(lambda v: channel_gate_forward(x0, cw, v)[0], cb, dout))
    variant = lambda i, **kw: _channel_gate_grads(x0, cw, cb, dout, **kw)[i]
    no_deriv = ("you dropped the sigmoid's derivative: z goes through the sigmoid, so multiply "
                "by sigmoid(z) * (1 - sigmoid(z))")
    sigma_only = "the sigmoid's derivative is sigmoid(z) * (1 - sigmoid(z)), not sigmoid(z)"
    sum0 = lambda i, **kw: variant(i, **kw).sum(axis=0, keepdims=True)
    mistakes = {
        "dx0": [(no_deriv, lambda: variant(0, dsig="none")), (sigma_only, lambda: variant(0, dsig="sigma")),
                ("s is a MEAN over H*W pixels: the gradient through it is dz * cweight / (H*W) "
                 "at every pixel; you forgot the / (H*W)", lambda: variant(0, per_pixel=False)),
                ("x0 is used twice, as the gated value and inside the mean s: add the term that flows "
                 "back through the pooling, dz * cweight / (H*W)", lambda: variant(0, pool_path=False)),
                ("x0 is used twice: add the direct term dout * gate, the gradient through the gated value",
                 lambda: variant(0, direct=False))],
        "dcweight": [(no_deriv, lambda: sum0(1, dsig="none")), (sigma_only, lambda: sum0(1, dsig="sigma")),
                     ("dz/dcweight is the pooled mean s: dcweight = sum(dz * s)", lambda: sum0(2)),
                     *_shape_mistakes("dcweight", refs[1], variant(1))],
        "dcbias": [(no_deriv, lambda: sum0(2, dsig="none")), (sigma_only, lambda: sum0(2, dsig="sigma")),
                   *_shape_mistakes("dcbias", refs[2], variant(2))],
    }
    _check_outputs(report, ("dx0", "dcweight", "dcbias"), ours, refs, numerics, mistakes, {"dout": dout})
    report.praise()


# --------------------------------------------------------------------------- GroupNorm

def _groupnorm(x, gamma, beta, groups, eps, ddof=0, eps_inside=True, sqrt=True, batch_stats=False):
    """GroupNorm forward with switches that reproduce known mistakes."""
    n, c, h, w = x.shape
    xg = x.transpose(1, 0, 2, 3).reshape(c, 1, -1) if batch_stats else x.reshape(n, groups, -1)
    mean, var = xg.mean(axis=2, keepdims=True), xg.var(axis=2, ddof=ddof, keepdims=True)
    std = (np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps) if sqrt else var + eps
    xhat = (xg - mean) / std
    xhat = xhat.reshape(c, n, h, w).transpose(1, 0, 2, 3) if batch_stats else xhat.reshape(x.shape)
    return xhat * np.reshape(gamma, (-1, 1, 1)) + np.reshape(beta, (-1, 1, 1))


def _groupnorm_dx(dout, cache, mean_term=True, var_term=True, use_gamma=True):
    """GroupNorm's dx from a reference cache, with switches that drop known terms."""
    n, c, h, w = dout.shape
    g = (dout * cache.gamma[:, None, None] if use_gamma else dout).reshape(n, cache.num_groups, -1)
    xg = cache.xhat.reshape(g.shape)
    dx = g - (g.mean(axis=2, keepdims=True) if mean_term else 0) \
        - (xg * (g * xg).mean(axis=2, keepdims=True) if var_term else 0)
    return (dx * cache.rstd[:, :, None]).reshape(dout.shape)


@_short_traceback
def check_groupnorm(groupnorm_forward_fn, groupnorm_backward_fn) -> None:
    """Exercise 03, part 1: GroupNorm for any number of groups, forward and backward."""
    rng = _rng(3)
    n, c, h, w, groups = 3, 6, 3, 3, 3
    x = rng.normal(size=(n, c, h, w)) * rng.uniform(0.5, 2, (1, c, 1, 1)) + rng.normal(size=(n, c, 1, 1))
    gamma, beta = _away_from_zero(rng, c), rng.normal(size=c)
    report = _Report("GroupNorm, forward and backward")
    rout, rcache = groupnorm_forward(x, gamma, beta, groups, eps=EPS)
    gn = lambda **kw: _groupnorm(x, **{"gamma": gamma, "beta": beta, "groups": groups, "eps": EPS, **kw})
    args = [("x", x), ("gamma", gamma), ("beta", beta), ("num_groups", groups)]
    out, cache = _call(groupnorm_forward_fn, "groupnorm_forward", args, ("out", "cache"), eps=EPS)
    report.expect("out", out, rout, [
        ("GroupNorm uses the BIASED variance: divide by the number of elements M, not M - 1 "
         "(np.var's default ddof=0; torch.var defaults to unbiased)", lambda: gn(ddof=1)),
        ("eps goes INSIDE the square root: sqrt(var + eps), not sqrt(var) + eps",
         lambda: gn(eps_inside=False)),
        ("you forgot eps: divide by sqrt(var + eps)", lambda: gn(eps=0.0)),
        ("use the eps argument instead of a fixed 1e-5 (the check passes eps=1e-3)", lambda: gn(eps=1e-5)),
        ("divide by the standard deviation sqrt(var + eps), not by the variance", lambda: gn(sqrt=False)),
        ("the statistics are per (sample, group): reshape to (N, num_groups, -1) and reduce over the "
         "last axis. You used all of (C, H, W), i.e. layer norm", lambda: gn(groups=1)),
        ("the statistics are per (sample, group) of C/num_groups channels; you normalised each channel "
         "alone (instance norm)", lambda: gn(groups=c)),
        ("the statistics are per sample: you reduced over the batch axis (batch norm)",
         lambda: gn(batch_stats=True)),
        ("apply the per-channel affine: out = gamma[c] * xhat + beta[c]",
         lambda: gn(gamma=np.ones(c), beta=np.zeros(c))),
    ])
    _not_a_view("out", out, {"x": x})
    _keeps_float32(groupnorm_forward_fn, "groupnorm_forward",
                   [(label, v.astype(np.float32) if isinstance(v, np.ndarray) else v) for label, v in args],
                   ("out", "cache"), eps=EPS)

    dout = rng.normal(size=x.shape)
    refs = groupnorm_backward(dout, rcache)
    ours = _call(groupnorm_backward_fn, "groupnorm_backward", [("dout", dout), ("cache", cache)],
                 ("dx", "dgamma", "dbeta"), watch=args)
    fwd = lambda xx=x, gg=gamma, bb=beta: groupnorm_forward(xx, gg, bb, groups, eps=EPS)[0]
    numerics = (_numeric(lambda v: fwd(xx=v), x, dout), _numeric(lambda v: fwd(gg=v), gamma, dout),
                _numeric(lambda v: fwd(bb=v), beta, dout))
    dx = lambda **kw: _groupnorm_dx(dout, rcache, **kw)
    mistakes = {
        "dx": [("the mean and the variance depend on x too: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) "
                "with g = dout * gamma and means over each group; you dropped both mean-subtraction terms",
                lambda: dx(mean_term=False, var_term=False)),
               ("you dropped the term from the variance, - xhat * mean(g * xhat)", lambda: dx(var_term=False)),
               ("you dropped the term from the mean, - mean(g)", lambda: dx(mean_term=False)),
               ("the gradient reaching xhat is g = dout * gamma: multiply by gamma first",
                lambda: dx(use_gamma=False))],
        "dgamma": [("gamma multiplies xhat, the NORMALISED input: dgamma = sum(dout * xhat)",
                    lambda: (dout * x).sum(axis=(0, 2, 3))),
                   *_shape_mistakes("dgamma", refs[1], (dout * rcache.xhat).sum(axis=(2, 3)))],
        "dbeta": _shape_mistakes("dbeta", refs[2], dout.sum(axis=(2, 3))),
    }
    _check_outputs(report, ("dx", "dgamma", "dbeta"), ours, refs, numerics, mistakes, {"dout": dout})
    report.praise()


# --------------------------------------------------------------------------- spatial gate

def _spatial_gate(x1, sw, sb, gw, gb, eps, gn_groups=None, normalise=True, sig=True, gate_normalised=False,
                  **gn_kw):
    """The spatial gate's forward with switches that reproduce known mistakes."""
    nrm = _groupnorm(x1, gw, gb, gn_groups or x1.shape[1], eps, **gn_kw) if normalise else x1
    z = sw * nrm + sb
    return (nrm if gate_normalised else x1) * (sigmoid(z) if sig else z)


def _spatial_gate_grads(x1, sw, sb, gw, gb, eps, dout, dsig="full", direct=True, gate_path=True,
                        gn_mean_terms=True):
    """The spatial gate's backward with switches; parameter gradients are per element (unsummed)."""
    nrm, gcache = groupnorm_forward(x1, gw, gb, x1.shape[1], eps)
    sig = sigmoid(sw * nrm + sb)
    dz = dout * x1 * _DSIG[dsig](sig)
    dxn = _groupnorm_dx(dz * sw, gcache, mean_term=gn_mean_terms, var_term=gn_mean_terms)
    dx1 = (dout * sig if direct else 0) + (dxn if gate_path else 0)
    return dx1, dz * nrm, dz, dz * sw * gcache.xhat, dz * sw


@_short_traceback
def check_spatial_gate(spatial_gate_forward_fn, spatial_gate_backward_fn) -> None:
    """Exercise 03, part 2: the spatial gate (GroupNorm with one group per channel), both passes."""
    rng = _rng(4)
    n, k, h, w = 4, 3, 3, 3
    x1 = rng.normal(size=(n, k, h, w)) * rng.uniform(0.5, 2, (1, k, 1, 1)) + rng.normal(size=(n, k, 1, 1))
    sw, sb = _away_from_zero(rng, (1, k, 1, 1)), rng.normal(size=(1, k, 1, 1))
    gw, gb = _away_from_zero(rng, k), rng.normal(size=k)
    params = (sw, sb, gw, gb)
    report = _Report("spatial gate, forward and backward")
    ry1, rcache = spatial_gate_forward(x1, *params, eps=EPS)
    sg = lambda **kw: _spatial_gate(x1, *params, EPS, **kw)
    labels = ("sweight", "sbias", "gn_weight", "gn_bias")
    args = [("x1", x1), *zip(labels, params)]
    y1, cache = _call(spatial_gate_forward_fn, "spatial_gate_forward", args, ("y1", "cache"), eps=EPS)
    report.expect("y1", y1, ry1, [
        ("normalise x1 first: z = sweight * GroupNorm(x1) + sbias", lambda: sg(normalise=False)),
        ("use one GroupNorm group per channel (num_groups = K, an instance norm); you used one group "
         "for all K channels", lambda: sg(gn_groups=1)),
        ("apply the sigmoid: the gate is sigmoid(sweight * n + sbias)", lambda: sg(sig=False)),
        ("gate the input x1, not its normalised version: y1 = x1 * sigmoid(z)", lambda: sg(gate_normalised=True)),
        ("GroupNorm uses the BIASED variance: divide by H*W, not H*W - 1", lambda: sg(ddof=1)),
        ("eps goes INSIDE the square root: sqrt(var + eps)", lambda: sg(eps_inside=False)),
        ("use the eps argument; the check passes eps=1e-3", lambda: _spatial_gate(x1, *params, 1e-5)),
        ("apply GroupNorm's own affine, gn_weight * xhat + gn_bias, before sweight and sbias",
         lambda: _spatial_gate(x1, sw, sb, np.ones(k), np.zeros(k), EPS)),
    ])
    _not_a_view("y1", y1, {"x1": x1})
    _keeps_float32(spatial_gate_forward_fn, "spatial_gate_forward",
                   [(label, v.astype(np.float32)) for label, v in args], ("y1", "cache"), eps=EPS)

    dout = rng.normal(size=x1.shape)
    names = ("dx1", "dsweight", "dsbias", "dgn_weight", "dgn_bias")
    refs = spatial_gate_backward(dout, rcache)
    ours = _call(spatial_gate_backward_fn, "spatial_gate_backward", [("dout", dout), ("cache", cache)], names,
                 watch=args)

    def fwd_with(i):
        def f(v):
            inputs = [x1, *params]
            inputs[i] = v
            return spatial_gate_forward(*inputs, eps=EPS)[0]
        return f
    numerics = tuple(_numeric(fwd_with(i), v, dout) for i, v in enumerate((x1, *params)))
    variant = lambda i, **kw: _spatial_gate_grads(x1, *params, EPS, dout, **kw)[i]
    summed = lambda i, **kw: variant(i, **kw).sum(axis=(0, 2, 3)).reshape(refs[i].shape)
    no_deriv = ("you dropped the sigmoid's derivative: multiply by sigmoid(z) * (1 - sigmoid(z))")
    mistakes = {
        "dx1": [(no_deriv, lambda: variant(0, dsig="none")),
                ("x1 is used twice, as the gated value and inside the gate: add the direct term "
                 "dout * sigmoid(z)", lambda: variant(0, direct=False)),
                ("x1 is used twice: add the term that flows back through the gate and GroupNorm",
                 lambda: variant(0, gate_path=False)),
                ("in GroupNorm's backward, keep the two mean-subtraction terms (from the mean and the "
                 "variance): rstd * (g - mean(g) - xhat * mean(g * xhat))",
                 lambda: variant(0, gn_mean_terms=False))],
    }
    for i, name in enumerate(names[1:], start=1):
        mistakes[name] = [(no_deriv, lambda i=i: summed(i, dsig="none")),
                          *_shape_mistakes(name, refs[i], variant(i).sum(axis=(2, 3)))]
    mistakes["dsweight"].insert(1, ("sweight multiplies the normalised n, not x1: dsweight = sum(dz * n)",
                                    lambda: (variant(2) * x1).sum(axis=(0, 2, 3)).reshape(refs[1].shape)))
    _check_outputs(report, names, ours, refs, numerics, mistakes, {"dout": dout})
    report.praise()


# --------------------------------------------------------------------------- channel shuffle

@_short_traceback
def check_shuffle(channel_shuffle_forward_fn, channel_shuffle_backward_fn) -> None:
    """Exercise 04: channel shuffle and its inverse, for several numbers of groups."""
    rng = _rng(5)
    b, c, h, w = 2, 12, 2, 2
    report = _Report("channel shuffle, forward and backward")
    shuffle = lambda v, groups: channel_shuffle_forward(v, groups)[0]
    for groups in (2, 3, 1):
        x = rng.normal(size=(b, c, h, w))
        tag = f" (groups={groups})"
        rout, rcache = channel_shuffle_forward(x, groups)
        out, cache = _call(channel_shuffle_forward_fn, "channel_shuffle_forward",
                           [("x", x), ("groups", groups)], ("out", "cache"))
        mistakes = [("you returned the channels in their original order: view x as (B, groups, C/groups, "
                     "H, W), swap axes 1 and 2, and flatten back", lambda: x),
                    ("that is the INVERSE shuffle (the backward): view x as (B, groups, C/groups, H, W), "
                     "not (B, C/groups, groups, H, W)", lambda: shuffle(x, c // groups))]
        if groups != 2:
            mistakes.append(("use the groups argument; you always shuffled with 2 groups",
                             lambda: shuffle(x, 2)))
        report.expect("out" + tag, out, rout, mistakes)
        _not_a_view("out" + tag, out, {"x": x})

        dout = rng.normal(size=x.shape)
        rdx = channel_shuffle_backward(dout, rcache)
        dx = _call(channel_shuffle_backward_fn, "channel_shuffle_backward", [("dout", dout), ("cache", cache)],
                   ("dx",), watch=[("x", x)])
        numeric = _numeric(lambda v: shuffle(v, groups), x, dout)
        _check_outputs(report, ("dx" + tag,), (dx,), (rdx,), (numeric,), {"dx" + tag: [
            ("the backward of a permutation is its INVERSE: shuffle dout with C/groups groups "
             "(or write dout back where each channel came from); you shuffled it forward again",
             lambda: shuffle(dout, groups)),
            ("dout arrives in the shuffled order: un-shuffle it (the inverse permutation)", lambda: dout),
        ]}, {"dout": dout})
    report.praise()


# --------------------------------------------------------------------------- the whole layer

def _layer(x, p, groups, eps, shuffle_groups=2, swap_branches=False, swap_merge=False):
    """The layer composed from the reference parts, with switches that reproduce known mistakes."""
    (x0, x1), _ = group_split_forward(x, groups)
    if swap_branches:
        x0, x1 = x1, x0
    y0 = channel_gate_forward(x0, p["cweight"], p["cbias"])[0]
    y1 = spatial_gate_forward(x1, p["sweight"], p["sbias"], p["gn.weight"], p["gn.bias"], eps)[0]
    y = group_merge_forward(*((y1, y0) if swap_merge else (y0, y1)), x.shape[0])[0]
    return channel_shuffle_forward(y, shuffle_groups)[0] if shuffle_groups else y


@_short_traceback
def check_sa_layer(sa_forward_fn, sa_backward_fn) -> None:
    """Exercise 05: the whole layer, composed from the parts, forward and backward."""
    rng = _rng(6)
    b, c, h, w, groups = 2, 24, 3, 3, 3
    x = rng.normal(size=(b, c, h, w)) + rng.normal(size=(b, c, 1, 1))
    params = random_params(c, groups, np.float64, seed=7)
    report = _Report("Shuffle Attention layer, forward and backward")
    rout, rcache = sa_forward_fused(x, params, groups, eps=EPS)
    layer = lambda **kw: _layer(x, params, groups, **{"eps": EPS, **kw})
    args = [("x", x), ("params", params), ("groups", groups)]
    out, cache = _call(sa_forward_fn, "sa_forward", args, ("out", "cache"), eps=EPS)
    report.expect("out", out, rout, [
        ("you forgot the channel shuffle at the end: channel_shuffle_forward(y, 2)",
         lambda: layer(shuffle_groups=None)),
        ("the final shuffle uses 2 groups (the two branches), not G", lambda: layer(shuffle_groups=groups)),
        ("that is the inverse shuffle: the layer ends with channel_shuffle_forward(y, 2)",
         lambda: layer(shuffle_groups=c // 2)),
        ("x0 (first half of each group) goes to the CHANNEL gate and x1 to the SPATIAL gate; "
         "you swapped the branches", lambda: layer(swap_branches=True)),
        ("merge in the order (y0, y1): channel branch first; you swapped them", lambda: layer(swap_merge=True)),
        ("pass the eps argument on to the spatial gate; the check passes eps=1e-3", lambda: layer(eps=1e-5)),
    ])
    _not_a_view("out", out, {"x": x})
    _keeps_float32(sa_forward_fn, "sa_forward",
                   [("x", x.astype(np.float32)), ("params", {n: v.astype(np.float32) for n, v in params.items()}),
                    ("groups", groups)], ("out", "cache"), eps=EPS)

    dout = rng.normal(size=x.shape)
    rdx, rgrads = sa_backward_fused(dout, rcache)
    dx, grads = _call(sa_backward_fn, "sa_backward", [("dout", dout), ("cache", cache)], ("dx", "grads"),
                      watch=args)
    if not isinstance(grads, dict) or set(grads) != set(PARAM_NAMES):
        keys = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
        raise AssertionError(f"grads: expected a dict with exactly the keys {list(PARAM_NAMES)}, got {keys}")
    names = ("dx", *(f"grads[{n!r}]" for n in PARAM_NAMES))

    def fwd_with(name):
        return lambda v: sa_forward_fused(v, params, groups, eps=EPS)[0] if name is None else \
            sa_forward_fused(x, {**params, name: v}, groups, eps=EPS)[0]
    numerics = (_numeric(fwd_with(None), x, dout), *(_numeric(fwd_with(n), params[n], dout) for n in PARAM_NAMES))
    # the backward is linear in dout: a wrong un-shuffle of dout is the right backward of another dout
    shuffled = lambda v: channel_shuffle_forward(v, 2)[0]
    as_tuple = lambda dx_grads: (dx_grads[0], *(dx_grads[1][n] for n in PARAM_NAMES))
    unshuffle_mistakes = [
        ("the forward ends with a shuffle, so the backward starts by un-shuffling dout "
         "(channel_shuffle_backward); you skipped it", as_tuple(sa_backward_fused(shuffled(dout), rcache))),
        ("un-shuffle dout with the INVERSE permutation (channel_shuffle_backward), not with the forward "
         "shuffle", as_tuple(sa_backward_fused(shuffled(shuffled(dout)), rcache)))]
    mistakes = {name: [(hint, lambda v=values[i]: v) for hint, values in unshuffle_mistakes]
                for i, name in enumerate(names)}
    for name, pname in zip(names[1:], PARAM_NAMES):
        mistakes[name] += _shape_mistakes(name, rgrads[pname])
    refs = (rdx, *(rgrads[n] for n in PARAM_NAMES))
    ours = (dx, *(grads[n] for n in PARAM_NAMES))
    _check_outputs(report, names, ours, refs, numerics, mistakes, {"dout": dout})
    report.praise()


# --------------------------------------------------------------------------- the exercises

@dataclass(frozen=True)
class Exercise:
    """One exercise notebook: its title, its points and its checks with the functions each takes."""
    title: str
    points: int
    checks: tuple


EXERCISES = {
    "01_grouping": Exercise("Feature grouping", 2, (
        (check_grouping, ("group_split_forward", "group_split_backward",
                          "group_merge_forward", "group_merge_backward")),)),
    "02_channel_gate": Exercise("Channel gate", 2, (
        (check_channel_gate, ("channel_gate_forward", "channel_gate_backward")),)),
    "03_spatial_gate": Exercise("GroupNorm and spatial gate", 3, (
        (check_groupnorm, ("groupnorm_forward", "groupnorm_backward")),
        (check_spatial_gate, ("spatial_gate_forward", "spatial_gate_backward")))),
    "04_shuffle": Exercise("Channel shuffle", 1, (
        (check_shuffle, ("channel_shuffle_forward", "channel_shuffle_backward")),)),
    "05_sa_layer": Exercise("The whole layer", 2, (
        (check_sa_layer, ("sa_forward", "sa_backward")),)),
}


def stub_message(function: str) -> str:
    """The text of the NotImplementedError in an exercise's stub for ``function``."""
    return f"{function} is yours to write: replace this line with your code"


def run_exercise(exercise: str, namespace: dict) -> None:
    """Run every check of one exercise on the functions defined in ``namespace``
    (a notebook's ``globals()``). Raises like the checks do."""
    if exercise not in EXERCISES:
        raise KeyError(f"exercise={exercise!r} is not one of {list(EXERCISES)}")
    for check, names in EXERCISES[exercise].checks:
        missing = [n for n in names if n not in namespace]
        if missing:
            raise AssertionError(f"{', '.join(missing)} not defined: run the cell that defines "
                                 f"{'it' if len(missing) == 1 else 'them'} and keep the given name")
        check(*(namespace[n] for n in names))
