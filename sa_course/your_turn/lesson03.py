"""Lesson 03's "your turn" tasks: GroupNorm's reshape, its statistics, one gradient term.

Each function takes the learner's value (and the arrays the lesson handed them), computes
the expected value itself, and calls :func:`sa_course.your_turn.check`, which prints one
line; it returns nothing, so that a lesson's check cell shows only that line. Shapes:
x (B, C, H, W); n_g groups of C/n_g channels; each (sample, group) row holds
m = (C/n_g)·H·W numbers.
"""
from __future__ import annotations

import numpy as np

from . import check


def grouped_shape(yours) -> None:
    """x of shape (2, 8, 3, 3), n_g = 4: the shape of ``x.reshape(B, n_g, -1)``."""
    check("the grouped shape", yours, (2, 4, 18), [
        ("that is (B, n_g, C/n_g, H, W); the -1 merges everything after the group axis into one "
         "axis of m = (C/n_g)·H·W numbers", (2, 4, 2, 3, 3)),
        ("m counts every number of a group: its C/n_g = 2 channels times H·W = 9 pixels", (2, 4, 9)),
        ("the batch axis stays: GroupNorm never mixes samples, so each sample keeps its own rows", (8, 18)),
        ("that is one row per channel (instance norm, n_g = C); here 4 groups share 8 channels", (2, 8, 9)),
    ], right="Each of the B·n_g = 8 rows holds one group's m = 18 numbers: the statistics are "
             "reductions over the last axis.", answer="my_shape")


def group_variance(yours, x: np.ndarray, num_groups: int) -> None:
    """The loop's ``var[b, g]``, vectorised: shape (B, n_g), biased (divide by m)."""
    b = x.shape[0]
    rows = x.reshape(b, num_groups, -1)
    check("vectorised variance", yours, rows.var(axis=2), [
        ("right values with keepdims=True: the loop fills a (B, n_g) array, so reduce without "
         "keepdims here (the normalisation itself wants keepdims)", lambda: rows.var(axis=2, keepdims=True)),
        ("that divides by m - 1 (ddof=1, torch.var's default): GroupNorm's variance divides by m",
         lambda: rows.var(axis=2, ddof=1)),
        ("that is the standard deviation, the square root of the variance", lambda: rows.std(axis=2)),
        ("that is a variance per channel (over H, W only): a group's variance runs over all its "
         "channels and pixels at once, one row of x.reshape(B, n_g, -1)", lambda: x.var(axis=(2, 3))),
        ("without the batch axis the rows mix samples: reshape to (B, n_g, -1), not (n_g, -1)",
         lambda: x.transpose(1, 0, 2, 3).reshape(num_groups, -1).var(axis=1)),
        ("that is the mean of the squares; subtract the square of the mean (or average (x - mu)^2)",
         lambda: (rows ** 2).mean(axis=2)),
        ("that is each row's mean; the variance is the mean of the squared differences from it",
         lambda: rows.mean(axis=2)),
    ], right="One reduction over the last axis replaces both loops.", answer="my_v")


def variance_term(yours, g: np.ndarray, xhat: np.ndarray, rstd: np.ndarray) -> None:
    """The full GroupNorm input gradient, in group layout: g, xhat (B, n_g, m), rstd (B, n_g, 1)."""
    mean = lambda a: a.mean(axis=-1, keepdims=True)
    mean_only = rstd * (g - mean(g))
    check("the variance term", yours, mean_only - rstd * xhat * mean(g * xhat), [
        ("unchanged: that is the gradient with v held constant. v depends on x too: its term is "
         "the one with xhat in the boxed formula", lambda: mean_only),
        ("the sign: removing the component along xhat is a subtraction", lambda: mean_only + rstd * xhat * mean(g * xhat)),
        ("the term uses the row's AVERAGE of g * xhat, one number per row, times xhat",
         lambda: mean_only - rstd * xhat * (g * xhat)),
        ("a sum instead of a mean: divide by m (use .mean(axis=-1, keepdims=True))",
         lambda: mean_only - rstd * xhat * (g * xhat).sum(axis=-1, keepdims=True)),
        ("the new term is scaled by r as well: the whole bracket is multiplied by r",
         lambda: mean_only - xhat * mean(g * xhat)),
        ("the mean runs over the row (axis -1, the group's m numbers), not over the batch",
         lambda: mean_only - rstd * xhat * (g * xhat).mean(axis=0, keepdims=True)),
        ("the average is of g * xhat: the upstream gradient g weights each xhat (here it is missing)",
         lambda: mean_only - rstd * xhat * mean(xhat * xhat)),
        ("the mean term is gone: start from dx_mean_only, r * (g - mean(g)), and subtract the new term",
         lambda: rstd * (g - xhat * mean(g * xhat))),
    ], right="Now every row's gradient is orthogonal to 1 and (nearly) to xhat.", rtol=1e-9, answer="my_dx")
