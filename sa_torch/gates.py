"""Look inside trained Shuffle Attention: every intermediate of a layer, its gates, and
how much each group matters to the class score.

Three tools, all device-agnostic (they follow the model's and the images' device):

- :func:`sa_intermediates` runs an :class:`~sa_torch.layer.SALayer` and returns every tensor
  the lessons name (x0, x1, s, channel_gate, n, spatial_gate, y0, y1, y, out), from the
  layer's own forward. The tracer (:mod:`sa_course.trace`) and the gate hooks both use it.
- :class:`GateRecorder` hooks every SA layer of a model and keeps its gates:
  channel gate (B, G, K) and spatial gate (B, G, K, H, W).
- :func:`group_importance` measures, in the manner of the paper's figure 4 (and the
  official ``cam/group_act.py``), how the class score changes when the input image is
  masked by each group's activation map.

Letters: B batch, C channels, H, W, G groups, K = C // (2G), M masks per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layer import SALayer

def sa_intermediates(layer: SALayer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every named intermediate of ``layer`` on x: :meth:`SALayer.intermediates`, the very
    code its forward runs (x0, x1, s, channel_gate, y0, n, spatial_gate, y1, y, out)."""
    if not isinstance(layer, SALayer):
        raise TypeError(f"layer must be a sa_torch.SALayer, got {type(layer).__name__}")
    return layer.intermediates(x)


@dataclass
class Gates:
    """The two gates of one SA layer for a batch of images (on the CPU).

    channel: (B, G, K)        sigmoid(cweight * mean(x0) + cbias), one value per channel
    spatial: (B, G, K, H, W)  sigmoid(sweight * GN(x1) + sbias), one value per pixel
    """
    channel: torch.Tensor
    spatial: torch.Tensor

    @property
    def spatial_map(self) -> torch.Tensor:
        """(B, G, H, W): the spatial gate averaged over the K channels of each group."""
        return self.spatial.mean(dim=2)


def sa_layers(model: nn.Module) -> dict[str, SALayer]:
    """Every :class:`SALayer` inside ``model``, keyed by its module name ("layer1.0.sa")."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, SALayer)}
    if not layers:
        raise ValueError(f"{type(model).__name__} contains no sa_torch.SALayer module")
    return layers


class GateRecorder:
    """Forward hooks that keep the gates of every SA layer of a model.

    >>> with GateRecorder(model) as rec:
    ...     model(images)
    >>> rec.gates["layer3.2.sa"].spatial_map      # (B, G, H, W)

    Each forward call appends its batch; gates are detached and moved to the CPU.
    """

    def __init__(self, model: nn.Module):
        self.layers = sa_layers(model)
        self._batches: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in self.layers}
        self._handles = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            steps = sa_intermediates(module, inputs[0])
            b, g = inputs[0].shape[0], module.groups
            channel = steps["channel_gate"].detach().reshape(b, g, -1).cpu()
            spatial = steps["spatial_gate"].detach()
            self._batches[name].append((channel, spatial.reshape(b, g, *spatial.shape[1:]).cpu()))
        return hook

    def __enter__(self) -> "GateRecorder":
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def gates(self) -> dict[str, Gates]:
        """Layer name -> :class:`Gates` of every image seen so far, in order."""
        missing = [n for n, batches in self._batches.items() if not batches]
        if missing:
            raise RuntimeError(f"no forward pass recorded for {missing}: call the model inside "
                               f"the `with GateRecorder(model)` block")
        return {n: Gates(torch.cat([c for c, _ in batches]), torch.cat([s for _, s in batches]))
                for n, batches in self._batches.items()}


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _batches(n: int, batch_size: int):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        desc = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor (B, 3, H, W), got {desc}")


@torch.no_grad()
def class_scores(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (B, classes), on the CPU. Puts ``model`` in eval mode and runs
    it on its own device, ``batch_size`` images at a time."""
    _check_images(images)
    model.eval()
    device = _device(model)
    return torch.cat([F.softmax(model(images[sl].to(device)), dim=1).cpu()
                      for sl in _batches(len(images), batch_size)])


@torch.no_grad()
def masked_class_scores(model: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                        classes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Score of class ``classes[b]`` for every masked image ``images[b] * masks[b, m]``.

    images (B, 3, H, W), masks (B, M, H, W) with values in [0, 1], classes (B,) ints.
    Returns (B, M) softmax probabilities. All B*M masked images go through the model in
    batches of ``batch_size``; an all-ones mask gives the unmasked score.
    """
    _check_images(images)
    b, _, h, w = images.shape
    if masks.dim() != 4 or masks.shape[0] != b or tuple(masks.shape[2:]) != (h, w):
        raise ValueError(f"masks must be (B, M, H, W) = ({b}, M, {h}, {w}) to match images "
                         f"{tuple(images.shape)}, got {tuple(masks.shape)}")
    classes = torch.as_tensor(classes)
    if classes.shape != (b,):
        raise ValueError(f"classes must be ({b},), one class per image, got {tuple(classes.shape)}")
    m = masks.shape[1]
    masked = images[:, None] * masks[:, :, None].to(images.device, images.dtype)
    masked = masked.reshape(b * m, -1, h, w)
    probs = class_scores(model, masked, batch_size)                     # (B*M, classes)
    return probs.gather(1, classes.repeat_interleave(m)[:, None].cpu()).reshape(b, m)


def group_masks(activation: torch.Tensor, groups: int, size: tuple[int, int]) -> torch.Tensor:
    """activation (B, C, h, w) -> masks (B, G, H, W): the mean over each group's C/G channels,
    upsampled bilinearly to ``size`` and min-max scaled to [0, 1] per image and group.

    A map with no contrast (max = min, e.g. a dead ReLU group) gives an all-zero mask.
    """
    b, c, h, w = activation.shape
    if c % groups:
        raise ValueError(f"channels={c} is not divisible by groups={groups}")
    maps = activation.reshape(b, groups, c // groups, h, w).mean(dim=2)
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    low = maps.amin(dim=(2, 3), keepdim=True)
    span = maps.amax(dim=(2, 3), keepdim=True) - low
    return (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny)


@dataclass
class GroupImportance:
    """Result of :func:`group_importance` for B images and G groups.

    scores: (B, G) class score with the image masked by each group's map
    base:   (B,)   class score of the unmasked image
    classes: (B,)  the class whose score is measured
    """
    layer: str
    scores: torch.Tensor
    base: torch.Tensor
    classes: torch.Tensor

    @property
    def change(self) -> torch.Tensor:
        """(B, G) score with the mask minus the unmasked score."""
        return self.scores - self.base[:, None]


def _find_module(model: nn.Module, layer) -> tuple[str, nn.Module]:
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(f"the module {type(layer).__name__} given as layer is not part of the model")
    modules = dict(model.named_modules())
    if layer not in modules:
        blocks = [n for n in modules if n.count(".") == 1]
        raise ValueError(f"layer={layer!r} is not a module of the model; blocks are e.g. {blocks[:6]}")
    return layer, modules[layer]


def group_importance(model: nn.Module, images: torch.Tensor, labels=None, layer="layer3.2",
                     groups: int | None = None, batch_size: int = 256) -> GroupImportance:
    """How much each group of ``layer``'s output supports the class score (paper, figure 4).

    1. Run the model and keep ``layer``'s output activation (B, C, h, w).
    2. Average each group's C/G channels, upsample to the image size and scale to [0, 1]:
       one mask per group (:func:`group_masks`).
    3. Score every image masked by every group's mask (:func:`masked_class_scores`): the
       softmax probability of ``labels`` (or of the predicted class when labels is None).

    ``layer`` is a module name as in ``model.named_modules()`` ("layer3.2") or the module.
    ``groups`` defaults to the groups of the SA layer at or inside ``layer``. Runs on the
    model's device; results come back on the CPU.
    """
    _check_images(images)
    name, module = _find_module(model, layer)
    if groups is None:
        inner = [m for m in module.modules() if isinstance(m, SALayer)]
        if not inner:
            raise ValueError(f"layer {name!r} contains no SALayer: pass groups= explicitly")
        groups = inner[0].groups
    captured = []
    handle = module.register_forward_hook(lambda m, i, out: captured.append(out.detach()))
    try:
        base_probs = class_scores(model, images, batch_size)
    finally:
        handle.remove()
    activation = torch.cat([a.cpu() for a in captured])
    classes = base_probs.argmax(dim=1) if labels is None else torch.as_tensor(labels).cpu()
    masks = group_masks(activation.to(images.dtype), groups, tuple(images.shape[2:]))
    scores = masked_class_scores(model, images, masks, classes, batch_size)
    base = base_probs.gather(1, classes[:, None]).squeeze(1)
    return GroupImportance(name, scores, base, classes)


def class_means(values: torch.Tensor, labels, num_classes: int | None = None) -> torch.Tensor:
    """values (N, ...) -> (num_classes, D): the mean of the flattened values of each class
    (NaN for a class with no example). ``num_classes`` defaults to ``labels.max() + 1``."""
    values = values.reshape(len(values), -1)
    labels = torch.as_tensor(labels, device=values.device)
    if labels.shape != (len(values),):
        raise ValueError(f"labels must be ({len(values)},), one per row of values, got {tuple(labels.shape)}")
    n = int(labels.max()) + 1 if num_classes is None else num_classes
    sums = torch.zeros(n, values.shape[1], dtype=values.dtype, device=values.device).index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=n).to(values.dtype)
    return sums / counts[:, None]


def between_class_fraction(values: torch.Tensor, labels) -> float:
    """How class-specific ``values`` (N, ...) are: the share of their variance explained by the
    class, sum_d Var(class means) / sum_d Var(values), the classes weighted by their size.
    0 when every class has the same mean, 1 when all variation is between classes."""
    values = values.reshape(len(values), -1).double()
    labels = torch.as_tensor(labels)
    means = class_means(values, labels)
    weights = torch.bincount(labels, minlength=len(means)).double()[:, None] / len(values)
    between = (weights * torch.nan_to_num(means - values.mean(dim=0)) ** 2).sum()
    total = values.var(dim=0, unbiased=False).sum()
    return float(between / total) if total > 0 else 0.0


def between_class_chance(values: torch.Tensor, labels, permutations: int = 20, seed: int = 0) -> float:
    """The :func:`between_class_fraction` of labels unrelated to the values: its mean over
    random permutations of the labels. With N examples of c classes it is about
    (c - 1) / (N - 1), not 0, so a measured fraction means something only well above it."""
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    return float(np.mean([between_class_fraction(values, labels[torch.randperm(len(labels), generator=generator)])
                          for _ in range(permutations)]))
