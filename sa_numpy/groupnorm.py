"""Group normalisation for any number of groups, forward and backward.

x (N, C, H, W) is split into ``num_groups`` groups of C/num_groups channels. Each
(sample, group) is normalised over its channels and pixels with the *biased*
variance (divide by the count M, not M - 1), then scaled and shifted per channel:

    xhat = (x - mean) / sqrt(var + eps),    out = gamma[c] * xhat + beta[c]

``num_groups = C`` is instance norm (what Shuffle Attention uses), ``num_groups = 1``
is layer norm over (C, H, W).

Backward, with M elements per group, rstd = 1 / sqrt(var + eps) and g = dout * gamma:

    dxhat   = g
    dx      = rstd * (g - mean_group(g) - xhat * mean_group(g * xhat))
    dgamma  = sum over (n, h, w) of dout * xhat,     dbeta = sum of dout

The two mean terms are the gradient flowing through the mean and the variance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functional import quiet_nonfinite
from .validate import check_eps, check_float_array, check_group_count, check_same_shape, check_vector


@dataclass
class GroupNormCache:
    xhat: np.ndarray      # (N, C, H, W) normalised input
    rstd: np.ndarray      # (N, num_groups) 1 / sqrt(var + eps)
    gamma: np.ndarray     # (C,)
    num_groups: int
    param_shape: tuple


@quiet_nonfinite
def groupnorm_forward(x: np.ndarray, gamma, beta, num_groups: int, eps: float = 1e-5):
    """x (N, C, H, W), gamma and beta (C,) -> (out (N, C, H, W), cache)."""
    check_float_array(x, "x")
    n, c, h, w = x.shape
    check_group_count(num_groups, c, "num_groups")
    eps = check_eps(eps)
    param_shape = np.shape(gamma)
    gamma = check_vector(gamma, "gamma", c, x.dtype)
    beta = check_vector(beta, "beta", c, x.dtype)
    xg = x.reshape(n, num_groups, -1)                         # (N, G, C/G * H * W)
    mean = xg.mean(axis=2, keepdims=True)
    centred = xg - mean
    var = np.einsum("ngm,ngm->ng", centred, centred) / centred.shape[2]   # biased
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (centred * rstd[:, :, None]).reshape(n, c, h, w)
    out = xhat * gamma[:, None, None] + beta[:, None, None]
    return out, GroupNormCache(xhat, rstd, gamma, num_groups, param_shape)


@quiet_nonfinite
def groupnorm_backward(dout: np.ndarray, cache: GroupNormCache):
    """dout (N, C, H, W) -> (dx (N, C, H, W), dgamma, dbeta) in the parameters' shape."""
    xhat = cache.xhat
    check_same_shape(dout, xhat.shape, "dout", "the GroupNorm output", xhat.dtype)
    n, c, h, w = xhat.shape
    dgamma = np.einsum("nchw,nchw->c", dout, xhat).reshape(cache.param_shape)
    dbeta = dout.sum(axis=(0, 2, 3)).reshape(cache.param_shape)
    g = (dout * cache.gamma[:, None, None]).reshape(n, cache.num_groups, -1)
    xg = xhat.reshape(n, cache.num_groups, -1)
    m = g.shape[2]
    mean_g = g.mean(axis=2, keepdims=True)
    mean_gx = (np.einsum("ngm,ngm->ng", g, xg) / m)[:, :, None]
    dx = (g - mean_g - xg * mean_gx) * cache.rstd[:, :, None]
    return dx.reshape(n, c, h, w), dgamma, dbeta
