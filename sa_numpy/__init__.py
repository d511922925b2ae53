"""Shuffle Attention (SA-Net) in pure NumPy: every part's forward and backward.

The parts follow the paper's figure:

- :mod:`sa_numpy.grouping`      feature grouping and the split into two branches
- :mod:`sa_numpy.channel_gate`  the channel-attention branch
- :mod:`sa_numpy.groupnorm`     GroupNorm for any number of groups
- :mod:`sa_numpy.spatial_gate`  the spatial-attention branch, built on GroupNorm
- :mod:`sa_numpy.shuffle`       channel shuffle and its inverse
- :mod:`sa_numpy.layer`         the whole layer and :class:`SALayer`
- :mod:`sa_numpy.gradcheck`     numerical gradients, ``rel_error`` and ``compare``

This package never imports torch.
"""
from .channel_gate import channel_gate_backward, channel_gate_forward
from .gradcheck import compare, numerical_gradient, rel_error
from .groupnorm import groupnorm_backward, groupnorm_forward
from .grouping import group_merge_backward, group_merge_forward, group_split_backward, group_split_forward
from .layer import SALayer, init_params, random_params, sa_backward, sa_backward_parts, sa_forward, sa_forward_parts
from .shuffle import channel_shuffle_backward, channel_shuffle_forward
from .spatial_gate import spatial_gate_backward, spatial_gate_forward
from .validate import PARAM_NAMES

__all__ = [
    "PARAM_NAMES", "SALayer", "init_params", "random_params",
    "sa_forward", "sa_backward", "sa_forward_parts", "sa_backward_parts",
    "group_split_forward", "group_split_backward", "group_merge_forward", "group_merge_backward",
    "channel_gate_forward", "channel_gate_backward",
    "groupnorm_forward", "groupnorm_backward",
    "spatial_gate_forward", "spatial_gate_backward",
    "channel_shuffle_forward", "channel_shuffle_backward",
    "numerical_gradient", "rel_error", "compare",
]
