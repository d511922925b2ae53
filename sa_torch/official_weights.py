"""Load SA-ResNet weights saved by the official SA-Net code, torchvision's scripts or by hand.

The official ``main.py`` (``wofmanaf/SA-Net``, adapted from PyTorch's ImageNet example)
saves after every epoch::

    {'epoch': int, 'state_dict': model.state_dict(), 'best_acc': 0-d tensor,
     'optimizer': optimizer.state_dict()}

from a model wrapped in ``nn.DataParallel`` (or ``DistributedDataParallel``), so every key
of ``state_dict`` starts with ``module.``. PyTorch's ImageNet example itself also stores
``'arch'`` and calls the accuracy ``'best_acc1'``; torchvision's reference scripts put the
weights under ``'model'`` next to ``'optimizer'``, ``'lr_scheduler'``, ``'epoch'`` and
``'args'``. :func:`load_official_checkpoint` takes any of these, or a bare state dict,
checks every key and shape before it copies anything, and then loads strictly.
"""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping

import torch
from torch import nn

#: Where the weights sit in a checkpoint dict, in the order they are looked for.
STATE_DICT_KEYS = ("state_dict", "model")
#: What ``nn.DataParallel`` and ``DistributedDataParallel`` put before every key.
PARALLEL_PREFIX = "module."
#: The architecture names that :func:`arch_of` can tell from a state dict.
ARCH_PATTERN = re.compile(r"(sa_)?resnet\d+")

__all__ = ["load_official_checkpoint", "read_checkpoint", "find_state_dict", "arch_of"]


def read_checkpoint(path_or_mapping) -> Mapping:
    """A checkpoint as a mapping: a dict is returned as it is, a path is read on the CPU.

    Files are read with ``weights_only=True``: tensors, numbers, strings and containers
    only, never code. ``argparse.Namespace`` is allowed too, for the ``'args'`` entry of
    torchvision's reference scripts.
    """
    if isinstance(path_or_mapping, (str, os.PathLike)):
        with torch.serialization.safe_globals([argparse.Namespace]):
            path_or_mapping = torch.load(path_or_mapping, map_location="cpu", weights_only=True)
    if not isinstance(path_or_mapping, Mapping):
        raise TypeError(f"expected a checkpoint path or a dict, got {type(path_or_mapping).__name__}")
    return path_or_mapping


def _is_state_dict(obj) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _listed(keys, limit: int = 20) -> str:
    keys = list(keys)
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def find_state_dict(checkpoint: Mapping) -> tuple[dict[str, torch.Tensor], Mapping]:
    """The state dict in ``checkpoint``, without ``module.`` prefixes, and the dict around it.

    A bare state dict (every value a tensor) is its own state dict, with no dict around it
    (``{}``); otherwise the weights are looked for under ``'state_dict'``, then ``'model'``.
    """
    if _is_state_dict(checkpoint):
        state, around = checkpoint, {}
    else:
        key = next((k for k in STATE_DICT_KEYS if _is_state_dict(checkpoint.get(k))), None)
        if key is None:
            found = [f"checkpoint[{k!r}] is a {type(checkpoint[k]).__name__}, not a dict of tensors"
                     for k in STATE_DICT_KEYS if k in checkpoint]
            raise ValueError(f"no state dict in this checkpoint: expected a dict of tensors, or one under "
                             f"{' or '.join(map(repr, STATE_DICT_KEYS))}; its top-level keys are "
                             f"{_listed(map(repr, checkpoint))}" + "".join(f"; {line}" for line in found))
        state, around = checkpoint[key], checkpoint
    if all(k.startswith(PARALLEL_PREFIX) for k in state):
        state = {k.removeprefix(PARALLEL_PREFIX): v for k, v in state.items()}
    return dict(state), around


def arch_of(keys) -> str | None:
    """The official name ('sa_resnet50', 'resnet101', ...) of the ResNet with these state-dict keys.

    depth = 3 * blocks + 2 for bottleneck blocks (three convolutions each), 2 * blocks + 2
    for basic blocks; None when the keys have no ``layerI.J.`` blocks.
    """
    keys = list(keys)
    blocks = {m.groups() for k in keys if (m := re.match(r"layer(\d+)\.(\d+)\.", k))}
    if not blocks:
        return None
    convs_per_block = 3 if any(re.match(r"layer\d+\.\d+\.conv3\.", k) for k in keys) else 2
    sa = any(".sa." in k for k in keys)
    return f"{'sa_' if sa else ''}resnet{convs_per_block * len(blocks) + 2}"


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise one ValueError listing every missing, unexpected and wrongly shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or wrong_shape):
        return
    lines = [f"the checkpoint does not fit this {type(model).__name__} (nothing was loaded):"]
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {_listed(missing)}")
    if unexpected:
        lines.append(f"  unexpected in the checkpoint ({len(unexpected)}): {_listed(unexpected)}")
    if wrong_shape:
        lines.append(f"  wrong shape ({len(wrong_shape)}): " + _listed(
            f"{k} is {tuple(state[k].shape)} in the checkpoint, {tuple(expected[k].shape)} in the model"
            for k in wrong_shape))
        if any(".sa." in k for k in wrong_shape):
            lines.append("  (SA parameters have K = C/(2G) channels: were the checkpoint and the model "
                         "built with different groups G? The official models use G=64.)")
    ours, theirs = arch_of(expected), arch_of(state)
    if ours != theirs and None not in (ours, theirs):
        lines.append(f"  the checkpoint's keys describe {theirs}; the model is {ours}")
    raise ValueError("\n".join(lines))


def load_official_checkpoint(model: nn.Module, path_or_mapping) -> dict:
    """Load an SA-Net checkpoint (or any dict or file holding a state dict) into ``model``.

    Args:
        model: the model to fill, e.g. ``sa_resnet50()``.
        path_or_mapping: a path (``str`` or ``os.PathLike``) or a dict: the official
            ``main.py`` format ``{'epoch', 'state_dict', 'best_acc', 'optimizer'}`` (keys
            ``module.``-prefixed), PyTorch's ImageNet example's (which adds ``'arch'`` and
            names the accuracy ``'best_acc1'``), torchvision's ``{'model': ..., ...}``, or a
            bare state dict, with or without ``module.`` prefixes.

    Returns:
        The checkpoint's metadata, where present: ``epoch``, ``arch`` and ``best_acc1`` (a
        float, from ``'best_acc1'`` or the official ``'best_acc'``).

    Raises:
        ValueError: no state dict found (the message lists the top-level keys), an
            ``'arch'`` that the model is not, or keys and shapes that do not match (the
            message lists each missing, unexpected and wrongly shaped key). The model is
            left unchanged.
    """
    state, around = find_state_dict(read_checkpoint(path_or_mapping))
    arch, ours = around.get("arch"), arch_of(model.state_dict())
    if isinstance(arch, str) and ARCH_PATTERN.fullmatch(arch) and ours is not None and arch != ours:
        raise ValueError(f"the checkpoint is for arch={arch!r}, but the model is {ours} (nothing was loaded)")
    check_fits(model, state)
    model.load_state_dict(state, strict=True)
    info = {key: around[key] for key in ("epoch", "arch") if key in around}
    best = around.get("best_acc1", around.get("best_acc"))
    if best is not None:
        info["best_acc1"] = float(best)
    return info
