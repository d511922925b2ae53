"""Training throughput of plain, SA, SE and ECA ResNets in both memory layouts, in one run.

    python benchmarks/bench_train_cpu.py                                  # CPU, prints the tables
    python benchmarks/bench_train_cpu.py --rounds 15 --out docs/results/cpu_throughput.md
    python benchmarks/bench_train_cpu.py --device cuda --batch-size 512 --compile   # GPU

Each measurement is full training steps (augment, forward, loss, backward, SGD step) of the
real loop (``sa_torch.train.train_step``) on random 32x32 images. Every (model, layout) pair
takes its turn, round after round, so that load from other processes hits all alike. The
results: each pair's median step time; each model's fastest layout; and SA's throughput
against plain and against SE, **each model in its own fastest layout**, both as the ratio of
medians and as the median (with quartiles) of per-round ratios (runs seconds apart).

Variants: ``none``, ``sa`` (the models' default: the fast path of :mod:`sa_torch.fused`, C
kernels on a CPU, Triton on CUDA), ``se``, ``eca``, ``sa-eager`` (the fast path with its
passes in torch ops) and ``sa-unfused`` (the official layer op by op through autograd).
Denormals are flushed on the CPU (``torch.set_flush_denormal(True)``). The steps run in the
device's precision, as the training script's ``--amp auto`` does (bf16 autocast on a GPU with
native bfloat16, fp16 with a gradient scaler on an older one, float32 on a CPU). ``--compile`` compiles every model; the warmup
column then holds the compile time.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from report import add_report_arguments, check_report_path, write_report
from sa_torch import fused
from sa_torch.train.data import DeviceData
from sa_torch.models import build_model
from sa_torch.train import TrainConfig, make_optimizer, one_cycle, pick_device, sync, train_step
from sa_torch.train.device import grad_scaler, precision_for

VARIANTS = {"none": ("none", {}), "sa": ("sa", {}), "se": ("se", {}), "eca": ("eca", {}),
            "sa-eager": ("sa", {}), "sa-unfused": ("sa", {"sa_fused": False})}
LAYOUTS = {"on": [True], "off": [False], "both": [False, True]}


def make_runner(variant: str, device, batch: int, channels_last: bool, compile_mode, groups: int,
                model_name: str):
    """A function doing ``steps`` training steps of one model; returns seconds taken."""
    torch.manual_seed(0)
    attention, options = VARIANTS[variant]
    model = build_model(model_name, attention, groups, **options).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, TrainConfig(attention=attention, groups=groups))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(10**9, 1))
    net = torch.compile(model, mode=compile_mode) if compile_mode else model
    rng = np.random.default_rng(0)
    data = DeviceData(rng.integers(0, 256, (4 * batch, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 4 * batch), device, channels_last)
    aug = torch.Generator(device=device).manual_seed(0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    precision = precision_for(device)
    scaler = grad_scaler(device, precision)
    backend = (lambda: fused.use_backend("eager")) if variant == "sa-eager" else contextlib.nullcontext

    def run(steps: int) -> float:
        with backend():
            sync(device)
            start = time.perf_counter()
            for i in range(steps):
                x, y = data.batch(torch.arange(i % 4 * batch, (i % 4 + 1) * batch, device=device), aug)
                train_step(net, opt, sched, x, y, loss_fn, precision, scaler)
            sync(device)
        return time.perf_counter() - start
    return run


def quartiles(values):
    return statistics.quantiles(values, n=4)[::2] if len(values) > 1 else values * 2


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_info(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def measure(args, device):
    """{(variant, channels_last): [seconds per step, one per round]} and the warmup seconds."""
    runners, warmup = {}, {}
    for variant in args.attention:
        for cl in LAYOUTS[args.channels_last]:
            run = make_runner(variant, device, args.batch_size, cl, args.compile, args.groups, args.model)
            start = time.perf_counter()
            run(args.warmup)
            runners[(variant, cl)], warmup[(variant, cl)] = run, time.perf_counter() - start
            print(f"warmed up {variant} channels_last={cl} in {warmup[(variant, cl)]:.1f} s", file=sys.stderr)
    return interleave(runners, args.rounds, args.steps), warmup


def interleave(runners: dict, rounds: int, steps: int) -> dict:
    """{key: [seconds per step, one per round]}: each runner does ``steps`` steps in its turn,
    round after round, so that load from other processes hits all alike."""
    times = {key: [] for key in runners}
    for r in range(rounds):
        for key, run in runners.items():
            times[key].append(run(steps) / steps)
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
    return times


def run_lines(script: str, argv, started: datetime.datetime, load) -> list[str]:
    """The report's first two lines: the command, and the date, duration and load before."""
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    return [f"- command: `python benchmarks/{script} {' '.join(argv if argv is not None else sys.argv[1:])}`",
            f"- date: {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min; load average before: "
            f"{'n/a' if load is None else ' '.join(f'{v:.2f}' for v in load)}"]


def report(args, times, warmup) -> str:
    batch = args.batch_size
    lines = ["| model | layout | step (ms) | images/s | warmup (s) |", "|---|---|---:|---:|---:|"]
    for (variant, cl), ts in times.items():
        step = statistics.median(ts)
        lines.append(f"| {variant} | {'channels_last' if cl else 'NCHW'} | {1000 * step:.1f} | "
                     f"{batch / step:,.0f} | {warmup[(variant, cl)]:.1f} |")
    best = {}                                      # variant -> its faster layout, by median
    for variant in args.attention:
        best[variant] = min((cl for v, cl in times if v == variant), key=lambda cl: statistics.median(times[(variant, cl)]))
    lines += ["", "Each model in its fastest layout:", "",
              "| model | fastest layout | images/s | vs none | per-round vs none, median (quartiles) "
              "| vs se | per-round vs se, median (quartiles) |", "|---|---|---:|---:|---|---:|---|"]
    for variant, cl in best.items():
        ts = times[(variant, cl)]
        cells = [variant, "channels_last" if cl else "NCHW", f"{batch / statistics.median(ts):,.0f}"]
        for base in ("none", "se"):
            if base not in best:
                cells += ["-", "-"]
                continue
            base_ts = times[(base, best[base])]
            per_round = [b / t for b, t in zip(base_ts, ts)]
            q1, q3 = quartiles(per_round)
            cells += [f"{statistics.median(base_ts) / statistics.median(ts):.3f}x",
                      f"{statistics.median(per_round):.3f}x ({q1:.3f}-{q3:.3f})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--attention", nargs="+", default=["none", "sa", "se", "eca"], choices=list(VARIANTS),
                   metavar="VARIANT", help=f"models to compare, from {', '.join(VARIANTS)}")
    p.add_argument("--channels-last", choices=list(LAYOUTS), default="both")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    add_report_arguments(p)
    args = p.parse_args(argv)
    check_report_path(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    times, warmup = measure(args, device)
    header = [*run_lines("bench_train_cpu.py", argv, started, load),
              f"- device: {device_info(device)}; torch {torch.__version__}; flush denormals "
              f"{device.type == 'cpu'}; precision {precision_for(device)}",
              f"- model {args.model}, groups {args.groups}, batch {args.batch_size}, compile {args.compile}; "
              f"{args.rounds} rounds x {args.steps} steps after {args.warmup} warmup steps; median step time", ""]
    text = "\n".join(header) + "\n" + report(args, times, warmup)
    print(text)
    write_report(args, f"# Training throughput: SA vs plain, SE and ECA\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
