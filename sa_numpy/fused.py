"""The whole Shuffle Attention layer, fused: the fast path of :class:`sa_numpy.SALayer`, and the
readable specification of sa_torch's C and Triton kernels.

:func:`sa_numpy.sa_forward` / :func:`sa_numpy.sa_backward` chain the five parts as the paper's
figure draws them; read those first. :func:`sa_forward_fused` / :func:`sa_backward_fused`
compute the same thing per channel, in four passes over the map. The derivation is written
once, in the docstring of ``sa_torch/fused/__init__.py`` (the package ``sa_torch.fused``); this
module follows it with the same names for the same quantities as sa_torch's backends
(``eager.py``, ``cpu.c``, ``triton.py`` beside it): the (C,) vectors A, P, Q, and per sample and
channel the mean m = s + d (s the channel's first value, d the mean of x - s), r = 1/sqrt(var +
eps), alpha, beta, the sums Sz and Szc, and u and w.

    forward   1. stats: s, d, var -> r, alpha, beta  2. gate: out[shuffled] = x g
    backward  3. sums: Sz, Szc -> u, w               4. dx = gy g + alpha (gz - Sz/N) + u (x - m) + w

``x - m`` is always computed as ``(x - s) - d``, exact where a channel's values are close
together (r is large there, and would magnify m's own rounding).

Every pass works on two views: :func:`halves` of x, its channels as (2, C/2), and
:func:`y_order` of the output, where the channel shuffle sends them. The results agree with the
chain of parts and with PyTorch autograd to rounding error (tested).

Letters: B batch, C channels, H, W, N = H*W positions, G groups, K = C // (2G).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .functional import quiet_nonfinite, sigmoid_
from .validate import PARAM_NAMES, check_channels_groups, check_eps, check_input, check_params
from .validate import check_same_shape, param_shapes


def halves(a: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> view (B, 2, C/2, N): the two halves of the channel axis."""
    b, c = a.shape[:2]
    return a.reshape(b, 2, c // 2, -1)


def y_order(out: np.ndarray) -> np.ndarray:
    """The (B, 2, C/2, N) view of a shuffled (B, C, H, W) array in y's channel order:
    ``view[:, i, j]`` is channel ``2j + i`` of ``out``."""
    b, c = out.shape[:2]
    return out.reshape(b, c // 2, 2, -1).transpose(0, 2, 1, 3)


def per_channel(v: np.ndarray) -> np.ndarray:
    """(B, C) or (C,) -> (..., 2, C/2, 1), to broadcast against :func:`halves` of a map."""
    return v.reshape(*v.shape[:-1], 2, -1, 1)


def channel_vectors(p: dict, groups: int) -> tuple[np.ndarray, ...]:
    """A, P, Q, each (C,) in channel order (g, branch, k), from the six (K,) parameters:
    branch 0 (channel gate) A = 0, P = cweight, Q = cbias; branch 1 (spatial gate)
    A = sweight gn.weight, P = 0, Q = sweight gn.bias + sbias. And ``spatial`` (C,), True in
    branch 1: where A is not 0 by construction (elsewhere the terms with A are absent, so that
    an infinite x gives what the chain of parts gives, not inf * 0)."""
    zero = np.zeros_like(p["cweight"])
    a = np.concatenate([zero, p["sweight"] * p["gn.weight"]])
    pp = np.concatenate([p["cweight"], zero])
    q = np.concatenate([p["cbias"], p["sweight"] * p["gn.bias"] + p["sbias"]])
    spatial = np.arange(2 * zero.shape[0]) >= zero.shape[0]
    return np.tile(a, groups), np.tile(pp, groups), np.tile(q, groups), np.tile(spatial, groups)


def _set_channels(a: np.ndarray, value: np.ndarray, channels: np.ndarray) -> None:
    """a[b, c] = value[b, c] (a: :func:`halves` of a map) for the (B, C) mask ``channels``. For the
    channel gate where a term with A = 0 meets an inf or NaN of x or gy (0 * inf is NaN, and the
    chain of parts has no such term): there a sum over the channel (var, Szc) is not finite."""
    if channels.any():
        a.reshape(a.shape[0], -1, a.shape[-1])[channels] = value[channels][:, None]


@dataclass
class FusedCache:
    """What :func:`sa_backward_fused` needs: the input, the parameters, and per (sample, channel)
    the coefficients of :func:`sa_forward_fused` as (B, C) arrays, with the gate."""
    x: np.ndarray = field(repr=False)        # (B, C, H, W) the input (a reference, not a copy)
    groups: int
    params: dict = field(repr=False)         # the six parameters as (K,) arrays
    param_shapes: dict                       # shapes the parameters were given in
    spatial: np.ndarray = field(repr=False)  # (C,) True for the channels of the spatial gate
    shift: np.ndarray = field(repr=False)    # (B, C) s, the channel's first value
    offset: np.ndarray = field(repr=False)   # (B, C) d = m - s
    rstd: np.ndarray = field(repr=False)     # (B, C) r = 1 / sqrt(var + eps)
    alpha: np.ndarray = field(repr=False)    # (B, C) A r
    beta: np.ndarray = field(repr=False)     # (B, C) P m + Q
    p: np.ndarray = field(repr=False)        # (C,) P
    gate: np.ndarray = field(repr=False)     # (B, 2, C/2, N) g, in the halves of x's channels

    @property
    def shape(self) -> tuple:
        return self.x.shape

    @property
    def mean(self) -> np.ndarray:
        """(B, C) m = s + d."""
        return self.shift + self.offset

    def centred(self, x2: np.ndarray, out: np.ndarray) -> np.ndarray:
        """x - m as (x - s) - d, for x2 = :func:`halves` of a map, written into out."""
        np.subtract(x2, per_channel(self.shift), out=out)
        out -= per_channel(self.offset)
        return out


@quiet_nonfinite
def sa_forward_fused(x: np.ndarray, params: dict, groups: int, eps: float = 1e-5):
    """Shuffle Attention forward, fused.

    x: (B, C, H, W) float32 or float64. params: the six official names, each (K,) or the
    official (1, K, 1, 1). Returns (out (B, C, H, W) of x's dtype, cache).
    """
    b, c, h, w = check_input(x)
    k = check_channels_groups(c, groups)
    eps = check_eps(eps)
    p = check_params(params, k, x.dtype)
    shapes = param_shapes(params)
    x = np.ascontiguousarray(x)                               # so that the views below are free
    x2 = halves(x)                                            # (B, 2, C/2, N)
    n = x2.shape[-1]

    # pass 1, stats: the first value s, the mean d of x - s and the variance of every (b, c); then
    # the coefficients
    shift = x2[..., 0].reshape(b, c)
    centred = x2 - per_channel(shift)
    offset = (centred @ np.full(n, 1 / n, x.dtype)).reshape(b, c)   # the mean, each term scaled first:
                                                                    # no overflow where the sum would
    centred -= per_channel(offset)                            # x - m = (x - s) - d
    var = np.einsum("...n,...n->...", centred, centred).reshape(b, c) / n
    a, pp, q, spatial = channel_vectors(p, groups)
    rstd = 1 / np.sqrt(var + eps)
    alpha = np.where(spatial, a * rstd, 0)                    # A r
    beta = pp * (shift + offset) + q                          # P m + Q

    # pass 2, gate: g = sigmoid(alpha (x - m) + beta), and x g written at its shuffled channel
    gate = centred                                            # x - m, becomes the gate in place
    gate *= per_channel(alpha)
    gate += per_channel(beta)
    _set_channels(gate, beta, ~spatial & ~np.isfinite(var))   # the channel gate: P m + Q, not 0 * inf
    sigmoid_(gate)
    out = np.empty_like(x)
    np.multiply(x2, gate, out=y_order(out))
    return out, FusedCache(x, groups, p, shapes, spatial, shift, offset, rstd, alpha, beta, pp, gate)


@quiet_nonfinite
def sa_backward_fused(dout: np.ndarray, cache: FusedCache):
    """dout (B, C, H, W) -> (dx (B, C, H, W), grads), grads keyed by the official names
    and shaped like the parameters given to :func:`sa_forward_fused`."""
    if not isinstance(cache, FusedCache):
        raise TypeError(f"cache must be the FusedCache returned by sa_forward_fused, got {type(cache).__name__}")
    x, g = cache.x, cache.gate
    check_same_shape(dout, x.shape, "dout", "the layer's output", x.dtype)
    b, c = x.shape[:2]
    x2, gy = halves(x), y_order(dout)                          # (B, 2, C/2, N) each
    n = x2.shape[-1]

    dx = np.empty_like(x)
    xc = cache.centred(x2, out=halves(dx))                     # x - m, becomes dx in place

    # pass 3, sums: gz = gy x g (1 - g), Sz = sum(gz), Szc = sum(gz (x - m)); then u and w
    gyg = gy * g                                               # the gradient through the gated value
    gz = np.subtract(1, g)
    gz *= gyg
    gz *= x2
    sz = gz.sum(axis=-1).reshape(b, c)
    szc = np.einsum("...n,...n->...", gz, xc).reshape(b, c)
    u = np.where(cache.spatial, -cache.alpha * cache.rstd ** 2 * szc / n, 0)   # -A r^3 Szc / N
    w = cache.p * sz / n                                       # P Sz / N

    # pass 4, dx = gy g + alpha (gz - Sz/N) + u (x - m) + w (gy g + w in the channel gate)
    xc *= per_channel(u)
    gz -= per_channel(sz / n)
    gz *= per_channel(cache.alpha)
    xc += gz
    _set_channels(xc, np.zeros_like(w), ~cache.spatial & ~np.isfinite(szc))   # not 0 * inf
    xc += gyg
    xc += per_channel(w)
    return dx, parameter_grads(cache, sz, szc)


def parameter_grads(cache: FusedCache, sz: np.ndarray, szc: np.ndarray) -> dict:
    """The six gradients from dL/dA = r Szc, dL/dP = m Sz, dL/dQ = Sz per (b, c),
    summed over samples and groups per branch (2, K), then through A, P, Q onto the parameters."""
    k, p = cache.params["cweight"].shape[0], cache.params

    def per_branch(v):                                         # (B, C) -> (2, K)
        return v.reshape(-1, cache.groups, 2, k).sum(axis=(0, 1))
    d_a, d_p, d_q = per_branch(cache.rstd * szc), per_branch(cache.mean * sz), per_branch(sz)
    grads = {"cweight": d_p[0], "cbias": d_q[0], "sweight": d_a[1] * p["gn.weight"] + d_q[1] * p["gn.bias"],
             "sbias": d_q[1], "gn.weight": d_a[1] * p["sweight"], "gn.bias": d_q[1] * p["sweight"]}
    return {name: grads[name].reshape(cache.param_shapes[name]) for name in PARAM_NAMES}
