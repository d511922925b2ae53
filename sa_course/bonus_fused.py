"""The bonus of exercise 05: a fused forward, checked against your own chain and timed against it.

Your chain of parts (``sa_forward``) makes a new array at almost every step: the
normalised ``x1``, its affine, the gate, the merged ``y``, the shuffled copy. The fused
forward computes the same output with fewer passes over memory:

- GroupNorm's affine and the gate's affine fold into one per-channel affine,
  ``sigmoid(a * (x1 - mu) + b)`` with ``a = sweight * gn.weight * r`` (one value per
  row and channel, ``r = 1 / sqrt(v + eps)``) and ``b = sweight * gn.bias + sbias``;
- each branch writes its result straight into its shuffled place in the output, so
  neither the merged ``y`` nor a shuffled copy of it is ever built.

:func:`check_fused` compares your ``sa_forward_fused`` with your ``sa_forward`` (itself
checked against ``sa_numpy`` first) for an odd and an even number of groups, names the
known mistakes, and prints how long each takes. An untouched stub is not an error: the bonus is
optional, so the check says it was not attempted and lets the notebook go on to the finale. Shapes: x, out (B, C, H, W); G groups;
K = C // (2G); P = H * W.
"""
from __future__ import annotations

import time

import numpy as np

from sa_numpy import channel_shuffle_forward, compare, random_params, sa_forward
from sa_numpy.functional import sigmoid

EPS = 1e-3        # passed explicitly and larger than the default, so that a dropped eps shows
RTOL = 1e-10      # float64: the two orders of summation agree to rounding


def _fused(x, params, groups, eps, shuffle="2", scale="right", shift="right", swap=False, ddof=0):
    """The fused forward with switches that reproduce known mistakes (for the hints)."""
    b, c, h, w = x.shape
    k = c // (2 * groups)
    p = {name: np.reshape(v, (1, 1, k, 1)) for name, v in params.items()}
    xg = x.reshape(b, groups, 2, k, h * w)
    x0, x1 = (xg[:, :, 1], xg[:, :, 0]) if swap else (xg[:, :, 0], xg[:, :, 1])
    y0 = x0 * sigmoid(p["cweight"] * x0.mean(axis=-1, keepdims=True) + p["cbias"])
    centred = x1 - x1.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(centred.var(axis=-1, ddof=ddof, keepdims=True) + eps)
    a = {"right": p["sweight"] * p["gn.weight"] * rstd, "no sweight": p["gn.weight"] * rstd,
         "no rstd": p["sweight"] * p["gn.weight"]}[scale]
    bias = {"right": p["sweight"] * p["gn.bias"] + p["sbias"], "no sweight": p["gn.bias"] + p["sbias"],
            "no sbias": p["sweight"] * p["gn.bias"]}[shift]
    y1 = x1 * sigmoid(a * centred + bias)
    y = np.stack([y0, y1], axis=2).reshape(b, c, h, w)           # y in group order
    shuffles = {"none": None, "2": 2, "G": groups, "inverse": c // 2}
    return y if shuffles[shuffle] is None else channel_shuffle_forward(y, shuffles[shuffle])[0]


def _mistakes(x, params, groups):
    fused = lambda **kw: (lambda: _fused(x, params, groups, **{"eps": EPS, **kw}))
    return [
        ("this is y in the order of the groups: the shuffle is missing. y's channel c belongs in "
         "output channel 2 * (c % (C/2)) + c // (C/2)", fused(shuffle="none")),
        ("the layer's shuffle uses 2 groups (the two halves of the channels), not G", fused(shuffle="G")),
        ("that is the inverse shuffle: y's channel c goes TO output channel 2 * (c % (C/2)) + c // (C/2); "
         "you read it FROM there", fused(shuffle="inverse")),
        ("x0, the first K channels of every group, goes to the CHANNEL gate and x1 to the SPATIAL gate; "
         "you swapped them", fused(swap=True)),
        ("the folded shift is sweight * gn.bias + sbias: GroupNorm's shift passes through the gate's "
         "weight too", fused(shift="no sweight")),
        ("the folded shift is sweight * gn.bias + sbias: you left out sbias", fused(shift="no sbias")),
        ("the folded scale is sweight * gn.weight * r: you left out sweight", fused(scale="no sweight")),
        ("the folded scale is sweight * gn.weight * r with r = 1 / sqrt(v + eps) per row and channel: "
         "you left out r", fused(scale="no rstd")),
        ("the variance divides by P = H * W, not P - 1 (np.var's default ddof=0)", fused(ddof=1)),
        ("pass eps on: the check calls sa_forward_fused(x, params, groups, eps=1e-3)",
         lambda: _fused(x, params, groups, 1e-5)),
    ]


def _out(result, name: str):
    """The output array, whether the function returns ``out`` or ``(out, cache)``."""
    if isinstance(result, tuple) and result:
        result = result[0]
    if not isinstance(result, np.ndarray):
        raise AssertionError(f"{name} should return out, a numpy.ndarray (or (out, cache)); "
                             f"got {type(result).__name__}")
    return result


class _NotAttempted(Exception):
    """The learner's sa_forward_fused still raises NotImplementedError."""


def _call(fn, name: str, x, params, groups, optional: bool = False):
    try:
        return _out(fn(x, params, groups, eps=EPS), name)
    except NotImplementedError:
        if optional:
            raise _NotAttempted from None
        raise NotImplementedError(f"{name} is not written yet: replace the `raise NotImplementedError(...)` "
                                  f"line with your code") from None
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}") from exc


def _hint(ours, mistakes):
    for text, make in mistakes:
        candidate = make()
        if ours.shape == candidate.shape and np.allclose(ours, candidate, rtol=1e-8, atol=1e-12):
            return text
    return None


def _best_time(fn, *args, repeats: int = 5, **kwargs) -> float:
    """Seconds per call, the best of ``repeats`` runs (after one warm-up call)."""
    fn(*args, **kwargs)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def check_fused(fused_fn, chain_fn, timing_shape=(8, 128, 16, 16), timing_groups: int = 8) -> None:
    """Bonus check: your ``sa_forward_fused(x, params, groups, eps)`` against your own
    ``sa_forward``, for G = 3 and G = 4, then both timed on ``timing_shape``.

    Raises AssertionError naming what differs (with a hint for a known mistake); prints one
    line with the two times and the speed-up otherwise, or, while ``sa_forward_fused`` is still
    the stub, one line saying that this optional part was not attempted.
    """
    try:
        _check_fused(fused_fn, chain_fn, timing_shape, timing_groups)
    except _NotAttempted:
        print("Optional, not attempted: sa_forward_fused is still the stub. The bonus is not graded; to try it, "
              "replace its `raise NotImplementedError(...)` line with your code and run this cell again.")


def _check_fused(fused_fn, chain_fn, timing_shape, timing_groups) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 24, 3, 3)) + rng.normal(size=(2, 24, 1, 1))
    worst = 0.0
    for groups in (3, 4):
        params = random_params(24, groups, np.float64, seed=12 + groups)
        chain = _call(chain_fn, "your sa_forward", x, params, groups)
        try:
            compare(f"your sa_forward (G={groups})", chain, sa_forward(x, params, groups, eps=EPS)[0], rtol=RTOL)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n  hint: the bonus compares with your sa_forward, so that must be right "
                                 f"first: make check_sa_layer(sa_forward, sa_backward) pass") from None
        before = x.copy()
        out = _call(fused_fn, "sa_forward_fused", x, params, groups, optional=True)
        if not np.array_equal(x, before):
            raise AssertionError("sa_forward_fused changed its input x in place: compute into a new array")
        if np.shares_memory(out, x):
            raise AssertionError("sa_forward_fused returned a view of x: the output must be a new array")
        name = f"sa_forward_fused out (G={groups}) vs your sa_forward"
        try:
            comparison = compare(name, out, chain, rtol=RTOL)
        except AssertionError:
            comparison = compare(name, out, chain, rtol=RTOL, hint=_hint(np.asarray(out, np.float64),
                                                                       _mistakes(x, params, groups)))
        worst = max(worst, comparison.max_rel)
    out32 = _call(fused_fn, "sa_forward_fused", x.astype(np.float32),
                  {n: v.astype(np.float32) for n, v in params.items()}, groups)
    if out32.dtype != np.float32:
        raise AssertionError(f"sa_forward_fused: dtype {out32.dtype} for a float32 input, expected float32"
                             f"\n  hint: keep the input's dtype: np.empty_like(x), not np.empty(shape)")

    big = rng.normal(size=timing_shape)
    params = random_params(timing_shape[1], timing_groups, np.float64, seed=13)
    chain_s = _best_time(chain_fn, big, params, timing_groups, eps=EPS)
    fused_s = _best_time(fused_fn, big, params, timing_groups, eps=EPS)
    ratio = chain_s / fused_s
    verdict = (f"{ratio:.1f}x faster" if ratio >= 1.05 else
               f"no faster ({ratio:.2f}x): count the arrays your fused version creates; each is a pass over memory")
    print(f"Correct: your fused forward equals your sa_forward (largest relative difference "
          f"{worst:.0e}, G = 3 and 4).\nTime per call on x {tuple(timing_shape)}, G = {timing_groups}: "
          f"your sa_forward {chain_s * 1e3:.2f} ms, your sa_forward_fused {fused_s * 1e3:.2f} ms: {verdict}.")
