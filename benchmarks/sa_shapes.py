"""The shapes of the SA layers in the models the course trains or loads, one per stage.

CIFAR ResNet-20 at batch 512 (the recorded GPU runs' batch), groups 4; ImageNet ResNet-50 at
batch 128 (one GPU's share), groups 64 (SA-Net's). Within a stage every SA layer has the
same shape. benchmarks/triton_kernels.py compiles the kernels for these shapes and
benchmarks/gpu_smoke.py checks and times them.
"""
from __future__ import annotations

# model: (batch, groups, [(channels, height = width) of each stage])
MODELS = {"CIFAR ResNet-20": (512, 4, [(16, 32), (32, 16), (64, 8)]),
          "ImageNet ResNet-50": (128, 64, [(256, 56), (512, 28), (1024, 14), (2048, 7)])}


def sa_layers(models: dict = MODELS, batch: int | None = None) -> list[tuple[str, tuple[int, int, int, int], int]]:
    """(model, (B, C, H, W), groups) of every stage; ``batch`` replaces the models' batch."""
    return [(name, (batch or b, c, s, s), g) for name, (b, g, stages) in models.items() for c, s in stages]
