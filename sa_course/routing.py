"""Where does each channel go, as computed by the layer's own code.

Shuffle Attention moves channels three times: the grouping sends input channel
``c = g*2K + i*K + k`` to group ``g``, branch ``i`` (0: channel, 1: spatial), slot ``k``;
the merge puts it back at position ``c``; the shuffle with 2 groups sends position ``c``
to output channel ``2*(c mod C/2) + c // (C/2)``. :func:`channel_routing` does not
re-derive these formulas: it pushes the channel numbers themselves through
:func:`~sa_numpy.group_split_forward`, :func:`~sa_numpy.group_merge_forward` and
:func:`~sa_numpy.channel_shuffle_forward`, so the figures (:mod:`sa_course.viz`) and the
explorer (:mod:`sa_course.explorer`) show what the code does.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sa_numpy.grouping import group_merge_forward, group_split_forward
from sa_numpy.shuffle import channel_shuffle_forward
from sa_numpy.validate import check_channels_groups

BRANCHES = ("channel", "spatial")


class ChannelRouting(NamedTuple):
    """Where each input channel goes; every field is an int array of shape (C,), indexed by c."""
    group: np.ndarray        # g in [0, G)
    branch: np.ndarray       # 0: channel branch (x0), 1: spatial branch (x1)
    slot: np.ndarray         # k in [0, K), the channel's place inside its half-group
    destination: np.ndarray  # the output channel it ends up in after the shuffle


def channel_routing(channels: int, groups: int) -> ChannelRouting:
    """Follow every channel through split, merge and shuffle. Raises the layer's own errors."""
    check_channels_groups(channels, groups)
    labels = np.arange(channels, dtype=np.float64).reshape(1, channels, 1, 1)
    (x0, x1), _ = group_split_forward(labels, groups)           # each (G, K, 1, 1)
    halves = np.stack([x0[:, :, 0, 0], x1[:, :, 0, 0]]).astype(np.int64)  # (2, G, K)
    branch, group, slot = np.indices(halves.shape).reshape(3, -1)
    routing = np.empty((3, channels), dtype=np.int64)
    routing[:, halves.ravel()] = group, branch, slot
    merged, _ = group_merge_forward(x0, x1, batch=1)
    shuffled, _ = channel_shuffle_forward(merged, groups=2)
    destination = np.empty(channels, dtype=np.int64)
    destination[shuffled.ravel().astype(np.int64)] = np.arange(channels)
    return ChannelRouting(*routing, destination)
