# %% [markdown]
# # Exercise 05 · The whole layer
#
# Goes with lesson 05 (the whole layer). You assemble the Shuffle Attention layer from its
# parts, forward and backward. The check cell under your code compares it with the reference
# `sa_numpy.sa_forward` / `sa_backward` and with numerical gradients, and names the mistake
# when it recognises one. Then two parts that build on it: a **bonus** (not graded), the same
# forward fused into fewer passes over memory; and a **finale**, your layer training a
# PyTorch network.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell under it. Grade yourself from a terminal with `make grade` (just this
# notebook: `make grade NB=exercises/05_sa_layer.ipynb`). The grader grades `sa_forward` and
# `sa_backward`; it skips the bonus and the finale.
#
# ## Part 1: the layer from its parts
#
# Lesson 05 drew the chain; here you write it. The forward is the paper's figure, read left
# to right, and every step keeps the cache its backward will need:
#
# $$x \xrightarrow{\text{split}} (x_0, x_1) \xrightarrow{\text{gates}}
#   \big(x_0\,\sigma(w_1 s + b_1),\ x_1\,\sigma(w_2\,\mathrm{GN}(x_1) + b_2)\big)
#   \xrightarrow{\text{merge}} y \xrightarrow{\text{shuffle, 2 groups}} \text{out}$$
#
# Shapes: $x$, $y$ and out are $(B, C, H, W)$; $x_0, x_1$ and the gated $y_0, y_1$ are
# $(B \cdot G, K, H, W)$ with $K = C/2G$. `params` holds the six official parameters:
# `cweight`, `cbias`, `sweight`, `sbias` of shape $(1, K, 1, 1)$ and `gn.weight`, `gn.bias` of
# shape $(K,)$; pass `eps` on to the spatial gate. The backward runs the parts' backwards in
# the reverse order, each with its own cache, and returns `dx` and a dict of gradients with the
# same keys and shapes as `params`. The reference parts are imported below; you may use your
# own from exercises 01-04 instead.

# %%
import numpy as np

from sa_numpy import (channel_gate_backward, channel_gate_forward, channel_shuffle_backward,
                      channel_shuffle_forward, group_merge_backward, group_merge_forward,
                      group_split_backward, group_split_forward, spatial_gate_backward,
                      spatial_gate_forward)
from sa_numpy.functional import sigmoid

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
# ## Part 2 (bonus, not graded): the fused forward
#
# Your chain makes a new array at almost every step: the normalised $x_1$, its affine, the
# gate, the gated halves, the merged $y$ and its shuffled copy. Each is a pass over memory,
# and on a CPU those passes, not the arithmetic, take most of the time. Write
# `sa_forward_fused(x, params, groups, eps)` that returns the same `out` (no cache: the bonus
# has no backward) with fewer passes:
#
# 1. **Read the branches as views.** `x.reshape(B, G, 2, K, H * W)` holds group $g$'s
#    channel half at `[:, g, 0]` and its spatial half at `[:, g, 1]`, each $(B, G, K, P)$
#    with $P = HW$ after slicing: no copy.
# 2. **One affine for the spatial gate.** GroupNorm's affine and the gate's affine are one
#    affine (lesson 03, section 6), and the normalisation's $r = (v + \epsilon)^{-1/2}$ folds
#    in too:
#    $$\sigma\big(w_2\,(\gamma\,(x_1 - \mu)\,r + \beta) + b_2\big) = \sigma\big(a\,(x_1 - \mu) + c\big),
#      \qquad a = w_2\,\gamma\,r, \quad c = w_2\,\beta + b_2,$$
#    with $a$ one number per row and channel and $c$ one per channel.
# 3. **Write straight into the shuffled place.** The shuffle sends $y$'s channel $c$ to
#    output channel $2\,(c \bmod C/2) + \lfloor c / (C/2) \rfloor$. Create `out` once
#    (`np.empty_like(x)`, which keeps the dtype) and assign each branch's result into a
#    *view* of `out` that is in $y$'s channel order; assigning into a view writes into `out`.
#
# <details><summary>Hint for step 3</summary>
#
# `out.reshape(B, C // 2, 2, P).transpose(0, 2, 1, 3)` is a view whose `[:, s, j]` is output
# channel $2j + s$, that is $y$'s channel $s \cdot C/2 + j$. Reshape it further to
# `(B, 2, G, K, P)`: then `[:, s, t]` is $y$'s block $q = sG + t$ of $K$ channels, and block
# $q = 2g + i$ is group $g$'s half $i$. `np.divmod(2 * np.arange(G), G)` gives the $(s, t)$
# of every channel half; a view indexed with two index arrays accepts an assignment.
# </details>
#
# The check compares your fused forward with **your own** `sa_forward` (which must pass its
# check first) for $G = 3$ and $G = 4$, then times both on a larger input and prints the
# speed-up. The bonus is optional: left as it is, its check says "Optional, not attempted" and
# the notebook goes on to the finale.

# %% tags=["exercise", "optional"]
def sa_forward_fused(x, params, groups, eps=1e-5):
    """x (B, C, H, W), params, groups G -> out (B, C, H, W), each branch written into its shuffled place."""
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    k = c // (2 * groups)
    p = {name: np.reshape(v, (1, 1, k, 1)) for name, v in params.items()}   # broadcast over (B, G, K, P)
    xg = x.reshape(b, groups, 2, k, h * w)                                  # a view, no copy
    x0, x1 = xg[:, :, 0], xg[:, :, 1]                                       # (B, G, K, P) each
    out = np.empty_like(x)
    shuffled = out.reshape(b, c // 2, 2, h * w).transpose(0, 2, 1, 3).reshape(b, 2, groups, k, h * w)
    half0, block0 = np.divmod(2 * np.arange(groups), groups)       # where group g's channel half lands
    half1, block1 = np.divmod(2 * np.arange(groups) + 1, groups)   # ... and its spatial half

    gate0 = sigmoid(p["cweight"] * x0.mean(axis=-1, keepdims=True) + p["cbias"])
    shuffled[:, half0, block0] = x0 * gate0

    centred = x1 - x1.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    scale = p["sweight"] * p["gn.weight"] * rstd                   # (B, G, K, 1)
    shift = p["sweight"] * p["gn.bias"] + p["sbias"]               # (1, 1, K, 1)
    shuffled[:, half1, block1] = x1 * sigmoid(scale * centred + shift)
    return out
    ### END SOLUTION

# %% tags=["check", "nbval-ignore-output"]
from sa_course.bonus_fused import check_fused

check_fused(sa_forward_fused, sa_forward)

# %% [markdown]
# ## Part 3 (finale): your layer trains a network
#
# Until now your layer has only been compared with references, one call at a time. Here it
# does the job it was built for. `sa_course.numpy_in_torch` wraps your `sa_forward` and
# `sa_backward` in a `torch.autograd.Function`: its forward hands your `sa_forward` the input
# and the six parameters as float64 NumPy arrays, and its backward hands your `sa_backward`
# the incoming gradient and gives autograd your `dx` and parameter gradients, reshaped to the
# parameters' shapes. A module with the official parameter names holds the parameters, so it
# loads a torch SA layer's state dict unchanged.
#
# The check builds SA-ResNet-20 (`sa_torch.models.build_model("resnet20", "sa", groups=4)`),
# gives its SA layers random parameters (the official `cweight = sweight = 0` would cut two
# gradient paths, lesson 02), copies the network and swaps each of its 9 torch SA layers for
# one that runs your code. Both copies then train 20 SGD steps in float64 on the same batches
# (8 images of a seeded toy CIFAR stand-in, 16 × 16 pixels), and the plot lays your loss curve
# over the torch one. **Tolerance:** the losses must agree to $10^{-6}$ relative at every step;
# a correct layer lands near $10^{-15}$, while a wrong gradient term shows from step 2 on. It
# takes about half a minute on a 2-core CPU. The grader skips this cell.

# %% tags=["check"]
from sa_course.numpy_in_torch import check_training

check_training(sa_forward, sa_backward)

# %% [markdown]
# ## Questions
#
# 1. The check uses G = 3. Why would G = 2 hide one of the classic mistakes?
# 2. Count your layer's parameters for C = 256, G = 64, and compare with an SE block's
#    $2C^2/r$ for r = 16.
# 3. In the finale, step 1's loss depends on your forward only. Which of your functions does
#    step 2's loss test, and why can a wrong `sa_backward` still give the right step-1 loss?
# 4. A correct layer matches the torch curve to about $10^{-15}$, but the tolerance is
#    $10^{-6}$. What makes the two curves drift apart at all, and why does the drift grow with
#    the number of steps?
