"""A catalogue of realistic wrong solutions, written the way a learner would write them: each
must be caught with ITS diagnosis (the mistake's id and the words of its hint), never a guess.

The kinds a blind trial left undiagnosed: the right values in the wrong order (one axis reordered,
or several axes mixed), results returned or unpacked in swapped order, a constant factor, a factor
that varies per group, a missing chain-rule factor, a gate that is one minus the right one, the
upstream gradient forgotten, a step applied twice, means over the wrong axes, the spatial gate's
affines in the wrong order, stale or aliased caches, float64 gradients for float32 input; and
parameters broadcast against the wrong axis, which the checks' shapes (every axis its own size)
now turn into an error instead of a silent pass.
"""
import numpy as np
import pytest

import sa_numpy as ref
from sa_course import checks
from sa_course.checks import LearnerError
from sa_numpy.functional import sigmoid


# ---------------------------------------------------------------- 01 grouping

def split_forward(x, groups):
    b, c, h, w = x.shape
    k = c // (2 * groups)
    xg = x.reshape(b * groups, 2 * k, h, w)
    return (xg[:, :k], xg[:, k:]), x.shape


def split_backward(dout, cache):
    dx0, dx1 = dout
    return np.concatenate([dx0, dx1], axis=1).reshape(cache)


def merge_forward(y0, y1, batch):
    n, k, h, w = y0.shape
    return np.concatenate([y0, y1], axis=1).reshape(batch, -1, h, w), (n, k)


def merge_backward(dout, cache):
    n, k = cache
    dg = dout.reshape(n, 2 * k, *dout.shape[2:])
    return dg[:, :k].copy(), dg[:, k:].copy()


def split_forward_cache_first(x, groups):
    halves, cache = split_forward(x, groups)
    return cache, halves


def split_backward_interleaves_the_halves(dout, cache):
    dx0, dx1 = dout
    return np.stack([dx0, dx1], axis=2).reshape(cache)         # k0 of x0, k0 of x1, k1 of x0, ...


def split_backward_float64_buffer(dout, cache):
    dx = np.zeros(cache)
    dx[...] = split_backward(dout, cache)
    return dx


def merge_forward_rows_group_major(y0, y1, batch):
    n, k, h, w = y0.shape
    y = np.concatenate([y0, y1], axis=1).reshape(n // batch, batch, 2 * k, h, w)   # rows read as (g, b)
    return y.transpose(1, 0, 2, 3, 4).reshape(batch, -1, h, w), (n, k)


def merge_forward_interleaves_the_groups(y0, y1, batch):
    n, k, h, w = y0.shape
    y = np.concatenate([y0, y1], axis=1).reshape(batch, n // batch, 2 * k, h, w)
    return y.transpose(0, 2, 1, 3, 4).reshape(batch, -1, h, w), (n, k)       # one transpose too many


def merge_forward_float64_buffer(y0, y1, batch):
    y, cache = merge_forward(y0, y1, batch)
    out = np.zeros(y.shape)
    out[...] = y
    return out, cache


def merge_backward_swapped(dout, cache):
    dy0, dy1 = merge_backward(dout, cache)
    return dy1, dy0


# ---------------------------------------------------------------- 02 channel gate

def cg_forward(x0, cweight, cbias):
    s = x0.mean(axis=(2, 3), keepdims=True)
    gate = sigmoid(cweight * s + cbias)
    return x0 * gate, (x0, s, gate, cweight)


def cg_backward(dout, cache):
    x0, s, gate, cweight = cache
    npix = x0.shape[2] * x0.shape[3]
    dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * gate * (1 - gate)
    dcweight = (dz * s).sum(axis=0, keepdims=True)
    dcbias = dz.sum(axis=0, keepdims=True)
    return dout * gate + dz * cweight / npix, dcweight, dcbias


def cg_forward_nkwh(x0, cweight, cbias):
    _, (x0, s, gate, cweight) = cg_forward(x0, cweight, cbias)
    return np.einsum("nkhw,nk->nkwh", x0, gate[:, :, 0, 0]), (x0, s, gate, cweight)


def cg_forward_cache_first(x0, cweight, cbias):
    y0, cache = cg_forward(x0, cweight, cbias)
    return cache, y0


def cg_forward_pools_over_h(x0, cweight, cbias):
    s = x0.mean(axis=2, keepdims=True)
    return x0 * sigmoid(cweight * s + cbias), None


def cg_forward_z_into_s(x0, cweight, cbias):
    s = x0.mean(axis=(2, 3), keepdims=True)
    s *= cweight                          # z, in s's buffer: saves an array
    s += cbias
    gate = sigmoid(s)
    return x0 * gate, (x0, s, gate, cweight)


def cg_forward_flat_cweight(x0, cweight, cbias):
    s = x0.mean(axis=(2, 3), keepdims=True)
    return x0 * sigmoid(cweight.reshape(-1) * s + cbias), None      # (K,) broadcasts against W


def cg_forward_one_minus_gate(x0, cweight, cbias):
    s = x0.mean(axis=(2, 3), keepdims=True)
    gate = 1 - sigmoid(cweight * s + cbias)
    return x0 * gate, (x0, s, gate, cweight)


def cg_forward_sigmoid_twice(x0, cweight, cbias):
    s = x0.mean(axis=(2, 3), keepdims=True)
    gate = sigmoid(cweight * s + cbias)
    return x0 * sigmoid(gate), (x0, s, gate, cweight)          # the gate through the sigmoid again


def cg_backward_local_derivatives(dout, cache):
    """d y0 / d x0 and friends, each without the upstream gradient dout."""
    return cg_backward(np.ones_like(dout), cache)


def cg_backward_grads_swapped(dout, cache):
    dx0, dcweight, dcbias = cg_backward(dout, cache)
    return dx0, dcbias, dcweight


def cg_backward_dcbias_mean(dout, cache):
    x0, s, gate, cweight = cache
    dx0, dcweight, _ = cg_backward(dout, cache)
    dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * gate * (1 - gate)
    return dx0, dcweight, dz.mean(axis=0, keepdims=True)


def cg_backward_pool_path_without_cweight(dout, cache):
    x0, s, gate, cweight = cache
    _, dcweight, dcbias = cg_backward(dout, cache)
    dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * gate * (1 - gate)
    return dout * gate + dz / (x0.shape[2] * x0.shape[3]), dcweight, dcbias


def cg_backward_float64_buffer(dout, cache):
    dx0, dcweight, dcbias = cg_backward(dout, cache)
    buffer = np.zeros(dx0.shape)
    buffer[...] = dx0
    return buffer, dcweight, dcbias


_CG_LAST = {}


def cg_forward_keeps_a_global(x0, cweight, cbias):
    y0, _CG_LAST["cache"] = cg_forward(x0, cweight, cbias)
    return y0, None


def cg_backward_reads_the_global(dout, cache):
    return cg_backward(dout, _CG_LAST["cache"])


# ---------------------------------------------------------------- 03 GroupNorm

def gn_forward(x, gamma, beta, num_groups, eps=1e-5, axis=2):
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, -1)
    rstd = 1 / np.sqrt(xg.var(axis=axis, keepdims=True) + eps)
    xhat = ((xg - xg.mean(axis=axis, keepdims=True)) * rstd).reshape(x.shape)
    return gamma[:, None, None] * xhat + beta[:, None, None], (xhat, rstd, gamma, num_groups)


def gn_backward(dout, cache, axis=2, sign=1):
    xhat, rstd, gamma, num_groups = cache
    n = dout.shape[0]
    delta = (dout * gamma[:, None, None]).reshape(n, num_groups, -1)
    xg = xhat.reshape(delta.shape)
    mean = lambda a: a.mean(axis=axis, keepdims=True)
    dx = sign * rstd * (delta - mean(delta) - xg * mean(delta * xg))
    return dx.reshape(dout.shape), (dout * xhat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def gn_forward_stats_over_axis_1(x, gamma, beta, num_groups, eps=1e-5):
    return gn_forward(x, gamma, beta, num_groups, eps, axis=1)


def gn_forward_interleaved_groups(x, gamma, beta, num_groups, eps=1e-5):
    n, c, h, w = x.shape
    xg = x.reshape(n, c // num_groups, num_groups, h * w)          # channel j * G + g in group g
    mean, var = xg.mean(axis=(1, 3), keepdims=True), xg.var(axis=(1, 3), keepdims=True)
    xhat = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return gamma[:, None, None] * xhat + beta[:, None, None], None


def gn_forward_cache_first(x, gamma, beta, num_groups, eps=1e-5):
    out, cache = gn_forward(x, gamma, beta, num_groups, eps)
    return cache, out


def gn_forward_affine_in_place(x, gamma, beta, num_groups, eps=1e-5):
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, -1)
    rstd = 1 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xhat = ((xg - xg.mean(axis=2, keepdims=True)) * rstd).reshape(x.shape)
    cache = (xhat, rstd, gamma, num_groups)
    xhat *= gamma[:, None, None]          # the affine, in xhat's buffer
    xhat += beta[:, None, None]
    return xhat, cache


def gn_forward_times_std(x, gamma, beta, num_groups, eps=1e-5):
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, -1)
    std = np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xhat = ((xg - xg.mean(axis=2, keepdims=True)) * std).reshape(x.shape)     # * where / belongs
    return gamma[:, None, None] * xhat + beta[:, None, None], (xhat, 1 / std, gamma, num_groups)


def gn_backward_times_std(dout, cache):
    xhat, rstd, gamma, num_groups = cache
    dx, dgamma, dbeta = gn_backward(dout, cache)
    dx = dx.reshape(rstd.shape[0], num_groups, -1) / rstd ** 2              # sqrt(var + eps) where rstd belongs
    return dx.reshape(dout.shape), dgamma, dbeta


def gn_backward_means_over_axis_1(dout, cache):
    return gn_backward(dout, cache, axis=1)


def gn_backward_sign_flipped(dout, cache):
    return gn_backward(dout, cache, sign=-1)


def gn_backward_sums_without_division(dout, cache):
    xhat, rstd, gamma, num_groups = cache
    _, dgamma, dbeta = gn_backward(dout, cache)
    delta = (dout * gamma[:, None, None]).reshape(dout.shape[0], num_groups, -1)
    xg = xhat.reshape(delta.shape)
    m = delta.shape[2]
    dx = rstd * (m * delta - delta.sum(axis=2, keepdims=True) - xg * (delta * xg).sum(axis=2, keepdims=True))
    return dx.reshape(dout.shape), dgamma, dbeta        # forgot the / M


def gn_backward_without_rstd(dout, cache):
    xhat, rstd, gamma, num_groups = cache
    dx, dgamma, dbeta = gn_backward(dout, cache)
    return (dx.reshape(rstd.shape[0], num_groups, -1) / rstd).reshape(dout.shape), dgamma, dbeta


def gn_backward_dgamma_mean(dout, cache):
    dx, _, dbeta = gn_backward(dout, cache)
    return dx, (dout * cache[0]).mean(axis=(0, 2, 3)), dbeta


def gn_backward_dgamma_dbeta_swapped(dout, cache):
    dx, dgamma, dbeta = gn_backward(dout, cache)
    return dx, dbeta, dgamma


def gn_backward_float64_dgamma(dout, cache):
    dx, dgamma, dbeta = gn_backward(dout, cache)
    buffer = np.zeros(dgamma.shape)
    buffer += dgamma
    return dx, buffer, dbeta


_GN_LAST = {}


def gn_forward_keeps_a_global(x, gamma, beta, num_groups, eps=1e-5):
    out, _GN_LAST["cache"] = gn_forward(x, gamma, beta, num_groups, eps)
    return out, None


def gn_backward_reads_the_global(dout, cache):
    return gn_backward(dout, _GN_LAST["cache"])


# ---------------------------------------------------------------- 03 spatial gate

def sg_forward(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    nrm, gn_cache = ref.groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    gate = sigmoid(sweight * nrm + sbias)
    return x1 * gate, (x1, nrm, gate, sweight, gn_cache)


def sg_backward(dout, cache):
    x1, nrm, gate, sweight, gn_cache = cache
    dz = dout * x1 * gate * (1 - gate)
    dsweight = (dz * nrm).sum(axis=(0, 2, 3), keepdims=True)
    dsbias = dz.sum(axis=(0, 2, 3), keepdims=True)
    dx_norm, dgn_weight, dgn_bias = ref.groupnorm_backward(dz * sweight, gn_cache)
    return dout * gate + dx_norm, dsweight, dsbias, dgn_weight, dgn_bias


def sg_forward_sweight_into_groupnorm(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    nrm, gn_cache = ref.groupnorm_forward(x1, sweight.reshape(-1), sbias.reshape(-1), x1.shape[1], eps)
    gate = sigmoid(gn_weight[:, None, None] * nrm + gn_bias[:, None, None])
    return x1 * gate, None


def sg_forward_gate_affine_first(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    k = x1.shape[1]
    xhat, _ = ref.groupnorm_forward(x1, np.ones(k), np.zeros(k), k, eps)
    z = gn_weight[:, None, None] * (sweight * xhat + sbias) + gn_bias[:, None, None]
    return x1 * sigmoid(z), None


def sg_forward_batch_statistics(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    mu, var = x1.mean(axis=(0, 2, 3), keepdims=True), x1.var(axis=(0, 2, 3), keepdims=True)
    nrm = gn_weight[:, None, None] * (x1 - mu) / np.sqrt(var + eps) + gn_bias[:, None, None]
    return x1 * sigmoid(sweight * nrm + sbias), None


def sg_forward_output_in_the_gate(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    nrm, gn_cache = ref.groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    gate = sigmoid(sweight * nrm + sbias)
    cache = (x1, nrm, gate, sweight, gn_cache)
    gate *= x1                            # y1, in the gate's buffer
    return gate, cache


def sg_forward_z_into_n(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    nrm, gn_cache = ref.groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    cache_n = nrm
    nrm *= sweight                        # z, in n's buffer
    nrm += sbias
    gate = sigmoid(nrm)
    return x1 * gate, (x1, cache_n, gate, sweight, gn_cache)


def sg_forward_sign_flipped(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    nrm, gn_cache = ref.groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    gate = sigmoid(-(sweight * nrm + sbias))
    return x1 * gate, (x1, nrm, gate, sweight, gn_cache)


def sg_backward_dgn_bias_without_sweight(dout, cache):
    x1, nrm, gate, sweight, gn_cache = cache
    dx1, dsweight, dsbias, dgn_weight, _ = sg_backward(dout, cache)
    dz = dout * x1 * gate * (1 - gate)
    return dx1, dsweight, dsbias, dgn_weight, dz.sum(axis=(0, 2, 3))


def sg_backward_dgn_weight_by_hand(dout, cache):
    x1, nrm, gate, sweight, gn_cache = cache
    dx1, dsweight, dsbias, _, dgn_bias = sg_backward(dout, cache)
    dz = dout * x1 * gate * (1 - gate)
    return dx1, dsweight, dsbias, (dz * gn_cache.xhat).sum(axis=(0, 2, 3)), dgn_bias


def sg_backward_groupnorm_gets_dz(dout, cache):
    x1, nrm, gate, sweight, gn_cache = cache
    _, dsweight, dsbias, dgn_weight, dgn_bias = sg_backward(dout, cache)
    dz = dout * x1 * gate * (1 - gate)
    return dout * gate + ref.groupnorm_backward(dz, gn_cache)[0], dsweight, dsbias, dgn_weight, dgn_bias


def sg_backward_dsbias_mean(dout, cache):
    x1, nrm, gate, sweight, gn_cache = cache
    dx1, dsweight, _, dgn_weight, dgn_bias = sg_backward(dout, cache)
    dz = dout * x1 * gate * (1 - gate)
    return dx1, dsweight, dz.mean(axis=(0, 2, 3), keepdims=True), dgn_weight, dgn_bias


def sg_backward_gn_grads_swapped(dout, cache):
    dx1, dsweight, dsbias, dgn_weight, dgn_bias = sg_backward(dout, cache)
    return dx1, dsweight, dsbias, dgn_bias, dgn_weight


def sg_backward_dsweight_dsbias_swapped(dout, cache):
    dx1, dsweight, dsbias, dgn_weight, dgn_bias = sg_backward(dout, cache)
    return dx1, dsbias, dsweight, dgn_weight, dgn_bias


def sg_backward_float64_dsweight(dout, cache):
    dx1, dsweight, dsbias, dgn_weight, dgn_bias = sg_backward(dout, cache)
    buffer = np.zeros(dsweight.shape)
    buffer[0, :, 0, 0] = dsweight.reshape(-1)
    return dx1, buffer, dsbias, dgn_weight, dgn_bias


def sg_forward_gn_weight_against_h(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    k = x1.shape[1]
    xhat, _ = ref.groupnorm_forward(x1, np.ones(k), np.zeros(k), k, eps)
    nrm = gn_weight[:, None] * xhat + gn_bias[:, None]                # (K, 1) lines up with (H, W)
    return x1 * sigmoid(sweight * nrm + sbias), None


# ---------------------------------------------------------------- 04 shuffle

def shuffle_forward(x, groups=2, axes=(0, 2, 1, 3, 4)):
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(axes).reshape(b, c, h, w).copy(), groups


def shuffle_backward(dout, cache, axes=(0, 2, 1, 3, 4)):
    b, c, h, w = dout.shape
    return dout.reshape(b, c // cache, cache, h, w).transpose(axes).reshape(b, c, h, w).copy()


def shuffle_forward_swaps_h_and_w(x, groups=2):
    return shuffle_forward(x, groups, axes=(0, 2, 1, 4, 3))


def shuffle_backward_swaps_h_and_w(dout, cache):
    return shuffle_backward(dout, cache, axes=(0, 2, 1, 4, 3))


def shuffle_forward_twice(x, groups=2):
    return shuffle_forward(shuffle_forward(x, groups)[0], groups)


def shuffle_forward_channels_last(x, groups=2):
    b, c, h, w = x.shape                  # read as (B, H, W, C), the layout of TensorFlow
    return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, c, h, w).copy(), groups


def shuffle_forward_cache_first(x, groups=2):
    out, cache = shuffle_forward(x, groups)
    return cache, out


def shuffle_backward_two_group_rule(dout, cache):
    """Lesson 04's inverse of a 2-group shuffle (a shuffle with C/2 groups), used for every groups."""
    b, c, h, w = dout.shape
    return dout.reshape(b, c // 2, 2, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w).copy()


def shuffle_backward_float64_buffer(dout, cache):
    dx = np.zeros(dout.shape)
    dx[...] = shuffle_backward(dout, cache)
    return dx


# ---------------------------------------------------------------- 05 the whole layer

def sa_forward(x, params, groups, eps=1e-5):
    (x0, x1), split = ref.group_split_forward(x, groups)
    y0, channel = ref.channel_gate_forward(x0, params["cweight"], params["cbias"])
    y1, spatial = ref.spatial_gate_forward(x1, params["sweight"], params["sbias"], params["gn.weight"],
                                           params["gn.bias"], eps)
    y, merge = ref.group_merge_forward(y0, y1, x.shape[0])
    out, shuffle = ref.channel_shuffle_forward(y, 2)
    return out, (split, channel, spatial, merge, shuffle)


def sa_backward(dout, cache, swap_dy=False, swap_dx=False, swap_cg=False):
    split, channel, spatial, merge, shuffle = cache
    dy0, dy1 = ref.group_merge_backward(ref.channel_shuffle_backward(dout, shuffle), merge)
    if swap_dy:
        dy0, dy1 = dy1, dy0
    dx0, dcweight, dcbias = ref.channel_gate_backward(dy0, channel)
    if swap_cg:
        dcweight, dcbias = dcbias, dcweight
    dx1, dsweight, dsbias, dgn_weight, dgn_bias = ref.spatial_gate_backward(dy1, spatial)
    grads = {"cweight": dcweight, "cbias": dcbias, "sweight": dsweight, "sbias": dsbias,
             "gn.weight": dgn_weight, "gn.bias": dgn_bias}
    return ref.group_split_backward((dx1, dx0) if swap_dx else (dx0, dx1), split), grads


def sa_forward_merges_in_place(x, params, groups, eps=1e-5):
    x = x.copy()                          # x itself stays untouched...
    (x0, x1), split = ref.group_split_forward(x, groups)
    y0, channel = ref.channel_gate_forward(x0, params["cweight"], params["cbias"])
    y1, spatial = ref.spatial_gate_forward(x1, params["sweight"], params["sbias"], params["gn.weight"],
                                           params["gn.bias"], eps)
    _, merge = ref.group_merge_forward(y0, y1, x.shape[0])
    x0[...] = y0                          # ...but the caches hold these views
    x1[...] = y1
    out, shuffle = ref.channel_shuffle_forward(x, 2)
    return out, (split, channel, spatial, merge, shuffle)


def sa_forward_gates_the_halves_in_place(x, params, groups, eps=1e-5):
    (x0, x1), split = ref.group_split_forward(x, groups)
    gate = sigmoid(params["cweight"] * x0.mean(axis=(2, 3), keepdims=True) + params["cbias"])
    x0 *= gate                            # a view of x
    return sa_forward(x, params, groups, eps)


def sa_forward_merges_by_stacking(x, params, groups, eps=1e-5):
    (x0, x1), split = ref.group_split_forward(x, groups)
    y0, _ = ref.channel_gate_forward(x0, params["cweight"], params["cbias"])
    y1, _ = ref.spatial_gate_forward(x1, params["sweight"], params["sbias"], params["gn.weight"],
                                     params["gn.bias"], eps)
    y = np.stack([y0, y1], axis=2).reshape(x.shape)                  # interleaves the branches
    return ref.channel_shuffle_forward(y, 2)[0], None


def sa_forward_own_channel_gate(x, params, groups, eps=1e-5):
    """The learner's exercise-05 layer on their own exercise-02 channel gate, which flips the gate."""
    (x0, x1), split = ref.group_split_forward(x, groups)
    y0, channel = cg_forward_one_minus_gate(x0, params["cweight"], params["cbias"])
    y1, spatial = ref.spatial_gate_forward(x1, params["sweight"], params["sbias"], params["gn.weight"],
                                           params["gn.bias"], eps)
    y, merge = ref.group_merge_forward(y0, y1, x.shape[0])
    return ref.channel_shuffle_forward(y, 2)[0], None


def sa_forward_shuffles_twice(x, params, groups, eps=1e-5):
    out, cache = sa_forward(x, params, groups, eps)
    return ref.channel_shuffle_forward(out, 2)[0], cache


def sa_backward_gates_swapped(dout, cache):
    return sa_backward(dout, cache, swap_dy=True)


def sa_backward_halves_swapped(dout, cache):
    return sa_backward(dout, cache, swap_dx=True)


def sa_backward_channel_grads_swapped(dout, cache):
    return sa_backward(dout, cache, swap_cg=True)


def sa_backward_grads_first(dout, cache):
    dx, grads = sa_backward(dout, cache)
    return grads, dx


def sa_backward_float64_grads(dout, cache):
    dx, grads = sa_backward(dout, cache)
    return dx, {n: g.astype(np.float64) for n, g in grads.items()}


_SA_LAST = {}


def sa_forward_keeps_a_global(x, params, groups, eps=1e-5):
    out, _SA_LAST["cache"] = sa_forward(x, params, groups, eps)
    return out, None


def sa_backward_reads_the_global(dout, cache):
    return sa_backward(dout, _SA_LAST["cache"])


G = (split_forward, split_backward, merge_forward, merge_backward)
CG, GN, SG = (cg_forward, cg_backward), (gn_forward, gn_backward), (sg_forward, sg_backward)
SH, SA = (shuffle_forward, shuffle_backward), (sa_forward, sa_backward)
grouping, channel_gate, groupnorm = checks.check_grouping, checks.check_channel_gate, checks.check_groupnorm
spatial_gate, shuffle, sa_layer = checks.check_spatial_gate, checks.check_shuffle, checks.check_sa_layer

CATALOGUE = {
    # name: (check, learner functions, the mistake's id, words of its hint)
    # the right values in the wrong order
    "grouping_split_backward_interleaves_the_halves": (
        grouping, (G[0], split_backward_interleaves_the_halves, *G[2:]), "generic.reordered", "axis C looks reordered"),
    "grouping_merge_reads_rows_group_major": (
        grouping, (*G[:2], merge_forward_rows_group_major, G[3]), "generic.reordered", "axes B and C, read as one"),
    "grouping_merge_interleaves_the_groups": (
        grouping, (*G[:2], merge_forward_interleaves_the_groups, G[3]), "generic.reordered",
        "axis C looks reordered (the expected's 24 entries laid out as a (G=3, 2K=8) grid and read column by column: "
        "channels interleaved across groups?)"),
    "channel_gate_returns_w_before_h": (channel_gate, (cg_forward_nkwh, cg_backward), "generic.transposed",
                                        "H and W swapped"),
    "shuffle_swaps_h_and_w": (shuffle, (shuffle_forward_swaps_h_and_w, SH[1]), "generic.transposed",
                              "H and W swapped and then reshaped back"),
    "shuffle_backward_swaps_h_and_w": (shuffle, (SH[0], shuffle_backward_swaps_h_and_w), "generic.transposed",
                                       "H and W swapped"),
    "shuffle_reads_channels_last": (shuffle, (shuffle_forward_channels_last, SH[1]), "generic.axes_mixed",
                                    "in an order that mixes axes: the expected's C, H and W each come from your C, H and W"),
    "layer_merges_by_stacking_the_branches": (sa_layer, (sa_forward_merges_by_stacking, SA[1]), "generic.reordered",
                                              "the slices along axis C are reordered"),
    # a gate that is one minus the right one
    "channel_gate_one_minus_the_gate": (channel_gate, (cg_forward_one_minus_gate, cg_backward),
                                        "generic.one_minus_gate", "your gate computes 1 - sigmoid(z)"),
    "spatial_gate_sign_flipped_in_the_sigmoid": (spatial_gate, (sg_forward_sign_flipped, sg_backward),
                                                 "generic.one_minus_gate", "or sigmoid(-z) (a sign flipped"),
    "layer_on_a_channel_gate_that_flips": (sa_layer, (sa_forward_own_channel_gate, SA[1]), "generic.one_minus_gate",
                                           "your channel gate computes 1 - sigmoid(z)"),
    # a factor that varies per group: a standard deviation where its inverse belongs
    "groupnorm_multiplies_by_the_standard_deviation": (
        groupnorm, (gn_forward_times_std, gn_backward), "generic.factor_per_group",
        "yours (less beta) is the expected (less beta) times one factor per N and group of C, the same along "
        "the other axes: the factor is 1/rstd²: the standard deviation sqrt(var + eps) stands where rstd belongs"),
    "groupnorm_backward_multiplies_by_the_standard_deviation": (
        groupnorm, (gn_forward, gn_backward_times_std), "generic.factor_per_group",
        "the standard deviation sqrt(var + eps) stands where rstd belongs"),
    # a gradient without one of the forward's inputs as a factor
    "spatial_gate_dgn_bias_without_sweight": (spatial_gate, (sg_forward, sg_backward_dgn_bias_without_sweight),
                                              "generic.missing_factor", "divided by sweight"),
    # the upstream gradient forgotten
    "channel_gate_backward_without_dout": (channel_gate, (cg_forward, cg_backward_local_derivatives),
                                           "generic.upstream_forgotten", "the upstream gradient dout is missing"),
    # a step applied twice
    "shuffle_applied_twice": (shuffle, (shuffle_forward_twice, SH[1]), "generic.applied_twice",
                              "the shuffle ran twice"),
    "channel_gate_sigmoid_twice": (channel_gate, (cg_forward_sigmoid_twice, cg_backward), "generic.applied_twice",
                                   "sigmoid(sigmoid(z)) where sigmoid(z) belongs"),
    "layer_shuffles_twice": (sa_layer, (sa_forward_shuffles_twice, SA[1]), "generic.applied_twice",
                             "the final shuffle ran twice"),
    # a rule learnt for one case, used for all
    "shuffle_backward_with_c_over_2_groups": (shuffle, (SH[0], shuffle_backward_two_group_rule),
                                              "shuffle.dx.inverse_with_half_c",
                                              "the inverse shuffle has C/groups groups, not C/2"),
    # two results returned or unpacked in swapped order
    "grouping_split_returns_the_cache_first": (grouping, (split_forward_cache_first, *G[1:]), "generic.swapped",
                                               "you returned (cache, (x0, x1))"),
    "grouping_merge_backward_swaps_its_outputs": (grouping, (*G[:3], merge_backward_swapped), "generic.swapped",
                                                  "dy0 and dy1 are swapped"),
    "channel_gate_returns_the_cache_first": (channel_gate, (cg_forward_cache_first, cg_backward), "generic.swapped",
                                             "what you returned as cache is the expected y0"),
    "channel_gate_dcweight_dcbias_swapped": (channel_gate, (cg_forward, cg_backward_grads_swapped), "generic.swapped",
                                             "dcweight and dcbias are swapped"),
    "groupnorm_returns_the_cache_first": (groupnorm, (gn_forward_cache_first, gn_backward), "generic.swapped",
                                          "what you returned as cache is the expected out"),
    "groupnorm_dgamma_dbeta_swapped": (groupnorm, (gn_forward, gn_backward_dgamma_dbeta_swapped), "generic.swapped",
                                       "dgamma and dbeta are swapped"),
    "spatial_gate_dgn_weight_dgn_bias_swapped": (spatial_gate, (sg_forward, sg_backward_gn_grads_swapped),
                                                 "generic.swapped", "dgn_weight and dgn_bias are swapped"),
    "spatial_gate_dsweight_dsbias_swapped": (spatial_gate, (sg_forward, sg_backward_dsweight_dsbias_swapped),
                                             "generic.swapped", "dsweight and dsbias are swapped"),
    "shuffle_returns_the_cache_first": (shuffle, (shuffle_forward_cache_first, SH[1]), "generic.swapped",
                                        "what you returned as cache is the expected out"),
    "layer_unpacks_the_merge_gradients_swapped": (sa_layer, (SA[0], sa_backward_gates_swapped),
                                                  "sa_layer.dx.gates_swapped", "dy0 goes to the CHANNEL gate"),
    "layer_passes_the_halves_swapped": (sa_layer, (SA[0], sa_backward_halves_swapped), "sa_layer.dx.halves_swapped",
                                        "you passed them swapped"),
    "layer_unpacks_the_channel_gate_grads_swapped": (
        sa_layer, (SA[0], sa_backward_channel_grads_swapped), "generic.swapped",
        "grads['cweight'] and grads['cbias'] are swapped"),
    "layer_returns_grads_first": (sa_layer, (SA[0], sa_backward_grads_first), "generic.swapped",
                                  "dx and grads are swapped"),
    # a constant factor
    "channel_gate_dcbias_mean_over_rows": (channel_gate, (cg_forward, cg_backward_dcbias_mean),
                                           "generic.constant_factor", "divided by N = 6"),
    "groupnorm_dx_sign_flipped": (groupnorm, (gn_forward, gn_backward_sign_flipped), "generic.constant_factor",
                                  "a sign is flipped"),
    "groupnorm_dx_sums_without_division": (groupnorm, (gn_forward, gn_backward_sums_without_division),
                                           "generic.constant_factor", "times (C/G)·H·W = 140"),
    "groupnorm_dgamma_mean": (groupnorm, (gn_forward, gn_backward_dgamma_mean), "generic.constant_factor",
                              "divided by N·H·W = 70"),
    "spatial_gate_dsbias_mean": (spatial_gate, (sg_forward, sg_backward_dsbias_mean), "generic.constant_factor",
                                 "divided by N·H·W = 210"),
    # a missing factor in a chain rule
    "channel_gate_pool_path_without_cweight": (channel_gate, (cg_forward, cg_backward_pool_path_without_cweight),
                                               "channel_gate.dx0.pool_path_no_cweight", "factor cweight is missing"),
    "groupnorm_dx_without_rstd": (groupnorm, (gn_forward, gn_backward_without_rstd), "groupnorm.dx.no_rstd",
                                  "factor rstd = 1 / sqrt(var + eps) is missing"),
    "spatial_gate_groupnorm_backward_gets_dz": (spatial_gate, (sg_forward, sg_backward_groupnorm_gets_dz),
                                                "spatial_gate.dx1.gate_path_no_sweight", "factor sweight is missing"),
    "spatial_gate_dgn_weight_without_sweight": (spatial_gate, (sg_forward, sg_backward_dgn_weight_by_hand),
                                                "generic.missing_factor", "divided by sweight"),
    # means over the wrong axes
    "channel_gate_pools_over_h_only": (channel_gate, (cg_forward_pools_over_h, cg_backward),
                                       "channel_gate.y0.mean_over_H", "you averaged over axis=(2,) (H)"),
    "groupnorm_statistics_over_axis_1": (groupnorm, (gn_forward_stats_over_axis_1, gn_backward),
                                         "groupnorm.out.stats_over_groups_axis", "across the groups"),
    "groupnorm_groups_of_every_gth_channel": (groupnorm, (gn_forward_interleaved_groups, gn_backward),
                                              "groupnorm.out.interleaved_groups", "CONSECUTIVE channels"),
    "groupnorm_backward_means_over_axis_1": (groupnorm, (gn_forward, gn_backward_means_over_axis_1),
                                             "groupnorm.dx.means_over_groups_axis", "across the groups"),
    "spatial_gate_batch_statistics": (spatial_gate, (sg_forward_batch_statistics, sg_backward),
                                      "spatial_gate.y1.batch_statistics", "over the batch axis too"),
    # the spatial gate's two affines in the wrong order
    "spatial_gate_gives_sweight_to_groupnorm": (spatial_gate, (sg_forward_sweight_into_groupnorm, sg_backward),
                                                "spatial_gate.y1.affines_swapped", "GroupNorm's affine comes first"),
    "spatial_gate_gate_affine_first": (spatial_gate, (sg_forward_gate_affine_first, sg_backward),
                                       "spatial_gate.y1.affines_swapped", "in the other order"),
    # stale or aliased caches
    "channel_gate_z_computed_into_s": (channel_gate, (cg_forward_z_into_s, cg_backward),
                                       "channel_gate.dcweight.stale_s",
                                       "the s in your cache was overwritten"),
    "channel_gate_backward_reads_the_last_forward": (
        channel_gate, (cg_forward_keeps_a_global, cg_backward_reads_the_global), "channel_gate.dx0.last_forward",
        "the LAST forward call"),
    "groupnorm_affine_applied_in_place": (groupnorm, (gn_forward_affine_in_place, gn_backward),
                                          "groupnorm.dx.stale_xhat", "the xhat in your cache was overwritten"),
    "groupnorm_backward_reads_the_last_forward": (groupnorm, (gn_forward_keeps_a_global, gn_backward_reads_the_global),
                                                  "groupnorm.dx.last_forward", "the LAST forward call"),
    "spatial_gate_output_written_into_the_gate": (spatial_gate, (sg_forward_output_in_the_gate, sg_backward),
                                                  "spatial_gate.dx1.stale_gate", "gate sigmoid(z) in your cache"),
    "spatial_gate_z_computed_into_n": (spatial_gate, (sg_forward_z_into_n, sg_backward),
                                       "spatial_gate.dsweight.stale_n",
                                       "the n in your cache was overwritten"),
    "layer_merges_in_place_into_the_halves": (sa_layer, (sa_forward_merges_in_place, SA[1]), "sa_layer.dx.stale_x0_x1",
                                              "x0 and x1, which are VIEWS of the array you split"),
    "layer_gates_the_halves_of_x_in_place": (sa_layer, (sa_forward_gates_the_halves_in_place, SA[1]),
                                             "generic.in_place", "x0 and x1 from group_split_forward are VIEWS of x"),
    "layer_backward_reads_the_last_forward": (sa_layer, (sa_forward_keeps_a_global, sa_backward_reads_the_global),
                                              "sa_layer.dx.last_forward", "the LAST forward call"),
    # float64 out of float32 in, backward included
    "grouping_split_backward_float64": (grouping, (G[0], split_backward_float64_buffer, *G[2:]), "generic.float32",
                                        "dx: dtype float64 for float32 input"),
    "grouping_merge_forward_float64": (grouping, (*G[:2], merge_forward_float64_buffer, G[3]), "generic.float32",
                                       "y: dtype float64 for float32 input"),
    "channel_gate_backward_float64": (channel_gate, (cg_forward, cg_backward_float64_buffer), "generic.float32",
                                      "dx0: dtype float64 for float32 input"),
    "groupnorm_backward_float64": (groupnorm, (gn_forward, gn_backward_float64_dgamma), "generic.float32",
                                   "dgamma: dtype float64 for float32 input"),
    "spatial_gate_backward_float64": (spatial_gate, (sg_forward, sg_backward_float64_dsweight), "generic.float32",
                                      "dsweight: dtype float64 for float32 input"),
    "shuffle_backward_float64": (shuffle, (SH[0], shuffle_backward_float64_buffer), "generic.float32",
                                 "dx: dtype float64 for float32 input"),
    "layer_backward_float64": (sa_layer, (SA[0], sa_backward_float64_grads), "generic.float32",
                               "grads['cweight']: dtype float64 for float32 input"),
}


@pytest.mark.parametrize("name", CATALOGUE)
def test_a_planted_mistake_gets_its_own_diagnosis(name):
    check, functions, mistake, words = CATALOGUE[name]
    with pytest.raises(AssertionError) as info:
        check(*functions)
    assert not isinstance(info.value, LearnerError), str(info.value)
    assert getattr(info.value, "mistake", None) == mistake, str(info.value)
    assert words in str(info.value), str(info.value)


def test_the_catalogue_covers_every_exercise_with_forty_mistakes():
    assert len(CATALOGUE) >= 40
    assert {check for check, *_ in CATALOGUE.values()} == {grouping, channel_gate, groupnorm, spatial_gate, shuffle,
                                                           sa_layer}


@pytest.mark.parametrize("functions, line", [
    ((cg_forward_flat_cweight, cg_backward), "cweight.reshape(-1) * s + cbias"),
    ((sg_forward_gn_weight_against_h, sg_backward), "gn_weight[:, None] * xhat"),
])
def test_a_parameter_broadcast_against_the_wrong_axis_fails_loudly(functions, line):
    """With K = H = W these would broadcast silently and pass; every axis has its own size now."""
    check = channel_gate if functions[1] is cg_backward else spatial_gate
    with pytest.raises(LearnerError, match="could not be broadcast") as info:
        check(*functions)
    assert line in str(info.value)


@pytest.mark.parametrize("check, functions", [
    (grouping, G), (channel_gate, CG), (groupnorm, GN), (spatial_gate, SG), (shuffle, SH), (sa_layer, SA)])
def test_the_learner_style_solutions_pass(check, functions, capsys):
    check(*functions)
    assert capsys.readouterr().out.startswith("Correct: ")


def test_a_hint_is_never_a_guess():
    """A wrong result that matches no known mistake and no rearrangement gets the facts, no hint."""
    def off(x0, cweight, cbias):
        y0, cache = cg_forward(x0, cweight, cbias)
        return y0 + 1e-3 * np.sin(np.arange(y0.size).reshape(y0.shape)), cache
    with pytest.raises(AssertionError) as info:
        channel_gate(off, cg_backward)
    assert info.value.mistake is None and "hint" not in str(info.value)
    assert "yours" in str(info.value) and "expected" in str(info.value) and "ours" not in str(info.value).replace(
        "yours", "")


def test_an_elementwise_step_names_its_forgotten_upstream_gradient_and_missing_input():
    """The relations on their own, as a short "your turn" step would use them: dz = dout * g * (1 - g)."""
    from sa_course.checks.diagnose import Facts, failure, generic
    from sa_course.checks.facts import Upstream

    gen = np.random.default_rng(0)
    g, dout = sigmoid(gen.normal(size=(3, 4, 5))), gen.normal(size=(3, 4, 5))
    facts = Facts(factors={"g": g, "1 - g": 1 - g}, expected={"dz": dout * g * (1 - g)},
                  upstream=Upstream(dout, lambda: {"dz": g * (1 - g)}))
    for yours, mistake, words in ((g * (1 - g), "generic.upstream_forgotten", "yours times dout is the expected"),
                                  (dout * (1 - g), "generic.missing_factor", "the chain rule's factor g is missing")):
        error = failure("dz", yours, facts.expected["dz"], generic("dz", facts))
        assert error.mistake == mistake and words in str(error), str(error)
