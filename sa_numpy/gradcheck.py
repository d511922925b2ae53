"""Gradient checking: numerical gradients, ``rel_error`` and ``compare``.

``compare`` is the check every test and every exercise uses. It looks at the shape and
the dtype first (most mistakes show up there), then at the values, and raises an
``AssertionError`` that says which tensor, by how much, and where it first differs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validate import to_numpy


def numerical_gradient(f, x: np.ndarray, dout: np.ndarray | None = None, h: float = 1e-6) -> np.ndarray:
    """Centred-difference gradient of ``sum(f(x) * dout)`` with respect to x.

    f is called with x perturbed in place one element at a time (x is restored after
    each step), so it costs 2 * x.size calls: use small inputs, and float64.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x has dtype {x.dtype}; numerical gradients need a floating-point array")
    if dout is None:
        dout = np.ones_like(np.asarray(f(x)))
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    for i in range(flat.size):           # one element at a time: that is what "numerical" means
        old = flat[i]
        flat[i] = old + h
        plus = np.sum(np.asarray(f(x), dtype=np.float64) * dout)
        flat[i] = old - h
        minus = np.sum(np.asarray(f(x), dtype=np.float64) * dout)
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad.astype(x.dtype)


def rel_error(a, b) -> float:
    """CS231n's relative error: max |a - b| / max(1e-8, |a| + |b|)."""
    a, b = np.asarray(to_numpy(a, "a"), np.float64), np.asarray(to_numpy(b, "b"), np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))


@dataclass(frozen=True)
class Comparison:
    """The result of a passing :func:`compare`, one row of a cmp-style table."""
    name: str
    max_abs: float
    max_rel: float

    def __str__(self) -> str:
        return f"{self.name:<12} | max abs diff {self.max_abs:.2e} | max rel diff {self.max_rel:.2e} | ok"


def default_rtol(dtype) -> float:
    """1e-10 for float64, 1e-4 for float32 (what float32 rounding leaves after a few passes)."""
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-4


def compare(name: str, ours, reference, rtol: float | None = None, atol: float | None = None,
            hint: str | None = None, check_dtype: bool = True) -> Comparison:
    """Check ``ours`` against ``reference`` (NumPy array or torch tensor).

    Order of checks: type, shape, dtype, non-finite values, then values. Two arrays agree
    when ``|ours - ref| <= atol + rtol * |ref|`` everywhere. ``atol`` defaults to
    ``rtol * max|ref|`` plus 100 units in the last place of 1.0 for the dtype, so values
    near zero are judged on the tensor's own scale, and a gradient that is zero in exact
    arithmetic (say dgn.weight when H = W = 1) is not failed for the rounding noise of a
    short sum. A long sum leaves more noise (torch's dgn.weight at H = W = 1 summed over
    B*G = 64 rows: 3e-14): pass an atol on the scale of the data then.
    Raises AssertionError naming the tensor; returns a :class:`Comparison` otherwise.
    """
    def fail(msg: str):
        raise AssertionError(f"{name}: {msg}" + (f"\n  hint: {hint}" if hint else ""))

    if ours is None:
        fail("got None; did the function forget to return it?")
    if isinstance(ours, tuple):
        fail(f"got a tuple of {len(ours)} items, expected one array")
    ref = to_numpy(reference, f"{name} (reference)")
    try:
        mine = to_numpy(ours, name)
    except TypeError as exc:
        fail(str(exc))
    if mine.shape != ref.shape:
        fail(f"shape {mine.shape} differs from the expected {ref.shape}")
    if check_dtype and mine.dtype != ref.dtype:
        fail(f"dtype {mine.dtype} differs from the expected {ref.dtype}")
    if not np.issubdtype(mine.dtype, np.number) or mine.dtype == np.bool_:
        fail(f"dtype {mine.dtype} is not numeric")
    if rtol is None:
        rtol = default_rtol(ref.dtype)
    a, b = mine.astype(np.float64), ref.astype(np.float64)
    bad_nan = np.isnan(a) != np.isnan(b)
    if bad_nan.any():
        idx = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        fail(f"NaN where the reference has none (or the reverse) at index {idx}: "
             f"ours {float(a[idx])}, expected {float(b[idx])}; {int(bad_nan.sum())} such entries")
    finite = np.isfinite(a) & np.isfinite(b)
    same_special = ~finite & ((a == b) | (np.isnan(a) & np.isnan(b)))
    diff = np.where(finite, np.abs(a - b), np.where(same_special, 0.0, np.inf))
    scale = float(np.max(np.abs(np.where(np.isfinite(b), b, 0.0)), initial=0.0))
    if atol is None:
        atol = rtol * scale + 100 * float(np.finfo(ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64).eps)
    max_abs = float(np.max(diff, initial=0.0))
    rel = diff / np.maximum(np.abs(b), atol if atol > 0 else np.finfo(np.float64).tiny)
    rel = np.where(diff == 0, 0.0, rel)
    max_rel = float(np.max(rel, initial=0.0))
    bad = diff > atol + rtol * np.abs(np.where(np.isfinite(b), b, 0.0))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        fail(f"values differ: max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e} "
             f"(tolerance rtol={rtol:g}, atol={atol:.1e}); {int(bad.sum())} of {bad.size} entries off; "
             f"first at index {idx}: ours {a[idx]:.10g}, expected {b[idx]:.10g}")
    return Comparison(name, max_abs, max_rel)
