"""Small numerical helpers used by several parts."""
from __future__ import annotations

import functools

import numpy as np


def quiet_nonfinite(fn):
    """Let NaN and inf flow through ``fn`` the way they flow through torch: into the
    result, without a RuntimeWarning (inf - inf, 0 * inf, overflow in exp or in a sum)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return fn(*args, **kwargs)
    return wrapper


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-z)), without overflow warnings for very negative z."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def sigmoid_(z: np.ndarray) -> np.ndarray:
    """In-place sigmoid of a float array, as 1 / (1 + exp(-z)): four passes, no temporary.

    Not (1 + tanh(z/2)) / 2, which is faster here but loses all relative accuracy where the
    gate is small (z < -10 in float32: 1 + tanh rounds to a few ulps). Returns z."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        np.reciprocal(z, out=z)
    return z
