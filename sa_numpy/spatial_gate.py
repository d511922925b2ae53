"""The spatial gate (the paper's "spatial attention" branch), built on GroupNorm.

For x1 (N, K, H, W), GroupNorm with num_groups = K normalises every channel of every
row over its own H*W pixels (an instance norm), with its own affine:

    n  = GroupNorm_K(x1; gn.weight, gn.bias)
    z  = sweight[k] * n + sbias[k]
    y1 = x1 * sigmoid(z)                    one gate value per pixel

Backward, with sigma = sigmoid(z):

    dz       = dy1 * x1 * sigma * (1 - sigma)
    dsweight = sum(dz * n),    dsbias = sum(dz)
    dn       = dz * sweight  -> GroupNorm backward -> dx1_norm, dgn.weight, dgn.bias
    dx1      = dy1 * sigma + dx1_norm       x1 is used twice: as the gated value and inside the gate
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functional import quiet_nonfinite, sigmoid
from .groupnorm import GroupNormCache, groupnorm_backward, groupnorm_forward
from .validate import check_float_array, check_same_shape, check_vector


@dataclass
class SpatialGateCache:
    x1: np.ndarray            # (N, K, H, W) input (a reference)
    n: np.ndarray             # (N, K, H, W) GroupNorm output
    gate: np.ndarray          # (N, K, H, W) sigmoid(sweight * n + sbias)
    sweight: np.ndarray       # (K,)
    gn: GroupNormCache
    param_shape: tuple


@quiet_nonfinite
def spatial_gate_forward(x1: np.ndarray, sweight, sbias, gn_weight, gn_bias, eps: float = 1e-5):
    """x1 (N, K, H, W); sweight, sbias (K,) or (1, K, 1, 1); gn_weight, gn_bias (K,).

    Returns (y1 (N, K, H, W), cache).
    """
    check_float_array(x1, "x1")
    k = x1.shape[1]
    param_shape = np.shape(sweight)
    sw = check_vector(sweight, "sweight", k, x1.dtype)
    sb = check_vector(sbias, "sbias", k, x1.dtype)
    n, gn_cache = groupnorm_forward(x1, gn_weight, gn_bias, num_groups=k, eps=eps)
    gate = sigmoid(n * sw[:, None, None] + sb[:, None, None])
    y1 = x1 * gate
    return y1, SpatialGateCache(x1, n, gate, sw, gn_cache, param_shape)


@quiet_nonfinite
def spatial_gate_backward(dout: np.ndarray, cache: SpatialGateCache):
    """dout (N, K, H, W) -> (dx1, dsweight, dsbias, dgn_weight, dgn_bias)."""
    check_same_shape(dout, cache.x1.shape, "dout", "y1", cache.x1.dtype)
    gate = cache.gate
    dz = dout * cache.x1 * gate * (1 - gate)
    dsweight = np.einsum("nkhw,nkhw->k", dz, cache.n).reshape(cache.param_shape)
    dsbias = dz.sum(axis=(0, 2, 3)).reshape(cache.param_shape)
    dx_norm, dgn_weight, dgn_bias = groupnorm_backward(dz * cache.sweight[:, None, None], cache.gn)
    dx1 = dout * gate + dx_norm
    return dx1, dsweight, dsbias, dgn_weight, dgn_bias
