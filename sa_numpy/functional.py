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
    """In-place sigmoid of a float array, as (1 + tanh(z/2)) / 2: four passes, no temporary,
    no overflow for any z (tanh saturates). Returns z."""
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z
