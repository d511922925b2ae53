# %% [markdown]
# # Exercise 03 · GroupNorm and the spatial gate
#
# Goes with lesson 03 (spatial attention via GroupNorm). You write GroupNorm for any number
# of groups, forward and backward, and then the spatial-attention branch built on it. Each
# check cell compares your functions with the reference in `sa_numpy` and with numerical
# gradients, and names the mistake when it recognises one.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell under it. Grade yourself from a terminal with `make grade` or
# `python -m pytest tests/test_my_exercises.py`.
#
# ## Part 1: GroupNorm
#
# $x$ has shape $(N, C, H, W)$. Each sample's channels form $g$ = `num_groups` groups of
# $C/g$ channels; each (sample, group) has $M = (C/g)\,HW$ elements with mean $\mu$ and
# **biased** variance $\sigma^2$ (divide by $M$, not $M - 1$):
#
# $$\hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
#   \text{out}_{nchw} = \gamma_c\,\hat x_{nchw} + \beta_c$$
#
# with `gamma`, `beta` of shape $(C,)$. For the backward, with $\delta = \text{dout}\cdot\gamma$
# (the gradient reaching $\hat x$) and bars for means over each (sample, group):
#
# $$\frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2+\epsilon}}
#   \left(\delta - \overline{\delta} - \hat x\,\overline{\delta\,\hat x}\right)$$
#
# Derive it yourself before you use it. Return `dgamma`, `dbeta` of shape $(C,)$.

# %%
import numpy as np

from sa_numpy.functional import sigmoid

# %% tags=["exercise"]
def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    """x (N, C, H, W), gamma and beta (C,) -> (out (N, C, H, W), cache)."""
    ### BEGIN SOLUTION
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, -1)                                  # (N, G, M)
    rstd = 1 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xhat = ((xg - xg.mean(axis=2, keepdims=True)) * rstd).reshape(x.shape)
    out = gamma[:, None, None] * xhat + beta[:, None, None]
    return out, (xhat, rstd, gamma, num_groups)
    ### END SOLUTION


def groupnorm_backward(dout, cache):
    """dout (N, C, H, W) -> (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    ### BEGIN SOLUTION
    xhat, rstd, gamma, num_groups = cache
    n = dout.shape[0]
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    dbeta = dout.sum(axis=(0, 2, 3))
    delta = (dout * gamma[:, None, None]).reshape(n, num_groups, -1)
    xg = xhat.reshape(delta.shape)
    group_mean = lambda a: a.mean(axis=2, keepdims=True)
    dx = rstd * (delta - group_mean(delta) - xg * group_mean(delta * xg))
    return dx.reshape(dout.shape), dgamma, dbeta
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_groupnorm

check_groupnorm(groupnorm_forward, groupnorm_backward)

# %% [markdown]
# ## Part 2: the spatial gate
#
# $x_1$ has shape $(N, K, H, W)$. Normalise it with GroupNorm using **one group per
# channel** (`num_groups = K`, an instance norm) and its own affine `gn_weight`, `gn_bias`
# of shape $(K,)$, then gate every pixel:
#
# $$n = \mathrm{GN}_K(x_1), \qquad z = w\,n + b, \qquad y_1 = x_1\,\sigma(z)$$
#
# with $w$ = `sweight` and $b$ = `sbias` of shape $(1, K, 1, 1)$. Use your GroupNorm from
# part 1. In the backward, $x_1$ is used twice again. Return `dx1`, then `dsweight`,
# `dsbias` of shape $(1, K, 1, 1)$ and `dgn_weight`, `dgn_bias` of shape $(K,)$.

# %% tags=["exercise"]
def spatial_gate_forward(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    """x1 (N, K, H, W) -> (y1 (N, K, H, W), cache)."""
    ### BEGIN SOLUTION
    nrm, gn_cache = groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    gate = sigmoid(sweight * nrm + sbias)
    return x1 * gate, (x1, nrm, gate, sweight, gn_cache)
    ### END SOLUTION


def spatial_gate_backward(dout, cache):
    """dout (N, K, H, W) -> (dx1, dsweight, dsbias, dgn_weight, dgn_bias)."""
    ### BEGIN SOLUTION
    x1, nrm, gate, sweight, gn_cache = cache
    dz = dout * x1 * gate * (1 - gate)
    dsweight = (dz * nrm).sum(axis=(0, 2, 3), keepdims=True)
    dsbias = dz.sum(axis=(0, 2, 3), keepdims=True)
    dx_norm, dgn_weight, dgn_bias = groupnorm_backward(dz * sweight, gn_cache)
    return dout * gate + dx_norm, dsweight, dsbias, dgn_weight, dgn_bias
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_spatial_gate

check_spatial_gate(spatial_gate_forward, spatial_gate_backward)

# %% [markdown]
# ## Questions
#
# 1. Set `num_groups = 1` and `num_groups = C` in your GroupNorm: which well-known norms are these?
# 2. With $H = W = 1$ the spatial gate's GroupNorm sees one element per group. What is $\hat x$
#    then, and what does the gate become?
