# %% [markdown]
# # Exercise 05 · The whole layer
#
# Goes with lesson 05 (the whole layer). You compose the parts into the
# Shuffle Attention layer, forward and backward. The check cell under your code compares
# it with the reference `sa_numpy.sa_forward` / `sa_backward` and with numerical gradients,
# and names the mistake when it recognises one.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell. Grade yourself from a terminal with `make grade` or
# `python -m pytest tests/test_my_exercises.py`.
#
# ## The task
#
# The layer is the paper's figure, read left to right:
#
# $$x \xrightarrow{\text{split}} (x_0, x_1) \xrightarrow{\text{gates}}
#   \big(x_0\,\sigma(w_1 s + b_1),\ x_1\,\sigma(w_2\,\mathrm{GN}(x_1) + b_2)\big)
#   \xrightarrow{\text{merge}} y \xrightarrow{\text{shuffle, 2 groups}} \text{out}$$
#
# `params` holds the six official parameters: `cweight`, `cbias`, `sweight`, `sbias` of
# shape $(1, K, 1, 1)$ and `gn.weight`, `gn.bias` of shape $(K,)$. The backward runs the
# parts' backwards in reverse order and returns `dx` and a dict of gradients with the same
# keys and shapes as `params`. The reference parts are imported below; you may use your own
# from exercises 01-04 instead.

# %%
import numpy as np

from sa_numpy import (channel_gate_backward, channel_gate_forward, channel_shuffle_backward,
                      channel_shuffle_forward, group_merge_backward, group_merge_forward,
                      group_split_backward, group_split_forward, spatial_gate_backward,
                      spatial_gate_forward)

# %% tags=["exercise"]
def sa_forward(x, params, groups, eps=1e-5):
    """x (B, C, H, W), params (the six official names), groups G -> (out (B, C, H, W), cache)."""
    ### BEGIN SOLUTION
    (x0, x1), split = group_split_forward(x, groups)
    y0, channel = channel_gate_forward(x0, params["cweight"], params["cbias"])
    y1, spatial = spatial_gate_forward(x1, params["sweight"], params["sbias"],
                                       params["gn.weight"], params["gn.bias"], eps)
    y, merge = group_merge_forward(y0, y1, x.shape[0])
    out, shuffle = channel_shuffle_forward(y, 2)
    return out, (split, channel, spatial, merge, shuffle)
    ### END SOLUTION


def sa_backward(dout, cache):
    """dout (B, C, H, W) -> (dx (B, C, H, W), grads: dict keyed like params, same shapes)."""
    ### BEGIN SOLUTION
    split, channel, spatial, merge, shuffle = cache
    dy0, dy1 = group_merge_backward(channel_shuffle_backward(dout, shuffle), merge)
    dx0, dcweight, dcbias = channel_gate_backward(dy0, channel)
    dx1, dsweight, dsbias, dgn_weight, dgn_bias = spatial_gate_backward(dy1, spatial)
    grads = {"cweight": dcweight, "cbias": dcbias, "sweight": dsweight, "sbias": dsbias,
             "gn.weight": dgn_weight, "gn.bias": dgn_bias}
    return group_split_backward((dx0, dx1), split), grads
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_sa_layer

check_sa_layer(sa_forward, sa_backward)

# %% [markdown]
# ## Questions
#
# 1. The check uses G = 3. Why would G = 2 hide one of the classic mistakes?
# 2. Count your layer's parameters for C = 256, G = 64, and compare with an SE block's
#    $2C^2/r$ for r = 16.
