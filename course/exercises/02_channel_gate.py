# %% [markdown]
# # Exercise 02 · The channel gate
#
# Goes with lesson 02 (channel attention). You write the forward and the
# backward pass of the channel-attention branch. The check cell under your code compares it
# with the reference in `sa_numpy` and with numerical gradients, and names the mistake when
# it recognises one.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell. Then save the notebook and grade it from a terminal in the project folder with
# `make grade NB=exercises/02_channel_gate.ipynb` (`make grade` grades every exercise). The grader
# runs a copy in a fresh kernel and never changes your file.
#
# ## The task
#
# The input is one half of every group, $x_0$ of shape $(N, K, H, W)$ with $N = B\cdot G$.
# For each row $n$ and channel $k$, with $P = H W$ pixels:
#
# $$s_{nk} = \frac{1}{P}\sum_{h,w} x_{0,nkhw}, \qquad
#   z_{nk} = w_k\, s_{nk} + b_k, \qquad
#   y_{0,nkhw} = x_{0,nkhw}\,\sigma(z_{nk})$$
#
# where $\sigma$ is the sigmoid, and $w$ = `cweight` and $b$ = `cbias` have the official shape
# $(1, K, 1, 1)$: one value per channel, shared by every row. For the backward, given the
# upstream gradient $\bar{y}_0 = \partial L/\partial y_0$ (`dout`), return $\bar{x}_0$ (`dx0`),
# and $\bar{w}$, $\bar{b}$ (`dcweight`, `dcbias`) in the parameters' shape $(1, K, 1, 1)$.
# Remember that $x_0$ is used twice.

# %%
import numpy as np

from sa_numpy.functional import sigmoid

# %% tags=["exercise"]
def channel_gate_forward(x0, cweight, cbias):
    """x0 (N, K, H, W); cweight, cbias (1, K, 1, 1) -> (y0 (N, K, H, W), cache).

    cache: anything your backward needs, for example a tuple.
    """
    ### BEGIN SOLUTION
    s = x0.mean(axis=(2, 3), keepdims=True)            # (N, K, 1, 1)
    gate = sigmoid(cweight * s + cbias)                 # (N, K, 1, 1)
    return x0 * gate, (x0, s, gate, cweight)
    ### END SOLUTION


def channel_gate_backward(dout, cache):
    """dout (N, K, H, W) -> (dx0 (N, K, H, W), dcweight (1, K, 1, 1), dcbias (1, K, 1, 1))."""
    ### BEGIN SOLUTION
    x0, s, gate, cweight = cache
    npix = x0.shape[2] * x0.shape[3]
    dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * gate * (1 - gate)   # (N, K, 1, 1)
    dcweight = (dz * s).sum(axis=0, keepdims=True)
    dcbias = dz.sum(axis=0, keepdims=True)
    dx0 = dout * gate + dz * cweight / npix             # direct path + path through the mean
    return dx0, dcweight, dcbias
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_channel_gate

check_channel_gate(channel_gate_forward, channel_gate_backward)

# %% [markdown]
# ## Questions
#
# 1. Why does the check use random `cweight` rather than the official initial value 0?
#    What would a wrong `dx0` get away with at `cweight = 0`?
# 2. The gate has one value per channel. Which term of `dx0` is the same at every pixel?
