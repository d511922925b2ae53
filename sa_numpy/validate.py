"""Input checks shared by every part. Each error names the offending value and the rule.

Checking happens once, at the boundary of each public function, so that a learner sees
``channels=48 is not divisible by 2*groups=32`` rather than a broadcasting error from
deep inside NumPy.
"""
from __future__ import annotations

import numbers

import numpy as np

PARAM_NAMES = ("cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias")


def check_channels_groups(channels, groups) -> int:
    """Return K = channels // (2*groups) after checking that the split is possible."""
    for name, value in (("channels", channels), ("groups", groups)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}={value!r} must be an integer")
    if groups < 1:
        raise ValueError(f"groups={groups} must be at least 1")
    if channels < 1:
        raise ValueError(f"channels={channels} must be at least 1")
    if channels % (2 * groups):
        raise ValueError(f"channels={channels} is not divisible by 2*groups={2 * groups}: "
                         f"each group is split into two halves of equal size")
    return channels // (2 * groups)


def check_group_count(groups, channels: int, name: str = "groups") -> int:
    """Check that ``groups`` is a positive integer that divides ``channels``; return it."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"{name}={groups!r} must be an integer")
    if groups < 1:
        raise ValueError(f"{name}={groups} must be at least 1")
    if channels % groups:
        raise ValueError(f"channels={channels} is not divisible by {name}={groups}")
    return int(groups)


def check_eps(eps) -> float:
    """GroupNorm's eps must be a positive finite number: it keeps 1/sqrt(var + eps) finite."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps={eps!r} must be a real number, e.g. 1e-5")
    if not (0 < eps < float("inf")):
        raise ValueError(f"eps={eps} must be a positive finite number: GroupNorm divides by sqrt(var + eps)")
    return float(eps)


def check_keys(mapping, what: str) -> None:
    """A parameter mapping must have exactly the six official names, no more, no fewer."""
    if not hasattr(mapping, "keys"):
        raise TypeError(f"{what} must be a dict keyed by {list(PARAM_NAMES)}, got {type(mapping).__name__}")
    missing = [n for n in PARAM_NAMES if n not in mapping]
    unexpected = [n for n in mapping.keys() if n not in PARAM_NAMES]
    if missing or unexpected:
        raise ValueError(f"{what}: missing keys {missing}, unexpected keys {unexpected}; "
                         f"an SA layer has exactly {list(PARAM_NAMES)}")


def to_numpy(value, name: str) -> np.ndarray:
    """Accept a NumPy array, a nested list or a torch tensor (duck-typed: torch is never imported)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists, objects
        raise TypeError(f"{name} must be an array, got {type(value).__name__}") from exc


def check_float_array(x, name: str = "x", ndim: int | None = 4) -> np.ndarray:
    """Check that x is a float32 or float64 ndarray with ``ndim`` axes; return it unchanged.

    float16 is refused: its sums over H*W pixels lose most of their digits.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} has dtype {x.dtype}; it must be a floating-point array "
                        f"(float32 or float64), e.g. {name}.astype(np.float32)")
    if ndim is not None and x.ndim != ndim:
        axes = "(B, C, H, W)" if ndim == 4 else f"{ndim} axes"
        raise ValueError(f"{name} must be {ndim}-D {axes}, got {x.ndim}-D with shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} has shape {x.shape}: every axis must have at least one element")
    return x


def check_input(x, channels: int | None = None, name: str = "x") -> tuple[int, int, int, int]:
    """Check a (B, C, H, W) float input and, if given, its channel count; return its shape."""
    check_float_array(x, name)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels but the layer was built for "
                         f"channels={channels} ({name}.shape={x.shape})")
    return x.shape


def check_same_shape(dout, expected_shape, name: str = "dout", what: str = "the forward output",
                     dtype=None) -> None:
    """A gradient must be a float array with exactly the shape (and, if given, the dtype)
    of the value it is the gradient of."""
    check_float_array(dout, name, ndim=None)
    if dout.shape != tuple(expected_shape):
        raise ValueError(f"{name} has shape {dout.shape} but {what} has shape {tuple(expected_shape)}")
    if dtype is not None and dout.dtype != dtype:
        raise TypeError(f"{name} has dtype {dout.dtype} but {what} has dtype {np.dtype(dtype)}; "
                        f"pass {name}.astype(np.{np.dtype(dtype).name})")


def check_vector(value, name: str, k: int, dtype=None) -> np.ndarray:
    """Return a per-channel parameter as a (k,) array.

    Accepted: shape (k,), the official (1, k, 1, 1), or a torch tensor of either shape.
    """
    arr = to_numpy(value, name)
    if arr.shape not in ((k,), (1, k, 1, 1)):
        raise ValueError(f"{name} has shape {arr.shape}; expected ({k},) or (1, {k}, 1, 1) "
                         f"for K={k} channels per half-group")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or arr.dtype == np.bool_:
        raise TypeError(f"{name} has dtype {arr.dtype}; it must be a real number array")
    return arr.reshape(k).astype(dtype if dtype is not None else arr.dtype, copy=False)


def check_params(params, k: int, dtype) -> dict[str, np.ndarray]:
    """Check a dict of the six official parameters; return them as (k,) arrays of ``dtype``."""
    check_keys(params, "params")
    return {n: check_vector(params[n], n, k, dtype) for n in PARAM_NAMES}


def param_shapes(params) -> dict[str, tuple]:
    """The shape each of the six parameters was given in, to return gradients alike."""
    return {n: tuple(getattr(params[n], "shape", np.shape(params[n]))) for n in PARAM_NAMES}
