# %% [markdown]
# # Exercise 04 · Channel shuffle
#
# Goes with lesson 04 (channel shuffle). You write the channel shuffle and its
# backward. The check cell under your code compares them with the reference in `sa_numpy`
# for `groups` = 2, 3 and 1, and names the mistake when it recognises one.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell. Grade yourself from a terminal with `make grade` (just this notebook:
# `make grade NB=exercises/04_shuffle.ipynb`).
#
# ## The task
#
# Write the $C$ channels of $x$ $(B, C, H, W)$ into a table of `groups` rows of
# $J = C/\text{groups}$ channels, one row per group, and read the table out **column by
# column** (the same as transposing it and reading the transpose row by row, which is what
# lesson 04 prints):
#
# $$\text{out}_{b,\ j\cdot\text{groups} + i} = x_{b,\ i\cdot J + j},
#   \qquad 0 \le i < \text{groups},\ 0 \le j < J$$
#
# With `groups = 2` and channels 1..8 the table has rows 1 2 3 4 and 5 6 7 8, and the order
# becomes 1,5,2,6,3,7,4,8. On the array that is a reshape of the channel axis into
# (`groups`, $J$), a transpose of those two axes and a reshape back. A shuffle is a
# permutation: its backward sends each gradient back to the channel it came from (the
# inverse permutation, which lesson 04 shows is again a shuffle). Both functions must
# return new arrays, even when the permutation is the identity.

# %%
import numpy as np

# %% tags=["exercise"]
def channel_shuffle_forward(x, groups=2):
    """x (B, C, H, W) -> (out (B, C, H, W), cache)."""
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    out = x.reshape(b, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w)
    return out.copy() if np.shares_memory(out, x) else out, groups
    ### END SOLUTION


def channel_shuffle_backward(dout, cache):
    """dout (B, C, H, W) -> dx (B, C, H, W): the inverse permutation."""
    ### BEGIN SOLUTION
    b, c, h, w = dout.shape
    dx = dout.reshape(b, c // cache, cache, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w)
    return dx.copy() if np.shares_memory(dx, dout) else dx
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_shuffle

check_shuffle(channel_shuffle_forward, channel_shuffle_backward)

# %% [markdown]
# ## Questions
#
# 1. Shuffling twice with 2 groups is not the identity for $C > 4$. How many times must you
#    shuffle 8 channels with 2 groups to get back where you started?
# 2. Why does `reshape` in the forward copy for `groups = 2` but not for `groups = 1`?
