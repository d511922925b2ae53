"""The whole Shuffle Attention layer, fused: the fast path that :class:`sa_numpy.SALayer` uses.

:func:`sa_numpy.sa_forward` / :func:`sa_numpy.sa_backward` chain the five parts as the
paper's figure draws them; read those first. :func:`sa_forward_fused` /
:func:`sa_backward_fused` compute the same thing with fewer passes over memory: the
shuffle is folded into the indexing of the output, the GroupNorm and the gate affine are
folded into one per-channel affine, and each pass does as much as it can. They agree with
the chain of parts to rounding error (tested).

Letters: B batch, C channels, H, W, P = H*W pixels, G groups, K = C // (2G).

Layout trick. With G even, write g = ga * (G/2) + gb (ga in {0, 1}). Input channel
``c = g*2K + i*K + k`` (i: branch) is the reshape ``x.reshape(B, 2, G/2, 2, K, P)``, and
the shuffle sends it to output channel ``2*(gb*2K + i*K + k) + ga``, which is a plain
strided view of the output: ``out.reshape(B, G/2, 2, K, 2, P).transpose(0, 4, 1, 2, 3, 5)``.
So both branches write their result straight into its shuffled place. With G odd, the
result is written in group order and shuffled with one copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .functional import quiet_nonfinite, sigmoid, sigmoid_
from .shuffle import _shuffle
from .validate import PARAM_NAMES, check_channels_groups, check_eps, check_input, check_params
from .validate import check_same_shape, param_shapes

_SUM = (0, 1, 2)   # the (B, ga, gb) axes that every per-channel parameter is shared over


def _grouped(a: np.ndarray, ga: int, k: int) -> np.ndarray:
    """(B, C, H, W) -> view (B, ga, gb, 2, K, P) in group order."""
    b, c = a.shape[:2]
    return a.reshape(b, ga, c // (2 * k * ga), 2, k, -1)


def _shuffled(a: np.ndarray, k: int) -> np.ndarray:
    """(B, C, ...) output-ordered array -> view (B, 2, G/2, 2, K, P) in group order (G even)."""
    b, c = a.shape[:2]
    return a.reshape(b, c // (4 * k), 2, k, 2, -1).transpose(0, 4, 1, 2, 3, 5)


@dataclass
class FusedCache:
    """What :func:`sa_backward_fused` needs. Arrays of shape (B, ga, gb, K) hold one value per
    (sample, group, channel), with the group index split as g = ga*gb_size + gb."""
    x: np.ndarray = field(repr=False)      # (B, C, H, W) the input (a reference, not a copy)
    groups: int
    params: dict = field(repr=False)       # the six parameters as (K,) arrays
    param_shapes: dict                     # shapes the parameters were given in
    s: np.ndarray = field(repr=False)      # (B, ga, gb, K) pooled means of x0
    gate0: np.ndarray = field(repr=False)  # (B, ga, gb, K) channel gate
    mu: np.ndarray = field(repr=False)     # (B, ga, gb, K) mean of x1 per channel
    rstd: np.ndarray = field(repr=False)   # (B, ga, gb, K) 1/sqrt(var + eps) of x1
    gate1: np.ndarray = field(repr=False)  # (B, ga, gb, K, P) spatial gate

    @property
    def shape(self) -> tuple:
        return self.x.shape


@quiet_nonfinite
def sa_forward_fused(x: np.ndarray, params: dict, groups: int, eps: float = 1e-5):
    """Shuffle Attention forward, fused.

    x: (B, C, H, W) float32 or float64. params: the six official names, each (K,) or the
    official (1, K, 1, 1). Returns (out (B, C, H, W) of x's dtype, cache).

    Every pass over the data writes into one of two new arrays: ``out``, and the spatial
    gate kept for the backward (half of x's size). Odd G adds one copy for the shuffle.
    """
    b, c, h, w = check_input(x)
    k = check_channels_groups(c, groups)
    eps = check_eps(eps)
    p = check_params(params, k, x.dtype)
    shapes = param_shapes(params)
    x = np.ascontiguousarray(x)                               # so that the views below are free
    ga = 2 if groups % 2 == 0 else 1
    x6 = _grouped(x, ga, k)
    x0, x1 = x6[:, :, :, 0], x6[:, :, :, 1]                  # (B, ga, gb, K, P) each
    out = np.empty_like(x)
    y6 = _shuffled(out, k) if ga == 2 else _grouped(out, ga, k)

    # channel branch: one gate value per channel
    s = x0.mean(axis=-1)
    gate0 = sigmoid(p["cweight"] * s + p["cbias"])
    np.multiply(x0, gate0[..., None], out=y6[:, :, :, 0])

    # spatial branch: instance norm, GroupNorm affine and gate affine folded into one
    # per-channel affine sweight * (gw * (x1 - mu) * rstd + gb) + sbias, then the sigmoid
    mu = x1.mean(axis=-1)
    gate1 = np.subtract(x1, mu[..., None])                    # x1 - mu, becomes the gate in place
    rstd = 1.0 / np.sqrt(np.einsum("...p,...p->...", gate1, gate1) / gate1.shape[-1] + eps)
    gate1 *= (p["sweight"] * p["gn.weight"] * rstd)[..., None]
    gate1 += (p["sweight"] * p["gn.bias"] + p["sbias"])[..., None]
    sigmoid_(gate1)
    np.multiply(x1, gate1, out=y6[:, :, :, 1])
    if ga == 1:                                               # odd G: shuffle with one copy
        out = _shuffle(out, 2)
    return out, FusedCache(x, groups, p, shapes, s, gate0, mu, rstd, gate1)


@quiet_nonfinite
def sa_backward_fused(dout: np.ndarray, cache: FusedCache):
    """dout (B, C, H, W) -> (dx (B, C, H, W), grads), grads keyed by the official names
    and shaped like the parameters given to :func:`sa_forward_fused`.

    Passes over the data write into contiguous temporaries of half x's size; measured
    faster than working in place in the interleaved halves of dx (docs/benchmarks.md).
    """
    if not isinstance(cache, FusedCache):
        raise TypeError(f"cache must be the FusedCache returned by sa_forward_fused, got {type(cache).__name__}")
    x, p = cache.x, cache.params
    check_same_shape(dout, x.shape, "dout", "the layer's output", x.dtype)
    k = p["cweight"].shape[0]
    ga = 2 if cache.groups % 2 == 0 else 1
    npix = x.shape[2] * x.shape[3]
    x6 = _grouped(x, ga, k)
    x0, x1 = x6[:, :, :, 0], x6[:, :, :, 1]
    d6 = _shuffled(dout, k) if ga == 2 else _grouped(_shuffle(dout, x.shape[1] // 2), ga, k)
    dy0, dy1 = d6[:, :, :, 0], d6[:, :, :, 1]
    dx = np.empty_like(x)
    dx6 = _grouped(dx, ga, k)
    grads = {}

    # channel branch: y0 = x0 * sigmoid(cweight * mean(x0) + cbias)
    gate0 = cache.gate0
    dz0 = np.einsum("...p,...p->...", dy0, x0) * gate0 * (1 - gate0)
    grads["cweight"] = (dz0 * cache.s).sum(axis=_SUM)
    grads["cbias"] = dz0.sum(axis=_SUM)
    np.multiply(dy0, gate0[..., None], out=dx6[:, :, :, 0])
    dx6[:, :, :, 0] += (dz0 * p["cweight"] / npix)[..., None]

    # spatial branch: y1 = x1 * sigmoid(sweight * (gw * n + gb) + sbias), n = (x1 - mu) * rstd
    gate1 = cache.gate1
    direct = dy1 * gate1                      # gradient through the gated value
    dz1 = direct * x1                         # ... and through the gate:
    tmp = dz1 * gate1
    dz1 -= tmp                                # dz1 = dy1 * x1 * sigma * (1 - sigma)
    np.subtract(x1, cache.mu[..., None], out=tmp)            # tmp = x1 - mu
    sum_dz = dz1.sum(axis=-1)
    sum_dz_n = np.einsum("...p,...p->...", dz1, tmp) * cache.rstd
    sw, gw, gb = p["sweight"], p["gn.weight"], p["gn.bias"]
    grads["sweight"] = (gw * sum_dz_n + gb * sum_dz).sum(axis=_SUM)
    grads["sbias"] = sum_dz.sum(axis=_SUM)
    grads["gn.weight"] = (sw * sum_dz_n).sum(axis=_SUM)
    grads["gn.bias"] = (sw * sum_dz).sum(axis=_SUM)
    # GroupNorm backward: dx1 += a * (dz1 - mean(dz1) - n * mean(dz1 * n)), a = sw*gw*rstd
    a = sw * gw * cache.rstd
    tmp *= (-a * cache.rstd * sum_dz_n / npix)[..., None]
    dz1 *= a[..., None]
    dz1 += tmp
    dz1 += (-a * sum_dz / npix)[..., None]
    np.add(direct, dz1, out=dx6[:, :, :, 1])

    grads = {n: grads[n].reshape(cache.param_shapes[n]) for n in PARAM_NAMES}
    return dx, grads


