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
middle of an epoch (Ctrl-C saves a checkpoint there), with the memory layout and precision
it started with. The precision (``--amp``) is the device's by default
(:func:`sa_torch.train.device.precision_for`: bf16 autocast on a GPU with native bfloat16,
fp16 autocast with a gradient scaler on an older GPU, float32 elsewhere); training steps,
evaluation and the layout measurement all use it. On a CPU the loop flushes denormals to zero
(:func:`sa_torch.train.device.flush_denormal`).
"""
from __future__ import annotations

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

from .checkpoint import RunState, checkpoint_to_resume, empty_sums, restore, save_checkpoint, write_metrics
from .config import ConfigError, TrainConfig, check_model
from .data import DeviceData, load_cifar10
from .ddp import all_sum, any_rank, distributed, from_rank0, rank0_first, rank_device
from .device import (PRECISIONS, autocast, backward_step, describe_device, flush_denormal, grad_scaler,
                     pick_device, precision_for, precision_problem, sync)
from .layout import fastest_memory_format, format_name, layout_line
from .recipe import epoch_order, make_optimizer, one_cycle
from ..models import build_model

# metrics that measure speed, so differ between otherwise identical runs
TIMING_KEYS = ("images_per_s", "train_time", "eval_time", "wall_time")


@dataclass
class Run:
    """Everything one training run holds: built by :func:`start_run`, advanced by
    :func:`train_epoch` and :func:`end_epoch`, saved by :meth:`save`.

    ``model`` is the module whose weights are saved; ``fast`` computes (compiled with
    ``--compile``; evaluation uses it) and ``net`` trains (``fast``, wrapped in
    DistributedDataParallel when there are several processes). ``precision`` is ``"bf16"``,
    ``"fp16"`` (then ``scaler`` is its gradient scaler; None otherwise) or ``"off"``. ``batch``
    is this process's share of a step's images; ``state`` is where the run is, saved in every
    checkpoint.
    """

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    precision: str
    model: nn.Module
    fast: nn.Module
    net: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
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
            save_checkpoint(self.out, self.model, self.opt, self.sched, self.aug, self.cfg, self.state,
                            self.scaler)


def train(cfg: TrainConfig, data=None, on_epoch: Callable[[list[dict]], None] | None = None,
          stopper: Stopper | None = None) -> dict:
    """Run (or resume) training; returns ``{"metrics", "model", "config", "params", "interrupted",
    "layout", "precision"}``.

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
            "layout": run.state.layout, "precision": run.precision}


def start_run(cfg: TrainConfig, data, ckpt: dict | None, device: torch.device, rank: int, world: int) -> Run:
    """The run's model, data on the device, optimizer and state: new, or restored from the
    checkpoint ``ckpt``. ``data`` (loaded from ``cfg.data`` when None) is checked first."""
    saved = RunState(**ckpt["state"]) if ckpt else None
    precision, chosen_by = run_precision(cfg, device, saved)
    if cfg.progress and rank == 0:
        print(f"device: {describe_device(device, precision)} ({chosen_by})", flush=True)
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
        cfg, device, model, lambda: train_data.batch(torch.arange(batch, device=device)), precision)
    if cfg.progress and rank == 0:
        print(layout_line(layout, saved=saved_layout is not None), flush=True)
    if layout["memory_format"] == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        train_data.channels_last = test_data.channels_last = True
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, one_cycle(cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)))
    scaler = grad_scaler(device, precision)
    aug = torch.Generator(device=device)
    state = restore(ckpt, model, opt, sched, aug, scaler) if ckpt else RunState()
    state.layout, state.amp, state.data = layout, precision, sizes
    fast = torch.compile(model, mode=cfg.compile) if cfg.compile else model
    net = fast if world == 1 else nn.parallel.DistributedDataParallel(
        fast, device_ids=[device.index] if device.type == "cuda" else None)
    run = Run(cfg, device, rank, world, precision, model, fast, net, opt, sched, scaler, aug, train_data,
              test_data, batch, steps_per_epoch, state, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
    if run.out is not None:
        run.out.mkdir(parents=True, exist_ok=True)
    return run


def run_precision(cfg: TrainConfig, device: torch.device, saved: RunState | None) -> tuple[str, str]:
    """(the precision the run trains in, how it was chosen): the saved run's on a resume, else
    ``cfg.amp``'s on ``device``. ConfigError naming the value and the rule where ``device``
    cannot run it."""
    resumed = saved is not None and saved.amp is not None
    precision = saved.amp if resumed else precision_for(device) if cfg.amp == "auto" else cfg.amp
    problem = precision_problem(precision, device)
    if problem is None:
        return precision, "as saved" if resumed else f"--amp {cfg.amp}"
    if resumed:
        raise ConfigError(f"--resume: the saved run trains in {precision}, and {problem}; a resumed run "
                          f"keeps its precision, so resume it on a device that runs {precision}")
    usable = [p for p in PRECISIONS[1:] if precision_problem(p, device) is None]
    raise ConfigError(f"--amp {precision}: {problem}; on {device} use --amp {', '.join(usable)} or auto")


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
        loss, hits = train_step(run.net, run.opt, run.sched, x, y, run.loss_fn, run.precision, run.scaler)
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
    test_loss, test_acc = evaluate(run.fast, run.test_data, run.precision, cfg.tta, rank=run.rank,
                                   world=run.world)
    eval_time = time.perf_counter() - start
    state.wall_time += eval_time
    state.metrics.append({
        "epoch": state.epoch + 1, "lr": run.opt.param_groups[0]["lr"],
        "train_loss": state.sums["loss"] / state.sums["count"],
        "train_acc": state.sums["correct"] / state.sums["count"],
        "test_loss": test_loss, "test_acc": test_acc, "images": int(state.sums["count"]),
        "images_per_s": images / max(train_time, 1e-9), "train_time": train_time,
        "eval_time": eval_time, "wall_time": state.wall_time, "precision": run.precision,
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


def train_step(model, opt, sched, x, y, loss_fn, precision: str = "off",
               scaler: torch.amp.GradScaler | None = None):
    """One optimisation step in ``precision`` (``"bf16"``, ``"fp16"`` or ``"off"``; fp16 needs the
    gradient ``scaler``); returns (summed loss, number correct) as tensors (no sync)."""
    if precision == "fp16" and scaler is None:
        raise ValueError("precision='fp16' needs a gradient scaler: "
                         "scaler=sa_torch.train.device.grad_scaler(device, 'fp16')")
    with autocast(x.device, precision):
        logits = model(x)
        loss = loss_fn(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    backward_step(loss, opt, scaler)
    sched.step()
    return loss.detach() * len(y), (logits.argmax(1) == y).sum()


@torch.no_grad()
def evaluate(model, data: DeviceData, precision: str = "off", tta: bool = False, batch_size: int = 1000,
             rank: int = 0, world: int = 1) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over this rank's share of ``data``, summed over ranks,
    computed in ``precision`` (``"bf16"``, ``"fp16"`` or ``"off"``)."""
    model.eval()
    loss_sum = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    index = torch.arange(rank, len(data), world, device=data.device)
    for chunk in index.split(batch_size):
        x, y = data.batch(chunk)
        with autocast(x.device, precision):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(3)).float()) / 2
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train()
    loss, hits, count = all_sum([loss_sum.item(), correct.item(), len(index)], data.device)
    return loss / count, hits / count


def choose_layout(cfg: TrainConfig, device: torch.device, model: nn.Module, sample: Callable,
                  precision: str) -> dict:
    """``{"memory_format", "chosen_by", "ms_per_step"}``: measured for ``channels_last="auto"``
    (on rank 0, on the batch ``sample()``, in the run's ``precision``, for every rank), else the
    flag's, else the device's usual one."""
    if cfg.channels_last == "auto":
        def measure():
            fmt, ms = fastest_memory_format(model, device, sample(), precision=precision)
            return format_name(fmt), ms
        name, ms = from_rank0(measure)
        return {"memory_format": name, "chosen_by": "measured", "ms_per_step": ms}
    if cfg.channels_last is None:
        on, chosen_by = device.type == "cuda", f"default for {device.type}"
    else:
        on, chosen_by = cfg.channels_last == "on", f"--channels-last {cfg.channels_last}"
    return {"memory_format": "channels_last" if on else "contiguous_format", "chosen_by": chosen_by,
            "ms_per_step": None}


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
