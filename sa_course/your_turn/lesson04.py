"""Lesson 04's "your turn" tasks: a read-out order to predict, the inverse shuffle, a routing loop.

Each function takes the learner's value, computes the expected value itself, and calls
:func:`sa_course.your_turn.check`, which prints one line; it returns nothing, so that a
lesson's check cell shows only that line. A shuffle with ``groups`` groups writes the C channels
into a table of ``groups`` rows of C/groups and reads it out column by column.
"""
from __future__ import annotations

import numpy as np

from ..routing import channel_routing
from . import check


def _order(channels: int, groups: int) -> np.ndarray:
    """The channel numbers after a shuffle with ``groups`` groups: out[j] = in[order[j]]."""
    return np.arange(channels).reshape(groups, channels // groups).T.reshape(-1)


def read_out_order(yours, channels: int = 12, groups: int = 3) -> None:
    """Channels 0..C-1 shuffled with ``groups`` groups, as a list of C channel numbers."""
    order = _order(channels, groups)
    check("the read-out order", np.asarray(yours) if isinstance(yours, (list, tuple)) else yours, order, [
        ("that is the order unchanged: the table is read out column by column, not row by row",
         lambda: np.arange(channels)),
        (f"the channels are numbered from 0 here: 0, 1, ..., {channels - 1}", lambda: order + 1),
        (f"that lists, for each input channel, the position it GOES to (the inverse permutation, "
         f"also a table of {channels // groups} rows read by columns); the read-out lists, for each "
         f"output position, the channel it HOLDS", lambda: np.argsort(order)),
    ], right="The first column of the table first: one channel from each group, then the next column.",
        answer="my_order")


def inverse_groups(yours, channels: int = 8) -> None:
    """How many groups the shuffle that undoes a 2-group shuffle of ``channels`` channels has."""
    check("the inverse shuffle", yours, channels // 2, [
        ("a second 2-group shuffle of 8 channels does not undo the first (question 1 counts how many "
         "it takes); the inverse reads the transposed table back", 2),
        (f"{channels} groups of one channel each is the identity, which undoes nothing", channels),
        ("one group is the identity too", 1),
    ], right="The transpose of a 2 x C/2 table is a C/2 x 2 table: the inverse is a shuffle with C/2 groups.",
        answer="my_groups")


def source_groups(yours, channels: int = 12, groups: int = 3) -> None:
    """For each OUTPUT channel of the layer, the group (of this layer) its value came from."""
    route = channel_routing(channels, groups)

    def scatter(values):
        out = np.empty(channels, dtype=np.int64)
        out[route.destination] = values
        return out

    expected = scatter(route.group)
    check("the source groups", yours, expected, [
        ("that is the group of each INPUT channel; after the shuffle the positions have changed",
         lambda: route.group),
        ("that reads route.group AT the destinations; the loop WRITES group[c] TO position "
         "destination[c] (a scatter, the inverse of a gather)", lambda: route.group[route.destination]),
        ("that is where each channel GOES (route.destination); the task asks, for each output position, "
         "the group of the channel that lands there", lambda: route.destination),
        ("the right positions, but the branch (0 or 1) instead of the group", lambda: scatter(route.branch)),
    ], right="Read it in blocks of 2K: each block is one group of the next SA layer.", answer="my_source_group")
