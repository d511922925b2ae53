"""Which memory layout trains a given model faster on a given device: measured, not assumed.

The answer depends on the model as much as on the device, and changes with the code: on this
project's 2-core CPU, docs/results/cpu_throughput.md once recorded plain ResNet-20 training 1.3x
faster in channels_last and SA-ResNet-20 1.1x slower (its SA layers then worked in NCHW only).
So the training CLI's ``--channels-last auto`` (its default) times a few training steps of the
model being trained in both layouts and takes the faster; the run records the choice and the
timings, and a resumed run keeps the layout it started with.

    fmt, ms = fastest_memory_format(model, device, (x, y), steps=3)
    # fmt: torch.channels_last or torch.contiguous_format
    # ms:  {"contiguous_format": 412.0, "channels_last": 655.3}, median ms per step
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch
from torch import nn

from .device import autocast, backward_step, flush_denormal, grad_scaler, sync

FORMATS = {"contiguous_format": torch.contiguous_format, "channels_last": torch.channels_last}


def format_name(memory_format: torch.memory_format) -> str:
    """``torch.channels_last`` -> ``"channels_last"`` (the keys of :data:`FORMATS`)."""
    return str(memory_format).removeprefix("torch.")


def fastest_memory_format(model: nn.Module | Callable[[], nn.Module], device: torch.device | str,
                          sample_batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                          steps: int = 3, warmup: int = 1, precision: str = "off",
                          ) -> tuple[torch.memory_format, dict[str, float]]:
    """The faster memory layout for training ``model`` on ``device``, and the timings.

    ``model``: a module (never changed: each layout trains a deep copy of it) or a function
    returning a new one. ``sample_batch``: ``(x, y)``, images x (B, C, H, W) float and labels
    y (B,) int64, trained with cross-entropy; or x alone, trained to lower the outputs' mean.
    Each step is what the training loop does: the batch into the layout, forward (autocast in
    ``precision``: ``"bf16"``, ``"fp16"`` or ``"off"``), backward, an SGD step (through a gradient
    scaler in fp16). After ``warmup`` untimed steps per layout,
    the two layouts take turns for ``steps`` rounds (order alternating round by round), on a
    CPU with denormals flushed; the global RNG states are left as they were.

    Returns ``(torch.channels_last or torch.contiguous_format, {"contiguous_format": ms,
    "channels_last": ms})``, the median milliseconds per step of each layout; a tie goes to
    contiguous_format.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps={steps} must be >= 1 and warmup={warmup} >= 0")
    device = torch.device(device)
    x, y = sample_batch if isinstance(sample_batch, (tuple, list)) else (sample_batch, None)
    x = x.to(device)
    y = y.to(device) if y is not None else None
    times: dict[str, list[float]] = {name: [] for name in FORMATS}
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), flush_denormal(device):
        runners = {name: _step_runner(model, device, fmt, x, y, precision) for name, fmt in FORMATS.items()}
        for run in runners.values():
            for _ in range(warmup):
                run()
        for r in range(steps):
            for name in (list(FORMATS) if r % 2 == 0 else list(FORMATS)[::-1]):
                times[name].append(runners[name]())
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    best = "channels_last" if ms["channels_last"] < ms["contiguous_format"] else "contiguous_format"
    return FORMATS[best], ms


def _step_runner(model, device: torch.device, memory_format: torch.memory_format,
                 x: torch.Tensor, y: torch.Tensor | None, precision: str) -> Callable[[], float]:
    """A function doing one training step of a fresh copy of ``model`` in ``memory_format``;
    it returns the seconds the step took."""
    net = copy.deepcopy(model) if isinstance(model, nn.Module) else model()
    net = net.to(device).to(memory_format=memory_format).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    scaler = grad_scaler(device, precision)

    def step() -> float:
        sync(device)
        start = time.perf_counter()
        batch = x.contiguous(memory_format=memory_format)
        with autocast(device, precision):
            out = net(batch).float()
        loss = nn.functional.cross_entropy(out, y) if y is not None else out.mean()
        opt.zero_grad(set_to_none=True)
        backward_step(loss, opt, scaler)
        sync(device)
        return time.perf_counter() - start
    return step


def layout_line(layout: dict, saved: bool) -> str:
    """``memory layout: channels_last (contiguous_format 412 ms, channels_last 380 ms a training step)``."""
    timed = layout["ms_per_step"]
    how = (", ".join(f"{k} {v:.0f} ms" for k, v in timed.items()) + " a training step"
           if timed else layout["chosen_by"])
    return f"memory layout: {layout['memory_format']} ({how}{', as saved' if saved else ''})"
