"""ResNets with pluggable attention, built the way torchvision builds ResNets.

- CIFAR ResNet-20/32/56/110 (He et al. 2016, section 4.2): a 3x3 stem with 16 channels,
  three stages of n basic blocks with 16, 32 and 64 channels, depth = 6n + 2. The
  shortcut that changes shape is He et al.'s option A (subsample and append zero
  channels), which has no parameters: ResNet-20 then has the paper's 0.27M parameters.
- SA-ResNet-50/101/152 for ImageNet with the layout of the official SA-Net code
  (``wofmanaf/SA-Net``, ``models/sa_resnet.py``): torchvision's ResNet with an ``sa``
  module in every bottleneck, so the state-dict keys and shapes are the official ones and
  official checkpoints load with ``strict=True``; :func:`load_official_checkpoint`
  (from :mod:`sa_torch.official_weights`) reads them in the official file format.

Attention ('none', 'sa', 'se' or 'eca', see :mod:`sa_torch.attention`) sits where the
official ``SABottleneck`` puts it: after the block's last BatchNorm, before the residual
add. It is registered under its own name (``layer1.0.sa``, ``layer1.0.se``, ...).

``groups`` (Shuffle Attention's G) is one number per model. SA needs every block's
width C to be divisible by 2G, and this is checked for every block before anything is
built; the official code's default G=64 would fail on the 16-channel CIFAR blocks.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn
from torch.nn import functional as F

from sa_numpy.validate import check_channels_groups

from .attention import ATTENTION_NAMES, check_attention_options, make_attention
from .official_weights import load_official_checkpoint

MODEL_NAMES = ("resnet20", "resnet32", "resnet56", "resnet110")
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)

__all__ = ["MODEL_NAMES", "ATTENTION_NAMES", "BasicBlock", "Bottleneck", "ResNet",
           "ZeroPadShortcut", "build_model", "check_groups_fit", "cifar_resnet",
           "load_official_checkpoint", "sa_resnet50", "sa_resnet101", "sa_resnet152"]


def conv(in_planes: int, out_planes: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free k x k convolution with 'same' padding and torchvision's ResNet init.

    (Kaiming normal, fan_out, for ReLU. BatchNorm's default init, weight 1 and bias 0, is
    already torchvision's, and each attention module keeps its own init: SA's is the
    official one, cweight = sweight = 0 and cbias = sbias = 1.)
    """
    layer = nn.Conv2d(in_planes, out_planes, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A shortcut: keep every ``stride``-th pixel, append zero channels.

    (B, C_in, H, W) -> (B, C_out, ceil(H/stride), ceil(W/stride)); no parameters.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def extra_repr(self) -> str:
        return f"{self.in_planes} -> {self.out_planes}, stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))


def projection_shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Option B: a strided 1x1 convolution and BatchNorm (torchvision's ``downsample``)."""
    return nn.Sequential(conv(in_planes, out_planes, 1, stride), nn.BatchNorm2d(out_planes))


class _ResidualBlock(nn.Module):
    """``relu(attention(residual(x)) + shortcut(x))``; subclasses define ``residual``."""

    def _add_attention(self, attention: str, channels: int, groups: int, options: dict) -> None:
        self.attention = attention
        if attention != "none":
            self.add_module(attention, make_attention(attention, channels, groups, **options))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.residual(x)
        if self.attention != "none":
            out = getattr(self, self.attention)(out)
        return self.relu(out + identity)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (the CIFAR block): (B, in_planes, H, W) -> (B, planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 attention: str = "none", groups: int = 1, attention_options: dict | None = None):
        super().__init__()
        self.conv1 = conv(in_planes, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self._add_attention(attention, planes, groups, attention_options or {})
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4: (B, in_planes, H, W) -> (B, 4*planes, H/s, W/s)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 attention: str = "none", groups: int = 1, attention_options: dict | None = None):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = conv(in_planes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, out_planes, 1)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self._add_attention(attention, out_planes, groups, attention_options or {})
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def block_widths(block: type[_ResidualBlock], layers, widths) -> dict[str, int]:
    """Each block's name and output width C (the width its attention sees), in order."""
    return {f"layer{i}.{j}": planes * block.expansion
            for i, (planes, n) in enumerate(zip(widths, layers), start=1) for j in range(n)}


def check_groups_fit(groups: int, widths: dict[str, int]) -> None:
    """Check that SA with ``groups`` fits every block; the error names the first block that fails."""
    for name, width in widths.items():
        try:
            check_channels_groups(width, groups)
        except ValueError:
            if groups < 1:                                  # not about this block
                raise
            fits = [g for g in range(1, min(widths.values()) + 1)
                    if all(w % (2 * g) == 0 for w in widths.values())]
            raise ValueError(f"groups={groups} does not fit block {name} (width {width}): {width} channels "
                             f"are not divisible by 2*groups={2 * groups} (SA splits each group into two "
                             f"halves); groups that fit every block of this model: {fits}") from None


class ResNet(nn.Module):
    """conv1 -> bn1 -> relu -> maxpool -> layer1 ... layerN -> avgpool -> fc (torchvision's names).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: the number of blocks in each stage, e.g. (3, 3, 3) for ResNet-20.
        widths: each stage's ``planes``; a block outputs ``planes * block.expansion`` channels.
        imagenet_stem: 7x7 stride-2 stem and 3x3 max pool (ImageNet) instead of one 3x3
            stride-1 convolution (CIFAR).
        shortcut: builds the shortcut ``(in_planes, out_planes, stride) -> nn.Module`` of
            every block whose input and output shapes differ.
        attention, groups, attention_options: see :func:`sa_torch.attention.make_attention`.

    Shapes: (B, 3, H, W) -> (B, num_classes).
    """

    def __init__(self, block: type[_ResidualBlock], layers, widths, *, imagenet_stem: bool,
                 shortcut, attention: str = "none", groups: int = 1, num_classes: int = 1000,
                 **attention_options):
        super().__init__()
        check_attention_options(attention, attention_options)
        if attention == "sa":
            check_groups_fit(groups, block_widths(block, layers, widths))
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
        self.attention, self.groups, self.num_stages = attention, groups, len(layers)

        kernel, stride = (7, 2) if imagenet_stem else (3, 1)
        self.conv1 = conv(3, widths[0], kernel, stride)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet_stem else nn.Identity()

        in_planes = widths[0]
        for i, (planes, n) in enumerate(zip(widths, layers), start=1):
            stride = 1 if i == 1 else 2
            out_planes = planes * block.expansion
            blocks = []
            for _ in range(n):
                downsample = (shortcut(in_planes, out_planes, stride)
                              if stride != 1 or in_planes != out_planes else None)
                blocks.append(block(in_planes, planes, stride, downsample, attention, groups,
                                    attention_options))
                in_planes, stride = out_planes, 1
            self.add_module(f"layer{i}", nn.Sequential(*blocks))

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int = 20, attention: str = "sa", groups: int = 4, num_classes: int = 10,
                 **attention_options) -> ResNet:
    """CIFAR ResNet of depth 6n+2 (20, 32, 56, 110, ...) with option-A shortcuts.

    ``groups=4`` is the default because SA needs C divisible by 2G in every block and the
    narrowest block has C=16: G can be 1, 2, 4 or 8, and G=4 gives K=2, 4, 8 channels per
    half-group in the three stages. Attention options: ``sa_shuffle``, ``sa_groupnorm``,
    ``sa_conv_affine``, ``sa_fused``, ``se_reduction``, ``se_min_hidden``, ``eca_kernel``.
    """
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth!r} must be 6n+2 for some n >= 1 (20, 32, 44, 56, 110, ...)")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, (n, n, n), CIFAR_WIDTHS, imagenet_stem=False, shortcut=ZeroPadShortcut,
                  attention=attention, groups=groups, num_classes=num_classes, **attention_options)


def build_model(name: str, attention: str = "sa", groups: int = 4, **options) -> ResNet:
    """Build a CIFAR model by name (one of :data:`MODEL_NAMES`); options as :func:`cifar_resnet`."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return cifar_resnet(int(name.removeprefix("resnet")), attention, groups, **options)


def _sa_imagenet_resnet(layers, num_classes: int, groups: int) -> ResNet:
    return ResNet(Bottleneck, layers, IMAGENET_WIDTHS, imagenet_stem=True, shortcut=projection_shortcut,
                  attention="sa", groups=groups, num_classes=num_classes)


def sa_resnet50(num_classes: int = 1000, groups: int = 64) -> ResNet:
    """SA-ResNet-50 with the official layout (25,557,740 parameters for 1000 classes)."""
    return _sa_imagenet_resnet((3, 4, 6, 3), num_classes, groups)


def sa_resnet101(num_classes: int = 1000, groups: int = 64) -> ResNet:
    """SA-ResNet-101 with the official layout (the official constructor forgets to return it)."""
    return _sa_imagenet_resnet((3, 4, 23, 3), num_classes, groups)


def sa_resnet152(num_classes: int = 1000, groups: int = 64) -> ResNet:
    """SA-ResNet-152 with the official layout."""
    return _sa_imagenet_resnet((3, 8, 36, 3), num_classes, groups)
