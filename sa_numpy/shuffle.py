"""Channel shuffle (ShuffleNet): interleave the channels of ``groups`` groups.

View x (B, C, H, W) as (B, groups, C/groups, H, W), swap the two channel axes, flatten:
``'b (g j) h w -> b (j g) h w'``. Output channel ``j*groups + i`` is input channel
``i*C/groups + j``. With groups = 2 and channels 1..8 the order becomes 1,5,2,6,3,7,4,8.

A shuffle is a permutation, so its backward is the inverse permutation, which is
itself a shuffle with C/groups groups.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validate import check_group_count, check_input, check_same_shape


@dataclass(frozen=True)
class ShuffleCache:
    groups: int
    shape: tuple
    dtype: np.dtype


def _shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    b, c, h, w = x.shape
    out = np.empty_like(x)    # always a new array, even when the permutation is the identity
    np.copyto(out.reshape(b, c // groups, groups, h, w),
              x.reshape(b, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4))
    return out


def channel_shuffle_forward(x: np.ndarray, groups: int = 2):
    """x (B, C, H, W) -> (out (B, C, H, W), cache)."""
    b, c, h, w = check_input(x)
    check_group_count(groups, c)
    return _shuffle(x, groups), ShuffleCache(groups, x.shape, x.dtype)


def channel_shuffle_backward(dout: np.ndarray, cache: ShuffleCache) -> np.ndarray:
    """dout (B, C, H, W) -> dx (B, C, H, W): the inverse permutation."""
    check_same_shape(dout, cache.shape, "dout", "the shuffled output", cache.dtype)
    return _shuffle(dout, cache.shape[1] // cache.groups)
