"""The PyTorch twin of the official ``sa_layer`` (SA-Net, Zhang & Yang 2021).

Same maths, same parameter names and shapes, so a state dict moves between the
official layer, this one and :class:`sa_numpy.SALayer` unchanged::

    cweight, cbias, sweight, sbias : (1, K, 1, 1)
    gn.weight, gn.bias             : (K,)

Shapes: x is (B, C, H, W), G = groups, K = C // (2G) channels per half-group.
"""
from __future__ import annotations

import torch
from torch import nn

from sa_numpy.validate import check_channels_groups, check_group_count

from .fused import fused_applies, shuffle_attention


#: The named forward intermediates of :meth:`SALayer.intermediates`, in order.
FORWARD_NAMES = ("x0", "x1", "s", "channel_gate", "y0", "n", "spatial_gate", "y1", "y", "out")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): out channel ``j*groups + i`` = in channel ``i*C/groups + j``."""
    b, c, h, w = x.shape
    check_group_count(groups, c)
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def check_feature_map(x, channels: int) -> None:
    """Check that x is a floating-point (B, C, H, W) tensor with ``channels`` channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (B, C, H, W), got {x.dim()}-D with shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"x has {x.shape[1]} channels but this module was built for "
                         f"channels={channels} (x.shape={tuple(x.shape)})")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


class SALayer(nn.Module):
    """Shuffle Attention, exactly as the official ``sa_layer``.

    The options exist for the ablations of the CIFAR experiments and all default to
    the official layer:

    - ``shuffle=False`` drops the final channel shuffle;
    - ``groupnorm=False`` gates the spatial branch with the plain affine
      ``sweight * x1 + sbias`` (no normalisation; ``gn`` is then absent);
    - ``conv_affine=True`` replaces both per-channel affines (``cweight/cbias``,
      ``sweight/sbias``) with 1x1 convolutions ``cconv`` and ``sconv`` over the K
      channels of a half-group, so channels inside a group can talk to each other.

    ``fused=True`` changes how, not what: :meth:`forward` then runs
    :func:`sa_torch.fused.shuffle_attention`, the same maths as one operator with a
    hand-derived backward and four passes over memory, on any device, dtype and layout
    (NCHW or channels_last), under autocast and ``torch.compile`` (the models train with
    it). The ablation options run op by op. The default, ``fused=False``, is the official
    layer through autograd: the reference every other implementation in this course is
    checked against.
    """

    def __init__(self, channels: int, groups: int = 64, *, shuffle: bool = True,
                 groupnorm: bool = True, conv_affine: bool = False, fused: bool = False):
        super().__init__()
        k = check_channels_groups(channels, groups)
        for name, flag in (("shuffle", shuffle), ("groupnorm", groupnorm), ("conv_affine", conv_affine),
                           ("fused", fused)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}={flag!r} must be True or False")
        self.channels, self.groups = channels, groups
        self.shuffle, self.conv_affine, self.fused = shuffle, conv_affine, fused
        if conv_affine:
            self.cconv = nn.Conv2d(k, k, 1)
            self.sconv = nn.Conv2d(k, k, 1)
            for conv in (self.cconv, self.sconv):
                nn.init.zeros_(conv.weight)
                nn.init.ones_(conv.bias)
        else:
            self.cweight = nn.Parameter(torch.zeros(1, k, 1, 1))
            self.cbias = nn.Parameter(torch.ones(1, k, 1, 1))
            self.sweight = nn.Parameter(torch.zeros(1, k, 1, 1))
            self.sbias = nn.Parameter(torch.ones(1, k, 1, 1))
        self.gn = nn.GroupNorm(k, k) if groupnorm else None

    def extra_repr(self) -> str:
        k = self.channels // (2 * self.groups)
        return f"channels={self.channels}, groups={self.groups}, K={k}" + (", fused=True" if self.fused else "")

    def _check_input(self, x: torch.Tensor) -> None:
        check_feature_map(x, self.channels)

    def _channel_affine(self, t: torch.Tensor) -> torch.Tensor:
        return self.cconv(t) if self.conv_affine else self.cweight * t + self.cbias

    def _spatial_affine(self, t: torch.Tensor) -> torch.Tensor:
        return self.sconv(t) if self.conv_affine else self.sweight * t + self.sbias

    def intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official forward, one named step at a time (the names the lessons use).

        Shapes: x0, x1, n, spatial_gate, y0, y1 (B*G, K, H, W); s, channel_gate
        (B*G, K, 1, 1); y, out (B, C, H, W). :meth:`forward` returns ``out`` (or, with
        ``fused=True``, the same values computed by :mod:`sa_torch.fused`).
        """
        self._check_input(x)
        b, c, h, w = x.shape
        xg = x.reshape(b * self.groups, c // self.groups, h, w)
        x0, x1 = xg.chunk(2, dim=1)
        # channel attention: gate each channel by its global average
        s = x0.mean(dim=(2, 3), keepdim=True)
        channel_gate = torch.sigmoid(self._channel_affine(s))
        y0 = x0 * channel_gate
        # spatial attention: gate each pixel by its instance-normalised value
        n = self.gn(x1) if self.gn is not None else x1
        spatial_gate = torch.sigmoid(self._spatial_affine(n))
        y1 = x1 * spatial_gate
        y = torch.cat([y0, y1], dim=1).reshape(b, c, h, w)
        out = channel_shuffle(y, 2) if self.shuffle else y
        return dict(zip(FORWARD_NAMES, (x0, x1, s, channel_gate, y0, n, spatial_gate, y1, y, out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and fused_applies(self):
            self._check_input(x)
            return shuffle_attention(self, x)
        return self.intermediates(x)["out"]
