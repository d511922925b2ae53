"""Training throughput of SA-ResNet vs the plain ResNet, measured in one run.

    python benchmarks/bench_train_cpu.py                      # CPU, ResNet-20, writes nothing
    python benchmarks/bench_train_cpu.py --out docs/results/cpu_throughput.md
    python benchmarks/bench_train_cpu.py --device cuda --compile --channels-last both

Each measurement is full training steps (augment, forward, loss, backward, SGD step) of
the real loop (``sa_torch.train.train_step``) on random 32x32 images. The models take
turns, round after round, so that load from other processes hits both alike; the
result is each model's median over rounds, and the median (with quartiles) of the
per-round ratios, each taken between runs only seconds apart. ``sa`` is the models'
default SA layer (on a CPU, the fused function of :mod:`sa_torch.fused`); ``sa-unfused``
is the official layer's ops through autograd, to show what the fused function saves. On
CUDA the steps use bf16 autocast, like the training script.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from sa_torch.data import DeviceData
from sa_torch.models import build_model
from sa_torch.train import TrainConfig, make_optimizer, one_cycle, pick_device, train_step, _sync


def make_runner(attention: str, device, batch: int, channels_last: bool, compile_: bool, groups: int,
                model_name: str):
    """A function doing ``steps`` training steps of one model; returns seconds taken."""
    torch.manual_seed(0)
    options = {"sa_fused": False} if attention == "sa-unfused" else {}
    attention = "sa" if attention == "sa-unfused" else attention
    model = build_model(model_name, attention, groups, **options).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(attention=attention, groups=groups)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(10**9, 1))
    net = torch.compile(model, mode=compile_) if compile_ else model
    rng = np.random.default_rng(0)
    data = DeviceData(rng.integers(0, 256, (4 * batch, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 4 * batch), device, channels_last)
    aug = torch.Generator(device=device).manual_seed(0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    amp = device.type == "cuda"

    def run(steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for i in range(steps):
            x, y = data.batch(torch.arange(i % 4 * batch, (i % 4 + 1) * batch, device=device), aug)
            train_step(net, opt, sched, x, y, loss_fn, amp)
        _sync(device)
        return time.perf_counter() - start
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--attention", nargs="+", default=["none", "sa"],
                   help="none, sa, se, eca, or sa-unfused (SA through autograd op by op, sa_fused=False)")
    p.add_argument("--channels-last", choices=["on", "off", "both"], default="off")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--out", default=None, help="write a markdown report here")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    layouts = {"on": [True], "off": [False], "both": [False, True]}[args.channels_last]
    runners = {}
    for attention in args.attention:
        for cl in layouts:
            run = make_runner(attention, device, args.batch_size, cl, args.compile, args.groups, args.model)
            start = time.perf_counter()
            run(args.warmup)
            runners[(attention, cl)] = (run, time.perf_counter() - start)
    times = {key: [] for key in runners}
    for _ in range(args.rounds):
        for key, (run, _) in runners.items():
            times[key].append(run(args.steps) / args.steps)
    base = {cl: times[(args.attention[0], cl)] for cl in layouts}
    lines = [f"device: {device_info(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}",
             f"model {args.model}, groups {args.groups}, batch {args.batch_size}, compile {args.compile}, "
             f"{args.rounds} rounds x {args.steps} steps, median step time", "",
             f"| attention | channels_last | step (ms) | images/s | vs {args.attention[0]} "
             f"| per-round ratio, median (quartiles) | warmup (s) |",
             "|---|---|---|---|---|---|---|"]
    for (attention, cl), ts in times.items():
        step = statistics.median(ts)
        ratios = [b / t for b, t in zip(base[cl], ts)]          # same round: the same machine load
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        lines.append(f"| {attention} | {cl} | {1000 * step:.2f} | {args.batch_size / step:,.0f} "
                     f"| {statistics.median(base[cl]) / step:.3f}x | {statistics.median(ratios):.3f}x "
                     f"({q1:.3f}-{q3:.3f}) | {runners[(attention, cl)][1]:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        command = "python benchmarks/bench_train_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.out, "w") as f:
            f.write(f"# Training throughput: SA vs plain\n\nCommand: `{command}`\n\n{text}")
    return 0


def device_info(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    sys.exit(main())
