"""The known mistakes: one table, each with an id, its hint, and how to produce its result.

When a learner's output disagrees with the reference, the check recomputes every known
mistake for that output and, if the learner's array matches one, prints its hint. A
mistake is a :class:`Mistake`: its ``id`` reads ``check.tensor.what``, its ``hint`` is the
text shown after ``hint:``, and ``make(c)`` returns the array the mistake produces (or
None where it does not apply), from ``c``, the context the check built: its inputs, the
reference results and the forward/backward "with a switch" helpers each exercise module
defines (``c.variant(i, dsig="none")`` is the channel gate's backward without the
sigmoid's derivative, ``c.backward_from(s=...)`` the reference backward on a cache whose
``s`` was overwritten, and so on). Mistakes are tried in table order; the first match wins,
and only then the generic diagnoses of :mod:`sa_course.checks.diagnose` (swapped outputs,
the right values in the wrong order, a constant or missing factor).

Add a mistake by adding a row (and, when it needs one, a switch to the module's helper).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sa_numpy.functional import sigmoid
from sa_numpy.grouping import group_merge_forward, group_split_backward

from .diagnose import Candidate, first, generic, recomputed


@dataclass(frozen=True)
class Mistake:
    id: str                      # "check.tensor.what"
    hint: str
    make: Callable               # make(c) -> the mistake's array for the check's context c, or None

    @property
    def check(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def tensor(self) -> str:
        return self.id.split(".", 1)[1].rsplit(".", 1)[0]


TABLE: list[Mistake] = []


def _add(id_: str, hint: str, make: Callable) -> None:
    TABLE.append(Mistake(id_, hint, make))


def hints(check: str, tensor: str, c) -> list[Candidate]:
    """The candidates for one tensor: its known mistakes bound to the check's context c, then
    the generic diagnoses from ``c.facts``. A hint may say ``{shape}``: the shape of the
    reference, ``c.refs_by_name[tensor]``, or name a number of ``c.hint_numbers`` ({groups}, ...)."""
    def text(m: Mistake) -> str:
        if "{" not in m.hint:
            return m.hint
        shape = c.refs_by_name[tensor].shape if "{shape}" in m.hint else None
        return m.hint.format(shape=shape, **getattr(c, "hint_numbers", {}))
    table = [recomputed(m.id, text(m), lambda m=m: m.make(c)) for m in TABLE if m.check == check and m.tensor == tensor]
    facts = getattr(c, "facts", None)
    return first(tensor, facts) + table + generic(tensor, facts)


def by_id(id_: str) -> Mistake:
    return next(m for m in TABLE if m.id == id_)


SUMMED = "it is shared by every row and pixel, so sum its gradient over all of them"
LAST_FORWARD = ("your backward used the values of the LAST forward call, not the cache it was given: the check "
                "ran the forward a second time, on another input, before calling the backward. Keep everything "
                "the backward needs in the cache the forward returns (no globals, no attributes on a function)")
STALE = ("the {what} in your cache was overwritten after you cached it: {how}, so the backward reads {reads} "
         "where it needs {what}. Compute {into} into a new array instead of in place")
IN_PLACE = "never write into an input: `{label} *= ...`, `{label}[...] = ...` or `out={label}` modify the " \
           "caller's array. Compute into a new array instead"
#: the in-place hint for a function that wrote into one of its inputs, where there is more to say
WRITES_INTO = {("sa_forward", "x"): "x0 and x1 from group_split_forward are VIEWS of x (a reshape and two "
               "slices, no copy): writing into them (x0 *= ..., x1[...] = ...) writes into x, and into every cache "
               "that holds x0 or x1, so the backward would read the new values. Compute into new arrays instead"}


def in_place_hint(function: str, label: str) -> str:
    """The hint for ``function`` having changed its input ``label`` in place."""
    return WRITES_INTO.get((function, label), IN_PLACE.format(label=label))


def _last_forward(check: str, tensors) -> None:
    """The backward read the state of the last forward call: ``c.last_forward`` is that backward."""
    for i, tensor in enumerate(tensors):
        _add(f"{check}.{tensor}.last_forward", LAST_FORWARD, lambda c, i=i: c.last_forward[i])


def _shape(check: str, tensor: str, unsummed: Callable | None = None) -> None:
    """The hints every parameter gradient shares: not summed over the rows (when the per-row
    terms are given) and right values in the wrong shape. ``c.refs_by_name[tensor]`` is the reference."""
    ref = lambda c: c.refs_by_name[tensor]
    if unsummed is not None:
        _add(f"{check}.{tensor}.not_summed",
             f"{tensor} must have the shape of the parameter, {{shape}}: {SUMMED}", unsummed)
    reshape = (f"right values, wrong shape: return {tensor} in the parameter's shape {{shape}}, "
               f"e.g. with .reshape(param.shape)")
    _add(f"{check}.{tensor}.flat", reshape, lambda c: ref(c).reshape(-1))
    _add(f"{check}.{tensor}.four_d", reshape, lambda c: ref(c).reshape(1, -1, 1, 1))


# ------------------------------------------------------------------ 01 grouping
for _i, _half in enumerate(("x0", "x1")):
    _add(f"grouping.{_half}.halves_first",
         "You split all C channels in half first, so x0 took the first half of each sample, not of each group. "
         "Group first (G groups of 2K consecutive channels), then split every group into its two halves of K "
         "(lesson 01, section 1: grouping is a reshape)", lambda c, i=_i: c.half(c.halves_first[:, i]))
    _add(f"grouping.{_half}.groups_first",
         "you put the groups first: your row n is group n // B of sample n % B, but row n of the halves is "
         "sample n // G, group n % G (sample-major), the order a reshape keeps when nothing is transposed "
         "(lesson 01, section 3: where every channel goes)",
         lambda c, i=_i: c.half(c.xg.transpose(1, 0, 2, 3, 4)[:, :, i * c.k:(i + 1) * c.k]))
    _add(f"grouping.{_half}.interleaved", "you took every other channel of a group: each half is a block of K "
         "consecutive channels (lesson 01, section 1)", lambda c, i=_i: c.half(c.xg[:, :, i::2]))
    _add(f"grouping.{_half}.unmerged", "you kept the batch and group axes apart: each half has shape "
         "(B*G, K, H, W), one row per sample and group (lesson 01, section 1)",
         lambda c, i=_i: c.xg[:, :, i * c.k:(i + 1) * c.k])
_add("grouping.dx.swapped", "you swapped dx0 and dx1: dx0 goes back to the first half of each group and dx1 "
     "to the second (lesson 01, section 5)", lambda c: group_split_backward((c.dx1, c.dx0), c.rcache))
_add("grouping.dx.concat_then_reshape", "you brought each half back to (B, C/2, H, W) before joining them, "
     "so every dx0 channel lands before every dx1 channel: undo the forward's steps in reverse order, the "
     "split of each group first, then the grouping (lesson 01, section 5)",
     lambda c: np.concatenate([c.dx0.reshape(c.b, -1, c.h, c.w), c.dx1.reshape(c.b, -1, c.h, c.w)], axis=1))
_add("grouping.y.swapped", "you swapped y0 and y1: y0 goes into the first half of each group and y1 into the "
     "second (lesson 01, section 1)",
     lambda c: group_merge_forward(c.y1, c.y0, c.b)[0])
_add("grouping.y.batch_axis", "you joined y0 and y1 along the rows (axis 0): a group's two halves sit side by "
     "side in its channels (lesson 01, section 1)",
     lambda c: np.concatenate([c.y0, c.y1], axis=0).reshape(c.b, c.c, c.h, c.w))

# ------------------------------------------------------------------ 02 channel gate
_add("channel_gate.y0.no_sigmoid", "apply the sigmoid: the gate is sigmoid(cweight * s + cbias), not the "
     "affine itself", lambda c: c.x0 * (c.cw * c.s + c.cb))
_add("channel_gate.y0.no_pooling", "you gated every pixel by itself: pool first, s is the mean of each channel "
     "over its H*W pixels (lesson 02, section 1)", lambda c: c.gate(c.x0))
_add("channel_gate.y0.mean_over_channels", "average each channel over its pixels only, axis=(2, 3); you also "
     "averaged over the channels", lambda c: c.gate(c.x0.mean(axis=(1, 2, 3), keepdims=True)))
_add("channel_gate.y0.mean_over_batch", "average over the pixels of each row, axis=(2, 3); you also averaged "
     "over the batch axis", lambda c: c.gate(c.x0.mean(axis=(0, 2, 3), keepdims=True)))
_add("channel_gate.y0.max_pooling", "global AVERAGE pooling: use the mean over (H, W), not the max",
     lambda c: c.gate(c.x0.max(axis=(2, 3), keepdims=True)))
_add("channel_gate.y0.sum_pooling", "global AVERAGE pooling: divide the sum over (H, W) by H*W",
     lambda c: c.gate(c.s * c.h * c.w))
_add("channel_gate.y0.shared_gate", "the affine is per channel (cweight[k] * s[n, k] + cbias[k]), each "
     "channel gets its own gate; you shared one gate across the group's channels (a dot product, as in "
     "SE's FC layer)", lambda c: c.gate(c.s, lambda p: (c.cw * p).sum(axis=1, keepdims=True) + c.cb))
_add("channel_gate.y0.no_bias", "add cbias inside the sigmoid", lambda c: c.gate(c.s, lambda p: c.cw * p))
_add("channel_gate.y0.gate_only", "return the gated input x0 * gate, not the gate alone",
     lambda c: sigmoid(c.cw * c.s + c.cb))
for _axes in (a for r in range(1, 5) for a in itertools.combinations(range(4), r)):
    if _axes not in ((2, 3), (1, 2, 3), (0, 2, 3)):        # the right one, and the two named above
        _letters = "".join("NKHW"[a] for a in _axes)
        _add(f"channel_gate.y0.mean_over_{_letters}", f"you averaged over axis={_axes} ({', '.join(_letters)}): "
             f"pool each channel over its own H*W pixels, the axes H and W (lesson 02, section 1)",
             lambda c, a=_axes: c.gate(c.x0.mean(axis=a, keepdims=True)))
_NO_DERIV = ("you dropped the sigmoid's derivative: z goes through the sigmoid, so multiply "
             "by sigmoid(z) * (1 - sigmoid(z))")
_SIGMA_ONLY = "the sigmoid's derivative is sigmoid(z) * (1 - sigmoid(z)), not sigmoid(z)"
_add("channel_gate.dx0.no_sigmoid_derivative", _NO_DERIV, lambda c: c.variant(0, dsig="none"))
_add("channel_gate.dx0.sigmoid_as_derivative", _SIGMA_ONLY, lambda c: c.variant(0, dsig="sigma"))
_add("channel_gate.dx0.no_division_by_hw", "s is a MEAN over H*W pixels: the gradient through it is "
     "dz * cweight / (H*W) at every pixel; you forgot the / (H*W)", lambda c: c.variant(0, per_pixel=False))
_add("channel_gate.dx0.no_pooling_path", "x0 is used twice, as the gated value and inside the mean s: add "
     "the term that flows back through the pooling, dz * cweight / (H*W)", lambda c: c.variant(0, pool_path=False))
_add("channel_gate.dx0.no_direct_path", "x0 is used twice: add the direct term dout * gate, the gradient "
     "through the gated value", lambda c: c.variant(0, direct=False))
_add("channel_gate.dx0.pool_path_no_cweight", "z = cweight * s + cbias, so the term through the pooling is "
     "dz * cweight / (H*W): the chain rule's factor cweight is missing", lambda c: c.variant(0, pool_cweight=False))
for _i, _name in ((1, "dcweight"), (2, "dcbias")):
    _add(f"channel_gate.{_name}.no_sigmoid_derivative", _NO_DERIV, lambda c, i=_i: c.sum0(i, dsig="none"))
    _add(f"channel_gate.{_name}.sigmoid_as_derivative", _SIGMA_ONLY, lambda c, i=_i: c.sum0(i, dsig="sigma"))
    if _name == "dcweight":
        _add("channel_gate.dcweight.no_pooled_mean", "dz/dcweight is the pooled mean s: dcweight = sum(dz * s)",
             lambda c: c.sum0(2))
    _shape("channel_gate", _name, lambda c, i=_i: c.variant(i))
_STALE_S = lambda c, into: c.backward_from(s=into(c.cw.reshape(-1) * c.rcache.s + c.cb.reshape(-1)))[1]
_add("channel_gate.dcweight.stale_s", STALE.format(what="s", how="z = cweight * s + cbias was computed into s "
     "(s *= cweight; s += cbias)", reads="z", into="z"), lambda c: _STALE_S(c, lambda z: z))
_add("channel_gate.dcweight.stale_s_gate", STALE.format(what="s", how="the gate sigmoid(cweight * s + cbias) was "
     "computed into s's array", reads="the gate", into="z and the gate"), lambda c: _STALE_S(c, sigmoid))
_last_forward("channel_gate", ("dx0", "dcweight", "dcbias"))

# ------------------------------------------------------------------ 03 GroupNorm
_add("groupnorm.out.unbiased_variance", "GroupNorm uses the BIASED variance: divide by the number of elements "
     "M, not M - 1 (np.var's default ddof=0; torch.var defaults to unbiased)", lambda c: c.gn(ddof=1))
_add("groupnorm.out.eps_outside_sqrt", "eps goes INSIDE the square root: sqrt(var + eps), not sqrt(var) + eps",
     lambda c: c.gn(eps_inside=False))
_add("groupnorm.out.no_eps", "you forgot eps: divide by sqrt(var + eps)", lambda c: c.gn(eps=0.0))
_add("groupnorm.out.fixed_eps", "use the eps argument instead of a fixed 1e-5 (the check passes eps=1e-3)",
     lambda c: c.gn(eps=1e-5))
_add("groupnorm.out.divides_by_variance", "divide by the standard deviation sqrt(var + eps), not by the "
     "variance", lambda c: c.gn(sqrt=False))
_add("groupnorm.out.layer_norm", "the statistics are per (sample, group) of C/num_groups channels. You used all "
     "of (C, H, W), i.e. layer norm (lesson 03, section 1)", lambda c: c.gn(groups=1))
_add("groupnorm.out.instance_norm", "the statistics are per (sample, group) of C/num_groups channels; you "
     "normalised each channel alone (instance norm)", lambda c: c.gn(groups=c.c))
_add("groupnorm.out.batch_norm", "the statistics are per sample: you reduced over the batch axis (batch norm)",
     lambda c: c.gn(batch_stats=True))
_add("groupnorm.out.no_affine", "apply the per-channel affine: out = gamma[c] * xhat + beta[c]",
     lambda c: c.gn(gamma=np.ones(c.c), beta=np.zeros(c.c)))
_add("groupnorm.out.stats_over_groups_axis", "you reduced over axis 1 of the (N, num_groups, M) view, across "
     "the groups: one mean and one variance per (sample, group), over that group's M elements (lesson 03, "
     "section 1)",
     lambda c: c.gn(axis=1))
_add("groupnorm.out.interleaved_groups", "your groups took every num_groups-th channel: a group is a block of "
     "C/num_groups CONSECUTIVE channels (lesson 03, section 1)", lambda c: c.gn(interleaved=True))
_add("groupnorm.dx.no_mean_terms", "the mean and the variance depend on x too, and each adds a term to dx; "
     "you dropped both mean-subtraction terms (lesson 03, section 4 derives them)", lambda c: c.dx(mean_term=False, var_term=False))
_add("groupnorm.dx.no_variance_term", "you dropped the term from the variance, - xhat * mean(g * xhat)",
     lambda c: c.dx(var_term=False))
_add("groupnorm.dx.no_mean_term", "you dropped the term from the mean, - mean(g)", lambda c: c.dx(mean_term=False))
_add("groupnorm.dx.no_gamma", "the gradient reaching xhat is g = dout * gamma: multiply by gamma first",
     lambda c: c.dx(use_gamma=False))
_add("groupnorm.dx.means_over_groups_axis", "the two means in dx are over each group's M elements, the last axis "
     "of the (N, num_groups, M) view; you took them over axis 1, across the groups", lambda c: c.dx(axis=1))
_add("groupnorm.dx.no_rstd", "the chain rule's factor rstd = 1 / sqrt(var + eps) is missing: xhat = (x - mean) "
     "* rstd, so every term of dx carries it (lesson 03, section 4)", lambda c: c.dx(use_rstd=False))
_STALE_XHAT = STALE.format(what="xhat", how="the affine was applied to xhat in place (xhat *= gamma; xhat += beta)",
                           reads="the output", into="out = gamma * xhat + beta")
_add("groupnorm.dx.stale_xhat", _STALE_XHAT, lambda c: c.backward_from(xhat=c.rout)[0])
_add("groupnorm.dgamma.raw_x", "gamma multiplies xhat, the NORMALISED input: dgamma = sum(dout * xhat)",
     lambda c: (c.dout * c.x).sum(axis=(0, 2, 3)))
_add("groupnorm.dgamma.stale_xhat", _STALE_XHAT, lambda c: c.backward_from(xhat=c.rout)[1])
_last_forward("groupnorm", ("dx", "dgamma"))
_shape("groupnorm", "dgamma", lambda c: (c.dout * c.rcache.xhat).sum(axis=(2, 3)))
_shape("groupnorm", "dbeta", lambda c: c.dout.sum(axis=(2, 3)))

# ------------------------------------------------------------------ 03 spatial gate
_add("spatial_gate.y1.not_normalised", "normalise x1 first: z = sweight * GroupNorm(x1) + sbias",
     lambda c: c.sg(normalise=False))
_add("spatial_gate.y1.one_group", "use one GroupNorm group per channel (num_groups = K, an instance norm); you "
     "used one group for all K channels", lambda c: c.sg(gn_groups=1))
_add("spatial_gate.y1.no_sigmoid", "apply the sigmoid: the gate is sigmoid(sweight * n + sbias)",
     lambda c: c.sg(sig=False))
_add("spatial_gate.y1.gates_normalised", "gate the input x1, not its normalised version: y1 = x1 * sigmoid(z)",
     lambda c: c.sg(gate_normalised=True))
_add("spatial_gate.y1.unbiased_variance", "GroupNorm uses the BIASED variance: divide by H*W, not H*W - 1",
     lambda c: c.sg(ddof=1))
_add("spatial_gate.y1.eps_outside_sqrt", "eps goes INSIDE the square root: sqrt(var + eps)",
     lambda c: c.sg(eps_inside=False))
_add("spatial_gate.y1.fixed_eps", "use the eps argument; the check passes eps=1e-3", lambda c: c.sg(eps=1e-5))
_add("spatial_gate.y1.no_gn_affine", "apply GroupNorm's own affine, gn_weight * xhat + gn_bias, before "
     "sweight and sbias", lambda c: c.sg(gw=np.ones(c.k), gb=np.zeros(c.k)))
_add("spatial_gate.y1.affines_swapped", "GroupNorm's affine comes first, then the gate's: z = sweight * "
     "(gn_weight * xhat + gn_bias) + sbias; you applied them in the other order (or gave sweight and sbias to "
     "GroupNorm)", lambda c: c.sg(affines_swapped=True))
_add("spatial_gate.y1.batch_statistics", "the statistics are per row and channel, over its own H*W pixels; you "
     "reduced over the batch axis too", lambda c: c.sg(batch_stats=True))
_SG_NO_DERIV = "you dropped the sigmoid's derivative: multiply by sigmoid(z) * (1 - sigmoid(z))"
_add("spatial_gate.dx1.no_sigmoid_derivative", _SG_NO_DERIV, lambda c: c.variant(0, dsig="none"))
_add("spatial_gate.dx1.no_direct_path", "x1 is used twice, as the gated value and inside the gate: add the "
     "direct term dout * sigmoid(z)", lambda c: c.variant(0, direct=False))
_add("spatial_gate.dx1.no_gate_path", "x1 is used twice: add the term that flows back through the gate and "
     "GroupNorm", lambda c: c.variant(0, gate_path=False))
_add("spatial_gate.dx1.no_gn_mean_terms", "in GroupNorm's backward you dropped the two mean-subtraction terms "
     "(from the mean and the variance); lesson 03, section 4 derives them",
     lambda c: c.variant(0, gn_mean_terms=False))
_add("spatial_gate.dx1.gate_path_no_sweight", "z = sweight * n + sbias, so the gradient reaching GroupNorm is "
     "dz * sweight: the chain rule's factor sweight is missing (pass dz * sweight to GroupNorm's backward)",
     lambda c: c.variant(0, chain_sweight=False))
_add("spatial_gate.dx1.stale_gate", STALE.format(what="gate sigmoid(z)", how="y1 = x1 * gate was computed into the "
     "gate's array (gate *= x1)", reads="y1", into="y1"), lambda c: c.backward_from(gate=c.ry1)[0])
for _i, _name in enumerate(("dsweight", "dsbias", "dgn_weight", "dgn_bias"), start=1):
    _add(f"spatial_gate.{_name}.no_sigmoid_derivative", _SG_NO_DERIV, lambda c, i=_i: c.summed(i, dsig="none"))
    if _name == "dsweight":
        _add("spatial_gate.dsweight.raw_x1", "sweight multiplies the normalised n, not x1: dsweight = sum(dz * n)",
             lambda c: (c.variant(2) * c.x1).sum(axis=(0, 2, 3)).reshape(c.refs_by_name["dsweight"].shape))
    _shape("spatial_gate", _name, lambda c, i=_i: c.variant(i).sum(axis=(2, 3)))
_add("spatial_gate.dsweight.stale_n", STALE.format(what="n", how="z = sweight * n + sbias was computed into n "
     "(n *= sweight; n += sbias)", reads="z", into="z"),
     lambda c: c.backward_from(n=c.rcache.n * c.rcache.sweight[:, None, None] + c.sb.reshape(-1, 1, 1))[1])
_last_forward("spatial_gate", ("dx1", "dsweight", "dsbias", "dgn_weight", "dgn_bias"))

# ------------------------------------------------------------------ 04 channel shuffle
_add("shuffle.out.identity", "you returned the channels in their original order: the shuffle moves channel "
     "j of group g to a new place (lesson 04, section 1 shuffles 1, ..., 8 by hand)", lambda c: c.x)
_add("shuffle.out.inverse", "that is the INVERSE shuffle, the backward's permutation: you read the channels "
     "as C/groups blocks of groups, where the forward reads them as groups blocks of C/groups (lesson 04, "
     "sections 1 and 3)", lambda c: c.shuffle(c.x, c.c // c.groups))
_add("shuffle.out.two_groups", "you always shuffled with 2 groups: use the groups argument (lesson 04, "
     "section 1)",
     lambda c: None if c.groups == 2 else c.shuffle(c.x, 2))
_add("shuffle.dx.inverse_with_half_c", "the inverse shuffle has C/groups groups, not C/2: lesson 04 (section 3) "
     "undoes a shuffle with 2 groups, where C/groups is C/2; with groups={groups} the inverse needs "
     "C/groups={c_over_groups}, you used C/2={half}", lambda c: None if c.groups == 2 else c.shuffle(c.dout, c.c // 2))
_add("shuffle.dx.forward_again", "you shuffled dout forward again: the backward of a permutation is its INVERSE, "
     "which sends every channel back where it came from (lesson 04, section 3)",
     lambda c: c.shuffle(c.dout, c.groups))
_add("shuffle.dx.not_unshuffled", "you passed dout through unchanged: it arrives in the shuffled order, so "
     "un-shuffle it with the inverse permutation (lesson 04, section 3)", lambda c: c.dout)

# ------------------------------------------------------------------ 05 the whole layer
_add("sa_layer.out.no_shuffle", "you forgot the channel shuffle at the end: channel_shuffle_forward(y, 2)",
     lambda c: c.layer(shuffle_groups=None))
_add("sa_layer.out.shuffle_with_g", "the final shuffle uses 2 groups (the two branches), not G",
     lambda c: c.layer(shuffle_groups=c.groups))
_add("sa_layer.out.inverse_shuffle", "that is the inverse shuffle: the layer ends with "
     "channel_shuffle_forward(y, 2)", lambda c: c.layer(shuffle_groups=c.c // 2))
_add("sa_layer.out.branches_swapped", "x0 (first half of each group) goes to the CHANNEL gate and x1 to the "
     "SPATIAL gate; you swapped the branches", lambda c: c.layer(swap_branches=True))
_add("sa_layer.out.merge_swapped", "merge in the order (y0, y1): channel branch first; you swapped them",
     lambda c: c.layer(swap_merge=True))
_add("sa_layer.out.fixed_eps", "pass the eps argument on to the spatial gate; the check passes eps=1e-3",
     lambda c: c.layer(eps=1e-5))
LAYER_GRADIENTS = ("dx", *(f"grads[{n!r}]" for n in ("cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias")))
_STALE_HALVES = ("the gates' caches hold x0 and x1, which are VIEWS of the array you split: writing the gates' "
                 "outputs into them (x0[...] = y0, x1[...] = y1, to merge in place) overwrote the caches, so the "
                 "backward reads y0 and y1 where it needs x0 and x1. Gate into new arrays and merge those")
for _i, _name in enumerate(LAYER_GRADIENTS):
    # the backward is linear in dout: a wrong un-shuffle of dout is the right backward of another dout
    _add(f"sa_layer.{_name}.no_unshuffle", "the forward ends with a shuffle, so the backward starts by "
         "un-shuffling dout (channel_shuffle_backward); you skipped it",
         lambda c, i=_i: c.backward_of(unshuffle="skipped")[i])
    _add(f"sa_layer.{_name}.unshuffle_forward", "un-shuffle dout with the INVERSE permutation "
         "(channel_shuffle_backward), not with the forward shuffle",
         lambda c, i=_i: c.backward_of(unshuffle="forward")[i])
    _add(f"sa_layer.{_name}.gates_swapped", "group_merge_backward returns (dy0, dy1): dy0 goes to the CHANNEL "
         "gate's backward and dy1 to the SPATIAL gate's; you swapped them (unpacked in the wrong order?)",
         lambda c, i=_i: c.backward_of(swap_dy=True)[i])
    if _i == 0:
        _add("sa_layer.dx.halves_swapped", "group_split_backward takes (dx0, dx1), the channel gate's dx0 first; "
             "you passed them swapped", lambda c: c.backward_of(swap_dx=True)[0])
    for _stale in (("x0", "x1"), ("x0",), ("x1",)):
        _add(f"sa_layer.{_name}.stale_{'_'.join(_stale)}", _STALE_HALVES,
             lambda c, i=_i, st=_stale: c.backward_of(stale=st)[i])
    _add(f"sa_layer.{_name}.last_forward", LAST_FORWARD, lambda c, i=_i: c.last_forward[i])
    if _i:
        _shape("sa_layer", _name)

assert len({m.id for m in TABLE}) == len(TABLE), "every mistake needs its own id"
