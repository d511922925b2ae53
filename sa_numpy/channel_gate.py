"""The channel gate (the paper's "channel attention" branch).

For each row n (a sample's group) and channel k of x0 (N, K, H, W):

    s[n, k]  = mean over (h, w) of x0[n, k]             global average pooling
    z[n, k]  = cweight[k] * s[n, k] + cbias[k]          per-channel affine, shared by all groups
    y0       = x0 * sigmoid(z)[:, :, None, None]        gate every pixel of the channel

Backward, with sigma = sigmoid(z) and P = H*W:

    dz      = sum_hw(dy0 * x0) * sigma * (1 - sigma)
    dcweight = sum_n dz * s,   dcbias = sum_n dz
    dx0     = dy0 * sigma + (dz * cweight) / P           the second term flows back through the mean
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functional import quiet_nonfinite, sigmoid
from .validate import check_float_array, check_same_shape, check_vector


@dataclass
class ChannelGateCache:
    x0: np.ndarray        # (N, K, H, W) input (a reference, not a copy)
    s: np.ndarray         # (N, K) pooled means
    gate: np.ndarray      # (N, K) sigmoid(cweight * s + cbias)
    cweight: np.ndarray   # (K,)
    param_shape: tuple    # shape the parameters were given in; gradients come back in it


@quiet_nonfinite
def channel_gate_forward(x0: np.ndarray, cweight, cbias):
    """x0 (N, K, H, W), cweight and cbias (K,) or (1, K, 1, 1) -> (y0 (N, K, H, W), cache)."""
    check_float_array(x0, "x0")
    k = x0.shape[1]
    param_shape = np.shape(cweight)
    cw = check_vector(cweight, "cweight", k, x0.dtype)
    cb = check_vector(cbias, "cbias", k, x0.dtype)
    s = x0.mean(axis=(2, 3))
    gate = sigmoid(cw * s + cb)
    y0 = x0 * gate[:, :, None, None]
    return y0, ChannelGateCache(x0, s, gate, cw, param_shape)


@quiet_nonfinite
def channel_gate_backward(dout: np.ndarray, cache: ChannelGateCache):
    """dout (N, K, H, W) -> (dx0 (N, K, H, W), dcweight, dcbias) in the parameters' shape."""
    x0 = cache.x0
    check_same_shape(dout, x0.shape, "dout", "y0", x0.dtype)
    n, k, h, w = x0.shape
    dz = np.einsum("nkp,nkp->nk", dout.reshape(n, k, -1), x0.reshape(n, k, -1))
    dz *= cache.gate * (1 - cache.gate)
    dcweight = (dz * cache.s).sum(axis=0).reshape(cache.param_shape)
    dcbias = dz.sum(axis=0).reshape(cache.param_shape)
    dx0 = dout * cache.gate[:, :, None, None]
    dx0 += (dz * cache.cweight / (h * w))[:, :, None, None]
    return dx0, dcweight, dcbias
