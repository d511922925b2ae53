"""Lesson 01 (feature grouping): the checks behind its "your turn" cells.

Each function takes the learner's value (``...`` while untried) and prints one line (see
:func:`sa_course.your_turn.check`); it returns nothing, so that a lesson's check cell shows only
that line. The tasks, in the order the lesson asks them:

- :func:`half_shape`: the shape of each half for x (2, 32, 5, 5) and G = 4;
- :func:`channel_destination`: where channel 13 of sample 1 lands (B = 3, C = 16, G = 2);
- :func:`overlap_gradient`: the gradient of two overlapping slices, the ``+=`` term.
"""
from __future__ import annotations

import numpy as np

from sa_course.your_turn import check

#: half_shape: x (B, C, H, W) = (2, 32, 5, 5) with G = 4, so K = C // (2G) = 4.
HALF_SHAPE = (8, 4, 5, 5)
HALF_SHAPE_MISTAKES = [
    ("the groups go onto the batch axis, so the first axis counts (sample, group) rows: B*G = 8, not B = 2.",
     (2, 4, 5, 5)),
    ("(8, 8, 5, 5) is a whole group, C/G = 8 channels. Each group is split into two halves of K = C/(2G) channels.",
     (8, 8, 5, 5)),
    ("that halves the channel axis of the whole input. The layer halves each group, and stacks the groups "
     "on the batch axis.", (2, 16, 5, 5)),
    ("(B, G, K, H, W) has the right numbers in separate axes, but the layer merges B and G into one "
     "batch axis of B*G rows, so that everything downstream treats each group as a sample.", (2, 4, 4, 5, 5)),
    ("the axes are in the wrong order: the B*G = 8 (sample, group) rows come first, then the K = 4 channels.",
     (4, 8, 5, 5)),
    ("H and W stay two separate axes: grouping and splitting touch only the batch and channel axes.", (8, 4, 25)),
]

#: channel_destination: B = 3, C = 16, G = 2 (K = 4); channel 13 of sample 1 -> (half, row, k).
DESTINATION = (1, 3, 1)
DESTINATION_MISTAKES = [
    ("row g*B + b would list group 0 of every sample first. The reshape keeps one sample's groups "
     "next to each other: row = b*G + g.", (1, 4, 1)),
    ("5 is the channel's position inside its group (2K = 8 channels). Inside the half it is 5 - K.", (1, 3, 5)),
    ("the row counts (sample, group) pairs: sample 1's groups come after sample 0's G = 2 rows.", (1, 1, 1)),
    ("channel 13 is in the second half of its group (positions K..2K-1 of the group), so it goes to "
     "the spatial branch, half 1.", (0, 3, 1)),
    ("Python counts from 0: the first half is half 0, the first row is row 0, the first position is 0.",
     (2, 4, 2)),
    ("the right numbers in another order: the task asks for (half i, row, position k).", (3, 1, 1)),
]


def half_shape(yours) -> None:
    """The shape of x0 (and of x1) for x of shape (2, 32, 5, 5) and G = 4."""
    check("shape of a half", yours, HALF_SHAPE, HALF_SHAPE_MISTAKES,
                 right="B*G = 8 rows, K = C/(2G) = 4 channels each, and H, W untouched.", answer="my_shape")


def channel_destination(yours) -> None:
    """(half i, row, channel k) of channel c = 13 of sample b = 1, for B = 3, C = 16, G = 2."""
    check("where channel 13 lands", yours, DESTINATION, DESTINATION_MISTAKES,
                 right="13 = g*2K + i*K + k with g = 1, i = 1, k = 1, and row = b*G + g = 3.",
                 answer="my_destination")


def overlap_gradient(yours, da: np.ndarray, db: np.ndarray) -> None:
    """dv for L = sum(a * da) + sum(b * db) with a = v[:, :3] and b = v[:, 1:] (v of shape (2, 5)).

    ``da`` is (2, 3) and ``db`` (2, 4), the upstream gradients of the two slices.
    """
    rows, width = da.shape[0], db.shape[1] + 1
    expected = np.zeros((rows, width))
    expected[:, :3] += da
    expected[:, 1:] += db

    def overwritten():
        dv = np.zeros((rows, width))
        dv[:, :3] = da
        dv[:, 1:] = db
        return dv

    def only(term, where):
        dv = np.zeros((rows, width))
        dv[where] += term
        return dv

    def shifted():
        dv = only(da, np.s_[:, :3])
        dv[:, :4] += db
        return dv

    def with_b(term):
        dv = only(da, np.s_[:, :3])
        dv[:, 1:] += term
        return dv

    mistakes = [
        ("b's term replaced a's in columns 1 and 2. An element used by both slices collects both "
         "gradients: add with +=, do not assign.", overwritten),
        ("that is a's term alone. Add b's: it goes where b came from, columns 1 to 4.",
         lambda: only(da, np.s_[:, :3])),
        ("that is b's term alone: the cell had already put a's term into dv. Keep it and add b's.",
         lambda: only(db, np.s_[:, 1:])),
        ("b = v[:, 1:] starts at column 1, so its gradient goes to dv[:, 1:], not dv[:, :4].", shifted),
        ("gradients add: b's term is + db, not - db.", lambda: with_b(-db)),
        ("that adds 1 where b came from: the slice's own derivative is 1, but the chain rule multiplies it "
         "by b's upstream gradient db.", lambda: with_b(np.ones_like(db))),
        ("concatenating is the backward of a split, where the slices share nothing. These two overlap: the "
         "gradient has v's shape (2, 5) and the overlap adds up.", lambda: np.concatenate([da, db], axis=1)),
    ]
    check("gradient of overlapping slices", yours, expected, mistakes,
                 right="Columns 1 and 2 are read by both slices, so they collect da + db.", answer="my_dv")
