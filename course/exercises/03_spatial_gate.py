# %% [markdown]
# # Exercise 03 · GroupNorm and the spatial gate
#
# Goes with lesson 03 (spatial attention via GroupNorm). You write GroupNorm for any number
# of groups, forward and backward, and then the spatial-attention branch built on it. Each
# check cell compares your functions with the reference in `sa_numpy` and with numerical
# gradients, and names the mistake when it recognises one.
#
# **How to work.** Replace each `raise NotImplementedError(...)` line with your code and run
# the check cell under it. Grade yourself from a terminal with `make grade` (just this
# notebook: `make grade NB=exercises/03_spatial_gate.ipynb`).
#
# The notation is lesson 03's: $n_g$ = `num_groups` GroupNorm groups, $v$ a variance,
# $\sigma$ the sigmoid, and a bar over a name for the gradient of the loss with respect to it
# ($\bar{y}$ is `dout`, $\bar{x}$ is `dx`).
#
# ## Part 1: GroupNorm
#
# $x$ has shape $(B, C, H, W)$. Each sample's channels form $n_g$ groups of $C/n_g$
# channels; each (sample, group) holds $m = (C/n_g)\,HW$ numbers with mean $\mu$ and
# **biased** variance $v$ (divide by $m$, not $m - 1$):
#
# $$\hat{x} = \frac{x - \mu}{\sqrt{v + \epsilon}}, \qquad
#   y_{bchw} = \gamma_c\,\hat{x}_{bchw} + \beta_c$$
#
# with `gamma`, `beta` of shape $(C,)$. Lesson 03 wrote this with loops over samples and
# groups, then replaced the loops by one reshape: $(B, C, H, W) \to (B, n_g, m)$ puts each
# group's $m$ numbers in one row, so $\mu$ and $v$ are reductions over the last axis
# (`keepdims=True` keeps them broadcastable); reshape back to $(B, C, H, W)$ before the
# per-channel affine. Keep in the cache what the backward needs.
#
# For the backward, write $r = (v + \epsilon)^{-1/2}$ and $g = \gamma\,\bar{y}$ (the gradient
# reaching $\hat{x}$). Within every group (lesson 03, section 4):
#
# $$\bar{x}_i = r\Big(g_i - \frac{1}{m}\sum_j g_j - \hat{x}_i\,\frac{1}{m}\sum_j g_j \hat{x}_j\Big),
#   \qquad \bar{\gamma}_c = \sum_{b,h,w} \bar{y}\,\hat{x}, \qquad \bar{\beta}_c = \sum_{b,h,w} \bar{y}$$
#
# The two sums over $j$ are row means in the $(B, n_g, m)$ layout. Return `dgamma`, `dbeta`
# of shape $(C,)$.

# %%
import numpy as np

from sa_numpy.functional import sigmoid

# %% tags=["exercise"]
def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    """x (B, C, H, W), gamma and beta (C,) -> (out (B, C, H, W), cache)."""
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    xg = x.reshape(b, num_groups, -1)                                  # (B, n_g, m)
    rstd = 1 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xhat = ((xg - xg.mean(axis=2, keepdims=True)) * rstd).reshape(x.shape)
    out = gamma[:, None, None] * xhat + beta[:, None, None]
    return out, (xhat, rstd, gamma, num_groups)
    ### END SOLUTION


def groupnorm_backward(dout, cache):
    """dout (B, C, H, W) -> (dx (B, C, H, W), dgamma (C,), dbeta (C,))."""
    ### BEGIN SOLUTION
    xhat, rstd, gamma, num_groups = cache
    b = dout.shape[0]
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    dbeta = dout.sum(axis=(0, 2, 3))
    g = (dout * gamma[:, None, None]).reshape(b, num_groups, -1)      # (B, n_g, m)
    xg = xhat.reshape(g.shape)
    row_mean = lambda a: a.mean(axis=2, keepdims=True)
    dx = rstd * (g - row_mean(g) - xg * row_mean(g * xg))
    return dx.reshape(dout.shape), dgamma, dbeta
    ### END SOLUTION

# %% tags=["check"]
from sa_course.checks import check_groupnorm

check_groupnorm(groupnorm_forward, groupnorm_backward)

# %% [markdown]
# ## Part 2: the spatial gate
#
# $x_1$ has shape $(B \cdot G, K, H, W)$. Normalise it with your GroupNorm using **one group
# per channel** ($n_g = K$, an instance norm) and its own affine `gn_weight`, `gn_bias` of
# shape $(K,)$, then gate every pixel (lesson 03, section 5):
#
# $$\nu = \operatorname{GN}_{n_g = K}(x_1;\ \gamma, \beta), \qquad z = w\,\nu + b, \qquad
#   y_1 = x_1 \odot \sigma(z)$$
#
# with $w$ = `sweight` and $b$ = `sbias` of shape $(1, K, 1, 1)$. In the backward $x_1$
# reaches $y_1$ along two paths, as the gated value and through the gate: with
# $\bar{z} = \bar{y}_1 \odot x_1 \odot \sigma(z)(1 - \sigma(z))$,
# $\bar{x}_1 = \bar{y}_1 \odot \sigma(z) + \text{GN-backward}(w\,\bar{z})$. Return `dx1`, then
# `dsweight`, `dsbias` of shape $(1, K, 1, 1)$ and `dgn_weight`, `dgn_bias` of shape $(K,)$.

# %% tags=["exercise"]
def spatial_gate_forward(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    """x1 (B*G, K, H, W) -> (y1 (B*G, K, H, W), cache)."""
    ### BEGIN SOLUTION
    nu, gn_cache = groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    gate = sigmoid(sweight * nu + sbias)
    return x1 * gate, (x1, nu, gate, sweight, gn_cache)
    ### END SOLUTION


def spatial_gate_backward(dout, cache):
    """dout (B*G, K, H, W) -> (dx1, dsweight, dsbias, dgn_weight, dgn_bias)."""
    ### BEGIN SOLUTION
    x1, nu, gate, sweight, gn_cache = cache
    dz = dout * x1 * gate * (1 - gate)
    dsweight = (dz * nu).sum(axis=(0, 2, 3), keepdims=True)
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
# 2. With $H = W = 1$ the spatial gate's GroupNorm sees one element per group. What is $\hat{x}$
#    then, and what does the gate become?
