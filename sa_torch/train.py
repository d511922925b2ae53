"""Train a CIFAR ResNet, with or without attention: ``python -m sa_torch.train --help``.

A plain loop, readable top to bottom:

    for each epoch:
        shuffle the training set (an order fixed by seed and epoch)
        for each batch: augment on the device, forward, loss, backward, step, LR step
        evaluate on the test set; append a row to metrics.json / metrics.csv
        write a checkpoint (atomically: temp file, then rename)

The whole data set lives on the device as uint8; batches are gathered, augmented
(random crop, flip) and normalised there, so the loop does no per-image Python work.

``--resume`` continues exactly where a run stopped, even in the middle of an epoch
(Ctrl-C saves a checkpoint there). On CUDA the loop uses bf16 autocast and
channels_last. ``torchrun --nproc_per_node=N -m sa_torch.train ...`` runs
DistributedDataParallel: each rank trains on its shard of every epoch's order and
the metrics (summed over ranks) are written by rank 0.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .data import DataError, DeviceData, load_cifar10
from .models import build_model

CHECKPOINT = "checkpoint.pt"
# metrics that measure speed, so differ between otherwise identical runs
TIMING_KEYS = ("images_per_s", "train_time", "eval_time", "wall_time")


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in every checkpoint."""

    model: str = "resnet20"
    attention: str = "sa"
    groups: int = 4
    sa_shuffle: bool = True
    sa_groupnorm: bool = True
    sa_conv_affine: bool = False
    epochs: int = 30
    batch_size: int = 512
    lr: float = 0.4             # peak learning rate of the one-cycle schedule
    warmup_epochs: float = 2.0  # linear rise from 0 to lr, then linear fall to 0
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on conv and linear weights only
    label_smoothing: float = 0.1
    tta: bool = False           # test-time augmentation: average logits of image and its mirror
    seed: int = 0
    data: str | None = None
    download: bool = False
    out: str | None = None
    resume: bool = False
    device: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    compile: str | None = None         # a torch.compile mode: default, reduce-overhead, ...
    channels_last: bool | None = None  # default: on for CUDA
    amp: bool | None = None            # bf16 autocast; default: on for CUDA
    progress: bool = True

    def model_options(self) -> dict:
        options = dict(sa_shuffle=self.sa_shuffle, sa_groupnorm=self.sa_groupnorm,
                       sa_conv_affine=self.sa_conv_affine)
        return options if self.attention == "sa" else {}


@dataclass
class RunState:
    """Where a run is: completed epochs, steps into the current one, its running sums."""

    epoch: int = 0
    step: int = 0
    sums: dict = field(default_factory=lambda: {"loss": 0.0, "correct": 0, "count": 0})
    wall_time: float = 0.0
    metrics: list = field(default_factory=list)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else cuda, then mps, then cpu."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Stopper:
    """Turns Ctrl-C (SIGINT) into a request to stop after the current step."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if _is_main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _all_sum(values: list[float], device) -> list[float]:
    """Sum a few numbers over all ranks (no-op in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def train_step(model, opt, sched, x, y, loss_fn, amp: bool):
    """One optimisation step; returns (summed loss, number correct) as tensors (no sync)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
        loss = loss_fn(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.detach() * len(y), (logits.argmax(1) == y).sum()


@torch.no_grad()
def evaluate(model, data: DeviceData, amp: bool, tta: bool = False, batch_size: int = 1000,
             rank: int = 0, world: int = 1) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over this rank's share of ``data``, summed over ranks."""
    model.eval()
    loss_sum = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    index = torch.arange(rank, len(data), world, device=data.device)
    for chunk in index.split(batch_size):
        x, y = data.batch(chunk)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(3)).float()) / 2
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train()
    loss, hits, count = _all_sum([loss_sum.item(), correct.item(), len(index)], data.device)
    return loss / count, hits / count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def write_metrics(out: Path, metrics: list[dict]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]))
        writer.writeheader()
        writer.writerows(metrics)


class ConfigError(ValueError):
    """A training configuration that cannot run (the CLIs print it as one line)."""


def check_model(cfg: TrainConfig) -> None:
    """Build the configured model once, so that an impossible one (say groups that do not fit
    a block) is reported before any data is loaded."""
    try:
        build_model(cfg.model, cfg.attention, cfg.groups, **cfg.model_options())
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def train(cfg: TrainConfig, data=None, on_epoch: Callable[[list[dict]], None] | None = None,
          stopper: Stopper | None = None) -> dict:
    """Run (or resume) training; returns ``{"metrics", "model", "config", "params", "interrupted"}``.

    ``data`` is a :class:`~sa_torch.data.CIFARArrays` (loaded from ``cfg.data`` when None);
    ``on_epoch(metrics)`` is called after every epoch (the lesson draws its plots there).
    """
    check_model(cfg)
    rank, world = distributed()
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    amp = device.type == "cuda" if cfg.amp is None else cfg.amp
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    if data is None:
        data = _load_data(cfg, rank, world)
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} is not divisible by the {world} processes")
    per_rank_batch = cfg.batch_size // world
    if per_rank_batch > len(data.train_y) // world:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {len(data.train_y)} "
                         f"training images (use a smaller --batch-size or a larger --limit-train)")
    steps_per_epoch = (len(data.train_y) // world) // per_rank_batch

    # reproducible from here: model init, then data order and augmentation per (seed, epoch)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.attention, cfg.groups, num_classes=len(data.classes),
                        **cfg.model_options()).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, one_cycle(cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)))
    train_data = DeviceData(data.train_x, data.train_y, device, channels_last)
    test_data = DeviceData(data.test_x, data.test_y, device, channels_last)

    out = Path(cfg.out) if cfg.out else None
    state = RunState()
    aug = torch.Generator(device=device)
    if cfg.resume:
        state = _load_checkpoint(out, model, opt, sched, aug)
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    fast = torch.compile(model, mode=cfg.compile) if cfg.compile else model  # evaluation uses this one
    net = fast if world == 1 else nn.parallel.DistributedDataParallel(
        fast, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    stopper = stopper or Stopper()
    interrupted = False
    params = sum(p.numel() for p in model.parameters())

    def checkpoint():
        if out is not None and rank == 0:
            save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "aug_rng": aug.get_state(),
                         "rng": rng_states(), "config": dataclasses.asdict(cfg),
                         "state": dataclasses.asdict(state)}, out / CHECKPOINT)

    with stopper:
        while state.epoch < cfg.epochs and not interrupted:
            order = epoch_order(len(train_data), cfg.seed, state.epoch, rank, world).to(device)
            if state.step == 0:
                aug.manual_seed(cfg.seed * 100_003 + state.epoch)
            bar = tqdm(range(state.step, steps_per_epoch), initial=state.step, total=steps_per_epoch,
                       desc=f"epoch {state.epoch + 1}/{cfg.epochs}", leave=False,
                       disable=not cfg.progress or rank != 0)
            # the epoch's running sums continue from the checkpoint's (rank 0 holds them), so
            # that a resumed epoch adds up in the same order, to the same bits
            sums = state.sums if rank == 0 else RunState().sums
            loss_sum = torch.tensor(float(sums["loss"]), device=device)
            correct = torch.tensor(int(sums["correct"]), device=device)
            new_images = 0
            _sync(device)
            start = time.perf_counter()
            for step in bar:
                x, y = train_data.batch(order[step * per_rank_batch:(step + 1) * per_rank_batch], aug)
                loss, hits = train_step(net, opt, sched, x, y, loss_fn, amp)
                loss_sum += loss
                correct += hits
                new_images += len(y)
                state.step = step + 1
                if _stop_requested(stopper, device):
                    interrupted = True
                    break
            _sync(device)
            train_time = time.perf_counter() - start
            state.wall_time += train_time
            loss_total, hits_total, count, images = _all_sum(
                [loss_sum.item(), correct.item(), sums["count"] + new_images, new_images], device)
            state.sums = {"loss": loss_total, "correct": int(hits_total), "count": int(count)}
            if interrupted:
                break
            start = time.perf_counter()
            test_loss, test_acc = evaluate(fast, test_data, amp, cfg.tta, rank=rank, world=world)
            eval_time = time.perf_counter() - start
            state.wall_time += eval_time
            state.metrics.append({
                "epoch": state.epoch + 1, "lr": opt.param_groups[0]["lr"],
                "train_loss": state.sums["loss"] / state.sums["count"],
                "train_acc": state.sums["correct"] / state.sums["count"],
                "test_loss": test_loss, "test_acc": test_acc, "images": int(state.sums["count"]),
                "images_per_s": images / max(train_time, 1e-9), "train_time": train_time,
                "eval_time": eval_time, "wall_time": state.wall_time})
            state.epoch, state.step = state.epoch + 1, 0
            state.sums = RunState().sums
            if out is not None and rank == 0:
                write_metrics(out, state.metrics)
            row = state.metrics[-1]
            if rank == 0 and cfg.progress:
                print(f"epoch {row['epoch']}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                      f"acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
                      f"lr {row['lr']:.4f}  {row['images_per_s']:.0f} img/s  {row['wall_time']:.1f} s", flush=True)
            if on_epoch is not None:
                on_epoch(state.metrics)
            checkpoint()
        if interrupted:
            checkpoint()
    return {"metrics": state.metrics, "model": model, "config": cfg, "params": params,
            "interrupted": interrupted}


def _stop_requested(stopper: Stopper, device) -> bool:
    """Every rank stops at the same step when any one of them got Ctrl-C."""
    if not dist.is_initialized():
        return stopper.requested
    return _all_sum([float(stopper.requested)], device)[0] > 0


def _load_data(cfg: TrainConfig, rank: int, world: int):
    """Rank 0 decodes (and caches) first; the other ranks then read its cache."""
    def load():
        return load_cifar10(cfg.data, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                            download=cfg.download)
    if world == 1:
        return load()
    data = load() if rank == 0 else None
    dist.barrier()
    return data if rank == 0 else load()


def _load_checkpoint(out: Path | None, model, opt, sched, aug) -> RunState:
    if out is None or not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {out}/{CHECKPOINT} (pass the --out of the run to resume)")
    ckpt = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    aug.set_state(ckpt["aug_rng"])
    set_rng_states(ckpt["rng"])
    return RunState(**ckpt["state"])


def export_weights(result: dict, path: str | os.PathLike) -> None:
    """A small file for others: the state dict (float32, CPU), the config and the final metrics."""
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
             for k, v in result["model"].state_dict().items()}
    save_atomic({"state_dict": state, "config": dataclasses.asdict(result["config"]),
                 "metrics": result["metrics"][-1] if result["metrics"] else None}, Path(path))


def parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m sa_torch.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=d.model, help="resnet20, resnet32, resnet56 or resnet110")
    p.add_argument("--attention", default=d.attention, help="none, sa, se or eca")
    p.add_argument("--groups", type=int, default=d.groups, help="SA groups G (every block's width must divide by 2G)")
    p.add_argument("--no-shuffle", dest="sa_shuffle", action="store_false", help="SA ablation: drop the channel shuffle")
    p.add_argument("--no-groupnorm", dest="sa_groupnorm", action="store_false", help="SA ablation: plain affine on x1")
    p.add_argument("--conv-affine", dest="sa_conv_affine", action="store_true", help="SA ablation: 1x1 convs as the gates' affines")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (split over DDP ranks)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--tta", action="store_true", help="evaluate on image and mirror (averaged logits)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data", default=None, help="tar.gz / ImageFolder dir / torchvision root "
                   "(default: $SA_CIFAR_DATA or ../shared/data/cifar10-jpeg.tar.gz)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10 into --data")
    p.add_argument("--out", default=None, help="directory for metrics.json, metrics.csv, checkpoint.pt")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    p.add_argument("--limit-train", type=int, default=None, help="train on this many images (fixed subset)")
    p.add_argument("--limit-test", type=int, default=None, help="test on this many images (fixed subset)")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile the model (MODE: default, reduce-overhead, max-autotune)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast; default: on for CUDA")
    p.add_argument("--export", default=None, help="also write the final weights + config here (small .pt)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar or epoch lines")
    return p


def main(argv=None) -> int:
    args = vars(parser().parse_args(argv))
    export = args.pop("export")
    cfg = TrainConfig(**args)
    try:
        result = train(cfg)
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before training started; nothing to save", file=sys.stderr)
        return 130
    if result["interrupted"]:
        print(f"interrupted: checkpoint saved to {Path(cfg.out) / CHECKPOINT if cfg.out else '(no --out)'}; "
              f"continue with the same command plus --resume", file=sys.stderr)
        return 130
    if export and (not dist.is_initialized() or dist.get_rank() == 0):
        export_weights(result, export)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
