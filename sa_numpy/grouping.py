"""Feature grouping: split the channels into G groups, and each group into two halves.

Letters: B batch, C channels, H, W height and width, G groups, K = C // (2G).

The forward is a pure reshape: ``'b (g two k) h w -> two (b g) k h w'``. Channel
``c = g*2K + i*K + k`` of sample ``b`` lands in half ``i`` (0: channel branch,
1: spatial branch) at row ``b*G + g``, channel ``k``. No data is copied for a
contiguous input, so the halves are *views* of x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validate import check_channels_groups, check_input, check_same_shape


@dataclass(frozen=True)
class GroupCache:
    """What the backward needs: only the shapes."""
    batch: int
    channels: int
    height: int
    width: int
    groups: int

    @property
    def half_shape(self) -> tuple[int, int, int, int]:
        """(B*G, K, H, W), the shape of each half."""
        return (self.batch * self.groups, self.channels // (2 * self.groups), self.height, self.width)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)


def group_split_forward(x: np.ndarray, groups: int):
    """Split x into the two branches of every group.

    x: (B, C, H, W) -> ((x0, x1), cache), x0 and x1 each (B*G, K, H, W).
    """
    b, c, h, w = check_input(x)
    check_channels_groups(c, groups)
    xg = x.reshape(b * groups, c // groups, h, w)
    k = c // (2 * groups)
    return (xg[:, :k], xg[:, k:]), GroupCache(b, c, h, w, groups)


def group_split_backward(dout, cache: GroupCache) -> np.ndarray:
    """dout = (dx0, dx1), each (B*G, K, H, W) -> dx (B, C, H, W), a new array."""
    dx0, dx1 = dout
    check_same_shape(dx0, cache.half_shape, "dx0", "x0")
    check_same_shape(dx1, cache.half_shape, "dx1", "x1")
    dx = np.concatenate([dx0, dx1], axis=1)
    return dx.reshape(cache.input_shape)


def group_merge_forward(y0: np.ndarray, y1: np.ndarray, batch: int):
    """Put the two halves back side by side and undo the grouping.

    y0, y1: (B*G, K, H, W) -> (y (B, C, H, W) with C = 2*G*K, cache). y is a new array.
    """
    check_input(y0, name="y0")
    check_same_shape(y1, y0.shape, "y1", "y0")
    n, k, h, w = y0.shape
    if batch < 1 or n % batch:
        raise ValueError(f"batch={batch} must divide the first axis of y0 ({n} = B*G)")
    groups = n // batch
    y = np.concatenate([y0, y1], axis=1).reshape(batch, 2 * k * groups, h, w)
    return y, GroupCache(batch, 2 * k * groups, h, w, groups)


def group_merge_backward(dout: np.ndarray, cache: GroupCache):
    """dout (B, C, H, W) -> (dy0, dy1), each (B*G, K, H, W) and each a new array."""
    check_same_shape(dout, cache.input_shape, "dout", "y")
    dg = dout.reshape(cache.batch * cache.groups, -1, cache.height, cache.width)
    k = cache.channels // (2 * cache.groups)
    return dg[:, :k].copy(), dg[:, k:].copy()
