"""Lesson 02 (channel attention): the checks behind its "your turn" cells.

Each function takes the learner's value (``...`` while untried) and prints one line (see
:func:`sa_course.your_turn.check`); it returns nothing, so that a lesson's check cell shows only
that line. The tasks, in the order the lesson asks them:

- :func:`pooled_shape`: the shape of the official code's pooled ``xn`` for C = 64, G = 4;
- :func:`pre_activation`: the loop's z, vectorised: ``z = w * mean_hw(x0) + b``, shape (N, K);
- :func:`sigmoid_backward`: the term through the sigmoid, ``dz = da * a * (1 - a)``.
"""
from __future__ import annotations

import numpy as np

from sa_course.your_turn import check
from sa_numpy.functional import sigmoid

#: pooled_shape: x (B, C, H, W) = (2, 64, 7, 7), G = 4, so N = B*G = 8 and K = C // (2G) = 8.
POOLED_SHAPE = (8, 8, 1, 1)
POOLED_SHAPE_MISTAKES = [
    ("the layer groups before it pools: x_0 has B*G = 8 rows and K = 8 channels, not (B, C).", (2, 64, 1, 1)),
    ("16 = C/G is a whole group. The channel branch gets half of it: K = C/(2G) = 8.", (8, 16, 1, 1)),
    ("the right numbers, and the layout sa_numpy keeps in its cache. The official nn.AdaptiveAvgPool2d(1) "
     "keeps the pooled axes with size 1, so that xn broadcasts against x_0 (N, K, H, W).", (8, 8)),
    ("that is the shape of x_0 itself. Pooling averages each H x W map to a single number.", (8, 8, 7, 7)),
    ("the first axis is the B*G = 8 (sample, group) rows, not the B = 2 samples.", (2, 8, 1, 1)),
]


def pooled_shape(yours) -> None:
    """The shape of ``xn = self.avg_pool(x_0)`` in the official layer for x (2, 64, 7, 7), G = 4."""
    check("shape of the pooled x_0", yours, POOLED_SHAPE, POOLED_SHAPE_MISTAKES,
                 right="One average per (sample, group) row and channel, with H and W kept as size-1 axes.",
                 answer="my_shape")


def pre_activation(yours, x0: np.ndarray, cweight: np.ndarray, cbias: np.ndarray) -> None:
    """z (N, K) = cweight * mean over (H, W) of x0 + cbias, for x0 (N, K, H, W), cweight and cbias (K,)."""
    mean = x0.mean(axis=(2, 3))
    expected = cweight * mean + cbias
    mistakes = [
        ("a sum over the pixels, not their average: divide by P = H*W (or use .mean).",
         lambda: cweight * x0.sum(axis=(2, 3)) + cbias),
        ("that averages over the rows too, leaving one number per channel. Each (sample, group) row has its "
         "own average: take the mean over the pixel axes 2 and 3 only.", lambda: cweight * x0.mean(axis=(0, 2, 3)) + cbias),
        ("cbias is missing: z = w s + b.", lambda: cweight * mean),
        ("cweight and cbias are swapped: cweight multiplies the average, cbias is added.",
         lambda: cbias * mean + cweight),
        ("that is the gate a = sigmoid(z). This task asks for z, the value before the sigmoid.",
         lambda: sigmoid(expected)),
        ("the right values, in shape (N, K, 1, 1) (keepdims=True). The loop fills z with shape (N, K): "
         "drop keepdims here.", lambda: expected[:, :, None, None]),
    ]
    check("vectorised z", yours, expected, mistakes,
                 right="The four loops became a mean over axes (2, 3) and a broadcast of the (K,) parameters over the rows.",
                 answer="my_z")


def sigmoid_backward(yours, da: np.ndarray, gate: np.ndarray) -> None:
    """dz = da * a * (1 - a) for the gate a = sigmoid(z) (N, K) and its upstream gradient da (N, K)."""
    expected = da * gate * (1 - gate)
    z = np.log(gate) - np.log1p(-gate)   # the z that gave this gate
    mistakes = [
        ("the sigmoid's derivative is missing: multiply da by sigma'(z) = a (1 - a).", lambda: da),
        ("that is the sigmoid's own derivative a (1 - a) alone: the chain rule multiplies it by the "
         "upstream gradient da.", lambda: gate * (1 - gate)),
        ("gate already is sigmoid(z): applying sigmoid to it again computes the derivative at sigmoid(z), "
         "not at z. Use a (1 - a) with a = gate.", lambda: da * sigmoid(gate) * (1 - sigmoid(gate))),
        ("the sign: the sigmoid rises everywhere, so its derivative a (1 - a) is positive.",
         lambda: -expected),
        ("a = sigma(z) is the sigmoid itself. Its derivative is a (1 - a).", lambda: da * gate),
        ("one factor of sigma'(z) = a (1 - a) is missing.", lambda: da * (1 - gate)),
        ("sigma'(z) = sigma(z) (1 - sigma(z)) takes the gate a = sigma(z), not z itself: a (1 - a).",
         lambda: da * z * (1 - z)),
    ]
    check("gradient through the sigmoid", yours, expected, mistakes,
                 right="dz = da * a * (1 - a): the sigmoid's derivative, written with its own output.", answer="my_dz")
