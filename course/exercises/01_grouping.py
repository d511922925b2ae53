# %% [markdown]
# # Exercise 01 · Feature grouping
#
# Goes with lesson 01 (feature grouping). You write the split of a feature
# map into groups and halves, the merge back, and the backward of both. The check cell
# under your code compares them with the reference in `sa_numpy` and names the mistake when
# it recognises one.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell. Then save the notebook and grade it from a terminal in the project folder with
# `make grade NB=exercises/01_grouping.ipynb` (`make grade` grades every exercise). The grader
# runs a copy in a fresh kernel and never changes your file.
#
# ## The task
#
# $x$ has shape $(B, C, H, W)$. Split its channels into $G$ groups of $2K$ channels
# ($K = C / 2G$), and each group into two halves of $K$ channels:
#
# $$x_{b,\,g\cdot 2K + i\cdot K + k,\,h,\,w} \;\longrightarrow\; x_{i}[\,bG + g,\ k,\ h,\ w\,],
#   \qquad i \in \{0, 1\}$$
#
# so $x_0$ (the channel branch) and $x_1$ (the spatial branch) each have shape
# $(BG, K, H, W)$. In einops: `'b (g two k) h w -> two (b g) k h w'`.
# The merge does the opposite with the branch outputs $y_0, y_1$. Each backward gets the
# gradients of its outputs, written with bars ($\bar{x}_0, \bar{x}_1$ for the split, $\bar{y}$ for
# the merge; `dout` in the code), and sends them back to where the values came from. The halves
# may be views of `x`, but the merge's output and every gradient must be new arrays.

# %%
import numpy as np

# %% tags=["exercise"]
def group_split_forward(x, groups):
    """x (B, C, H, W) -> ((x0, x1), cache), x0 and x1 each (B*G, K, H, W)."""
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    k = c // (2 * groups)
    xg = x.reshape(b * groups, 2 * k, h, w)
    return (xg[:, :k], xg[:, k:]), x.shape
    ### END SOLUTION


def group_split_backward(dout, cache):
    """dout = (dx0, dx1), each (B*G, K, H, W) -> dx (B, C, H, W)."""
    ### BEGIN SOLUTION
    dx0, dx1 = dout
    return np.concatenate([dx0, dx1], axis=1).reshape(cache)
    ### END SOLUTION


def group_merge_forward(y0, y1, batch):
    """y0, y1 (B*G, K, H, W) -> (y (B, C, H, W) with C = 2*G*K, cache)."""
    ### BEGIN SOLUTION
    n, k, h, w = y0.shape
    return np.concatenate([y0, y1], axis=1).reshape(batch, -1, h, w), (n, k)
    ### END SOLUTION


def group_merge_backward(dout, cache):
    """dout (B, C, H, W) -> (dy0, dy1), each (B*G, K, H, W)."""
    ### BEGIN SOLUTION
    n, k = cache
    dg = dout.reshape(n, 2 * k, *dout.shape[2:])
    return dg[:, :k].copy(), dg[:, k:].copy()
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_grouping

check_grouping(group_split_forward, group_split_backward, group_merge_forward, group_merge_backward)

# %% [markdown]
# ## Questions
#
# 1. Which of your four functions copy data, and which only return views? Check with
#    `np.shares_memory`.
# 2. Why must `group_merge_backward` return copies, when `group_split_forward` may return views?
