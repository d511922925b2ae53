"""DistributedDataParallel set-up for ``torchrun --nproc_per_node=N -m sa_torch.train``.

Each rank trains on its shard of every epoch's order (:func:`sa_torch.train.recipe.epoch_order`);
the few numbers the loop reports (loss and accuracy sums, images) are summed over ranks
with :func:`all_sum`, and rank 0 alone writes files. In a single process every helper
here is a no-op.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_device(device: torch.device, world: int) -> torch.device:
    """On CUDA with several ranks, this rank's GPU (``LOCAL_RANK``), made current."""
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def all_sum(values: list[float], device) -> list[float]:
    """Sum a few numbers over all ranks (no-op in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, device) -> bool:
    """True on every rank when it is True on any one (so that all stop at the same step)."""
    if not dist.is_initialized():
        return flag
    return all_sum([float(flag)], device)[0] > 0


def from_rank0(make):
    """``make()`` run on rank 0 only, its (picklable) result handed to every rank."""
    if not dist.is_initialized():
        return make()
    box = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank0_first(load):
    """``load()`` on rank 0, then on the others (which then read what rank 0 cached)."""
    if not dist.is_initialized():
        return load()
    rank = dist.get_rank()
    result = load() if rank == 0 else None
    dist.barrier()
    return result if rank == 0 else load()


def finish() -> None:
    """End the process group, if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0
