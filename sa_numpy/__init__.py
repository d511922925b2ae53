"""Shuffle Attention (SA-Net) in pure NumPy: every part's forward and backward.

The parts follow the paper's figure:

- :mod:`sa_numpy.grouping`      feature grouping and the split into two branches
- :mod:`sa_numpy.channel_gate`  the channel-attention branch
- :mod:`sa_numpy.groupnorm`     GroupNorm for any number of groups
- :mod:`sa_numpy.spatial_gate`  the spatial-attention branch, built on GroupNorm
- :mod:`sa_numpy.shuffle`       channel shuffle and its inverse
- :mod:`sa_numpy.layer`         the whole layer, the parts chained (``sa_forward``/``sa_backward``),
                                and :class:`SALayer`
- :mod:`sa_numpy.fused`         the same layer fused, the fast path (``sa_forward_fused``/``sa_backward_fused``)
- :mod:`sa_numpy.gradcheck`     numerical gradients, ``rel_error`` and ``compare``
- :mod:`sa_numpy.validate`      the input checks, each error naming the value and the rule

It imports NumPy and nothing else: the course's tooling (checks, grader, tracer,
figures) lives in :mod:`sa_course`.
"""
from .channel_gate import channel_gate_backward, channel_gate_forward
from .gradcheck import compare, numerical_gradient, rel_error
from .groupnorm import groupnorm_backward, groupnorm_forward
from .grouping import group_merge_backward, group_merge_forward, group_split_backward, group_split_forward
from .fused import sa_backward_fused, sa_forward_fused
from .layer import SALayer, init_params, random_params, sa_backward, sa_forward
from .shuffle import channel_shuffle_backward, channel_shuffle_forward
from .spatial_gate import spatial_gate_backward, spatial_gate_forward
from .validate import PARAM_NAMES

__all__ = [
    "PARAM_NAMES", "SALayer", "init_params", "random_params",
    "sa_forward", "sa_backward", "sa_forward_fused", "sa_backward_fused",
    "group_split_forward", "group_split_backward", "group_merge_forward", "group_merge_backward",
    "channel_gate_forward", "channel_gate_backward",
    "groupnorm_forward", "groupnorm_backward",
    "spatial_gate_forward", "spatial_gate_backward",
    "channel_shuffle_forward", "channel_shuffle_backward",
    "numerical_gradient", "rel_error", "compare",
]
