"""The recipe of a run: SGD with Nesterov momentum and weight decay on conv and linear weights
only, a one-cycle learning rate (linear warmup, then linear decay to zero at the last step),
and each epoch's order of the training images, a function of (seed, epoch) alone so that a
resumed run sees the same batches.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .config import TrainConfig


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's share of epoch ``epoch``'s shuffled order: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = n // world
    return perm[rank * per_rank:(rank + 1) * per_rank]


def one_cycle(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor at step s: linear 0 -> 1 over the warmup, then linear 1 -> 0 at the end."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; weight decay on conv and linear weights, not on norms or gates."""
    decay = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
