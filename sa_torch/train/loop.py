"""The training loop, readable top to bottom:

    for each epoch:
        shuffle the training set (an order fixed by seed and epoch)
        for each batch: augment on the device, forward, loss, backward, step, LR step
        evaluate on the test set; append a row to metrics.json / metrics.csv
        write a checkpoint (atomically: temp file, then rename)

:func:`train` says it in code: :func:`start_run` builds a :class:`Run` (the model, the data
on the device, the optimizer and schedule, the augmentation generator, the :class:`RunState`
that checkpoints save), then :func:`train_epoch` and :func:`end_epoch` take turns until the
epochs are done or Ctrl-C asks to stop.

The whole data set lives on the device as uint8; batches are gathered, augmented
(random crop, flip) and normalised there, so the loop does no per-image Python work.

A run with ``resume=True`` continues exactly where the run in ``out`` stopped, even in the
middle of an epoch (Ctrl-C saves a checkpoint there), with the memory layout and autocast
setting it started with. On a CPU the loop flushes denormals to zero
(:func:`sa_torch.train.device.flush_denormal`); on CUDA it uses bf16 autocast by default.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import CHECKPOINT, RunState, empty_sums, read_checkpoint, restore, save_checkpoint
from .config import ConfigError, TrainConfig, check_model, config_differences
from .data import DeviceData, load_cifar10
from .ddp import all_sum, any_rank, distributed, from_rank0, rank0_first, rank_device
from .device import flush_denormal, pick_device, sync
from .layout import fastest_memory_format, format_name
from ..models import build_model

# metrics that measure speed, so differ between otherwise identical runs
TIMING_KEYS = ("images_per_s", "train_time", "eval_time", "wall_time")


@dataclass
class Run:
    """Everything one training run holds: built by :func:`start_run`, advanced by
    :func:`train_epoch` and :func:`end_epoch`, saved by :meth:`save`.

    ``model`` is the module whose weights are saved; ``fast`` computes (compiled with
    ``--compile``; evaluation uses it) and ``net`` trains (``fast``, wrapped in
    DistributedDataParallel when there are several processes). ``batch`` is this process's
    share of a step's images; ``state`` is where the run is, saved in every checkpoint.
    """

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    amp: bool
    model: nn.Module
    fast: nn.Module
    net: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    aug: torch.Generator
    train_data: DeviceData
    test_data: DeviceData
    batch: int
    steps_per_epoch: int
    state: RunState
    loss_fn: nn.Module
    interrupted: bool = False

    @property
    def out(self) -> Path | None:
        """The directory this process writes to: rank 0's ``--out`` (None: nothing is written)."""
        return Path(self.cfg.out) if self.cfg.out and self.rank == 0 else None

    @property
    def talks(self) -> bool:
        """Whether this process prints progress."""
        return self.cfg.progress and self.rank == 0

    def save(self) -> None:
        if self.out is not None:
            save_checkpoint(self.out, self.model, self.opt, self.sched, self.aug, self.cfg, self.state)



def train(cfg: TrainConfig, data=None, on_epoch: Callable[[list[dict]], None] | None = None,
          stopper: Stopper | None = None) -> dict:
    """Run (or resume) training; returns ``{"metrics", "model", "config", "params", "interrupted",
    "layout"}``.

    ``data`` is a :class:`~sa_torch.train.data.CIFARArrays` (loaded from ``cfg.data`` when None);
    ``on_epoch(metrics)`` is called after every epoch (the lesson draws its plots there).
    """
    check_model(cfg)
    ckpt = checkpoint_to_resume(cfg)
    rank, world = distributed()
    device = rank_device(pick_device(cfg.device), world)
    with flush_denormal(device):
        run = start_run(cfg, data, ckpt, device, rank, world)
        with (stopper or Stopper()) as stop:
            while run.state.epoch < cfg.epochs and not run.interrupted:
                images, seconds = train_epoch(run, stop)
                if not run.interrupted:
                    end_epoch(run, images, seconds, on_epoch)
            if run.interrupted:
                run.save()
    return {"metrics": run.state.metrics, "model": run.model, "config": cfg,
            "params": sum(p.numel() for p in run.model.parameters()), "interrupted": run.interrupted,
            "layout": run.state.layout}



def start_run(cfg: TrainConfig, data, ckpt: dict | None, device: torch.device, rank: int, world: int) -> Run:
    """The run's model, data on the device, optimizer and state: new, or restored from the
    checkpoint ``ckpt``. ``data`` (loaded from ``cfg.data`` when None) is checked first."""
    saved = RunState(**ckpt["state"]) if ckpt else None
    if saved is not None and saved.amp is not None:
        amp = saved.amp
    else:
        amp = device.type == "cuda" if cfg.amp is None else cfg.amp
    if data is None:
        data = rank0_first(lambda: load_cifar10(cfg.data, limit_train=cfg.limit_train,
                                                limit_test=cfg.limit_test, download=cfg.download))
    sizes = check_data(cfg, data, saved, world)
    batch = cfg.batch_size // world
    steps_per_epoch = (len(data.train_y) // world) // batch
    # reproducible from here: model init, then data order and augmentation per (seed, epoch)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.attention, cfg.groups, num_classes=len(data.classes),
                        **cfg.model_options()).to(device)
    train_data = DeviceData(data.train_x, data.train_y, device)
    test_data = DeviceData(data.test_x, data.test_y, device)
    saved_layout = saved.layout if saved else None
    layout = saved_layout or choose_layout(
        cfg, device, model, lambda: train_data.batch(torch.arange(batch, device=device)), amp)
    if cfg.progress and rank == 0:
        print(layout_line(layout, saved=saved_layout is not None), flush=True)
    if layout["memory_format"] == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        train_data.channels_last = test_data.channels_last = True
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, one_cycle(cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)))
    aug = torch.Generator(device=device)
    state = restore(ckpt, model, opt, sched, aug) if ckpt else RunState()
    state.layout, state.amp, state.data = layout, amp, sizes
    fast = torch.compile(model, mode=cfg.compile) if cfg.compile else model
    net = fast if world == 1 else nn.parallel.DistributedDataParallel(
        fast, device_ids=[device.index] if device.type == "cuda" else None)
    run = Run(cfg, device, rank, world, amp, model, fast, net, opt, sched, aug, train_data, test_data, batch,
              steps_per_epoch, state, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
    if run.out is not None:
        run.out.mkdir(parents=True, exist_ok=True)
    return run



def check_data(cfg: TrainConfig, data, saved: RunState | None, world: int) -> dict:
    """``data``'s sizes and classes, after checking that they are the saved run's and that a
    step's batch fits: ConfigError naming what does not."""
    sizes = {"train": len(data.train_y), "test": len(data.test_y), "classes": list(data.classes)}
    if saved is not None and saved.data is not None and saved.data != sizes:
        raise ConfigError(f"--resume: the data differ from the saved run's: {_describe(sizes)}; "
                          f"saved: {_describe(saved.data)}")
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} is not divisible by the {world} processes")
    if cfg.batch_size // world > len(data.train_y) // world:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {len(data.train_y)} "
                          f"training images (use a smaller --batch-size or a larger --limit-train)")
    return sizes



def _describe(sizes: dict) -> str:
    return f"{sizes['train']} training and {sizes['test']} test images of the classes {', '.join(sizes['classes'])}"



def layout_line(layout: dict, saved: bool) -> str:
    """``memory layout: channels_last (contiguous_format 412 ms, channels_last 380 ms a training step)``."""
    timed = layout["ms_per_step"]
    how = (", ".join(f"{k} {v:.0f} ms" for k, v in timed.items()) + " a training step"
           if timed else layout["chosen_by"])
    return f"memory layout: {layout['memory_format']} ({how}{', as saved' if saved else ''})"



def train_epoch(run: Run, stopper: Stopper) -> tuple[int, float]:
    """Train the rest of the current epoch (all of it, unless resumed mid-epoch), or until
    ``stopper`` asks to stop (then ``run.interrupted``); adds the steps' loss and hits to
    ``run.state.sums``. Returns (images trained, over all processes; seconds taken)."""
    cfg, state, device = run.cfg, run.state, run.device
    order = epoch_order(len(run.train_data), cfg.seed, state.epoch, run.rank, run.world).to(device)
    if state.step == 0:
        run.aug.manual_seed(cfg.seed * 100_003 + state.epoch)
    bar = tqdm(range(state.step, run.steps_per_epoch), initial=state.step, total=run.steps_per_epoch,
               desc=f"epoch {state.epoch + 1}/{cfg.epochs}", leave=False, disable=not run.talks)
    # the epoch's running sums continue from the checkpoint's (rank 0 holds them), so
    # that a resumed epoch adds up in the same order, to the same bits
    sums = state.sums if run.rank == 0 else empty_sums()
    loss_sum = torch.tensor(float(sums["loss"]), device=device)
    correct = torch.tensor(int(sums["correct"]), device=device)
    new_images = 0
    sync(device)
    start = time.perf_counter()
    for step in bar:
        x, y = run.train_data.batch(order[step * run.batch:(step + 1) * run.batch], run.aug)
        loss, hits = train_step(run.net, run.opt, run.sched, x, y, run.loss_fn, run.amp)
        loss_sum += loss
        correct += hits
        new_images += len(y)
        state.step = step + 1
        if any_rank(stopper.requested, device):
            run.interrupted = True
            break
    sync(device)
    seconds = time.perf_counter() - start
    state.wall_time += seconds
    loss_total, hits_total, count, images = all_sum(
        [loss_sum.item(), correct.item(), sums["count"] + new_images, new_images], device)
    state.sums = {"loss": loss_total, "correct": int(hits_total), "count": int(count)}
    return int(images), seconds



def end_epoch(run: Run, images: int, train_time: float, on_epoch: Callable[[list[dict]], None] | None) -> None:
    """Evaluate, append the epoch's row to the metrics (and their files), report it, and save
    the checkpoint: the run then stands at the start of the next epoch."""
    cfg, state = run.cfg, run.state
    start = time.perf_counter()
    test_loss, test_acc = evaluate(run.fast, run.test_data, run.amp, cfg.tta, rank=run.rank, world=run.world)
    eval_time = time.perf_counter() - start
    state.wall_time += eval_time
    state.metrics.append({
        "epoch": state.epoch + 1, "lr": run.opt.param_groups[0]["lr"],
        "train_loss": state.sums["loss"] / state.sums["count"],
        "train_acc": state.sums["correct"] / state.sums["count"],
        "test_loss": test_loss, "test_acc": test_acc, "images": int(state.sums["count"]),
        "images_per_s": images / max(train_time, 1e-9), "train_time": train_time,
        "eval_time": eval_time, "wall_time": state.wall_time,
        "memory_format": state.layout["memory_format"]})
    state.epoch, state.step = state.epoch + 1, 0
    state.sums = empty_sums()
    if run.out is not None:
        write_metrics(run.out, state.metrics)
    if run.talks:
        row = state.metrics[-1]
        print(f"epoch {row['epoch']}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
              f"acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
              f"lr {row['lr']:.4f}  {row['images_per_s']:.0f} img/s  {row['wall_time']:.1f} s", flush=True)
    if on_epoch is not None:
        on_epoch(state.metrics)
    run.save()



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
    loss, hits, count = all_sum([loss_sum.item(), correct.item(), len(index)], data.device)
    return loss / count, hits / count



def write_metrics(out: Path, metrics: list[dict]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]))
        writer.writeheader()
        writer.writerows(metrics)



def checkpoint_to_resume(cfg: TrainConfig) -> dict | None:
    """The saved checkpoint a ``resume`` run continues (None for a new run), after checking that
    ``cfg`` is that run's; a new run may not replace a saved one unless ``cfg.overwrite``."""
    out = Path(cfg.out) if cfg.out else None
    if not cfg.resume:
        if out is not None and (out / CHECKPOINT).exists() and not cfg.overwrite:
            raise ConfigError(f"{out} already holds a run ({out / CHECKPOINT}); continue it with "
                              f"--out {out} --resume, or start a new run there with --overwrite")
        return None
    if cfg.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if out is None:
        raise ConfigError("--resume needs --out DIR, the directory of the run to continue")
    ckpt = read_checkpoint(out)
    differ = config_differences(ckpt["config"], dataclasses.asdict(cfg))
    if differ:
        raise ConfigError(f"--resume continues the saved run in {out}; these flags differ from it: "
                          + ", ".join(differ))
    return ckpt



def choose_layout(cfg: TrainConfig, device: torch.device, model: nn.Module, sample: Callable, amp: bool) -> dict:
    """``{"memory_format", "chosen_by", "ms_per_step"}``: measured for ``channels_last="auto"``
    (on rank 0, on the batch ``sample()``, for every rank), else the flag's, else the device's
    usual one."""
    if cfg.channels_last == "auto":
        def measure():
            fmt, ms = fastest_memory_format(model, device, sample(), amp=amp)
            return format_name(fmt), ms
        name, ms = from_rank0(measure)
        return {"memory_format": name, "chosen_by": "measured", "ms_per_step": ms}
    if cfg.channels_last is None:
        on, chosen_by = device.type == "cuda", f"default for {device.type}"
    else:
        on, chosen_by = cfg.channels_last == "on", f"--channels-last {cfg.channels_last}"
    return {"memory_format": "channels_last" if on else "contiguous_format", "chosen_by": chosen_by,
            "ms_per_step": None}



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



class Stopper:
    """Turns Ctrl-C (SIGINT) into a request to stop after the current step."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
