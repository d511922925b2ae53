"""Channel attention modules to compare Shuffle Attention with, and the factory the blocks use.

Every module maps a feature map (B, C, H, W) to a gated feature map of the same shape:

- :class:`SEBlock` -- Squeeze-and-Excitation (Hu et al., 2018): global average pool,
  a bottleneck MLP ``C -> C/r -> C``, sigmoid, scale each channel.
- :class:`ECABlock` -- Efficient Channel Attention (Wang et al., 2020): global average
  pool, a 1-D convolution of kernel k across the channel axis (no bottleneck), sigmoid.
- :class:`sa_torch.SALayer` -- Shuffle Attention, the subject of this course.

:func:`make_attention` builds one of them from a name and the options of the model
constructors (``sa_shuffle``, ``se_reduction``, ``eca_kernel``, ...), so that every block
type builds its attention the same way.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .layer import SALayer, check_feature_map

ATTENTION_NAMES = ("none", "sa", "se", "eca")

# The options each attention kind accepts, with their defaults, as the model constructors
# spell them. Giving a non-default value for another kind's option is a mistake, not a no-op.
ATTENTION_OPTIONS = {
    "none": {},
    "sa": {"sa_shuffle": True, "sa_groupnorm": True, "sa_conv_affine": False, "sa_fused": True},
    "se": {"se_reduction": 16, "se_min_hidden": 4},
    "eca": {"eca_kernel": None},
}


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer")
    if value < 1:
        raise ValueError(f"{name}={value} must be at least 1")
    return int(value)


class SEBlock(nn.Module):
    """Squeeze-and-Excitation: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``.

    The hidden width is ``max(C // reduction, min_hidden)`` (at most C). The floor matters
    on CIFAR ResNets: with the usual r=16 a 16-channel block would squeeze its descriptor
    through a single unit, so every channel's gate would be a function of one number.

    Shapes: x (B, C, H, W) -> s (B, C) -> hidden (B, C_hidden) -> gate (B, C) -> out (B, C, H, W).
    Parameters: ``fc1`` (C_hidden, C) + (C_hidden,), ``fc2`` (C, C_hidden) + (C,).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 4):
        super().__init__()
        self.channels = _check_positive_int(channels, "channels")
        reduction = _check_positive_int(reduction, "reduction")
        min_hidden = _check_positive_int(min_hidden, "min_hidden")
        self.hidden = min(channels, max(channels // reduction, min_hidden))
        self.fc1 = nn.Linear(channels, self.hidden)
        self.fc2 = nn.Linear(self.hidden, channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        s = x.mean(dim=(2, 3))                                    # squeeze: (B, C)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))  # excite: (B, C)
        return x * gate[:, :, None, None]


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel: ``t = int(|log2(C) + b| / gamma)``, plus one if t is even.

    It is 3 for C = 16, 32 and 64 (every CIFAR ResNet block), 5 for C = 128 to 1024
    and 7 for C = 2048.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECABlock(nn.Module):
    """Efficient Channel Attention: ``x * sigmoid(conv1d_k(mean_hw(x)))`` across channels.

    ``kernel=None`` picks k from C with :func:`eca_kernel_size` (the paper's adaptive rule).

    Shapes: x (B, C, H, W) -> s (B, 1, C) -> gate (B, 1, C) -> out (B, C, H, W).
    Parameters: ``conv.weight`` (1, 1, k), no bias, as in the official ECA layer.
    """

    def __init__(self, channels: int, kernel: int | None = None):
        super().__init__()
        self.channels = _check_positive_int(channels, "channels")
        if kernel is None:
            kernel = eca_kernel_size(channels)
        kernel = _check_positive_int(kernel, "kernel")
        if kernel % 2 == 0:
            raise ValueError(f"kernel={kernel} must be odd, so that the gate of channel c is "
                             f"centred on channel c")
        self.kernel = kernel
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel={self.kernel}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        s = x.mean(dim=(2, 3))[:, None, :]                  # (B, 1, C)
        gate = torch.sigmoid(self.conv(s))[:, 0, :, None, None]  # (B, C, 1, 1)
        return x * gate


ATTENTION_TYPES = (SALayer, SEBlock, ECABlock)


def check_attention_options(kind: str, options: dict) -> dict:
    """Return ``kind``'s options (defaults filled in) after checking every given option.

    Unknown names raise TypeError; a non-default value for another kind's option raises
    ValueError (``sa_shuffle=False`` with ``attention='se'`` would silently do nothing).
    """
    if kind not in ATTENTION_NAMES:
        raise ValueError(f"attention={kind!r} is not one of {ATTENTION_NAMES}")
    known = {name: (owner, default) for owner, table in ATTENTION_OPTIONS.items()
             for name, default in table.items()}
    for name, value in options.items():
        if name not in known:
            raise TypeError(f"unknown attention option {name!r}; valid options: {sorted(known)}")
        owner, default = known[name]
        if owner != kind and value != default:
            raise ValueError(f"{name}={value!r} only applies to attention={owner!r}, "
                             f"but attention={kind!r}")
    return {name: options.get(name, default) for name, default in ATTENTION_OPTIONS[kind].items()}


def make_attention(kind: str, channels: int, groups: int, **options) -> nn.Module | None:
    """Build the attention module ``kind`` for a ``channels``-wide feature map (None for 'none').

    ``groups`` is used by 'sa' only. Options: ``sa_shuffle``, ``sa_groupnorm``,
    ``sa_conv_affine``, ``sa_fused`` (see :class:`sa_torch.SALayer`; models train with the
    fused CPU path unless ``sa_fused=False``), ``se_reduction``, ``se_min_hidden``, ``eca_kernel``.
    """
    opts = check_attention_options(kind, options)
    if kind == "sa":
        return SALayer(channels, groups, shuffle=opts["sa_shuffle"],
                       groupnorm=opts["sa_groupnorm"], conv_affine=opts["sa_conv_affine"],
                       fused=opts["sa_fused"])
    if kind == "se":
        return SEBlock(channels, opts["se_reduction"], opts["se_min_hidden"])
    if kind == "eca":
        return ECABlock(channels, opts["eca_kernel"])
    return None
