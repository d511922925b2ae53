"""Where SA-ResNet's extra time in a CPU training step goes: bookkeeping, fresh maps, arithmetic.

    python benchmarks/sa_overhead_cpu.py
    git show 61d34c5:sa_torch/fused/cpu.py > /tmp/fused_cpu_61d34c5.py     # the kernels that stored the gate
    python benchmarks/sa_overhead_cpu.py --kernels /tmp/fused_cpu_61d34c5.py

(A version whose C source is its own file needs that file beside the copy: ``git show
REV:sa_torch/fused/cpu.c > /tmp/cpu.c``.)

The same training steps as benchmarks/bench_train_cpu.py (the real loop, random images,
channels_last: the fastest layout of every model here), every variant taking its turn round
after round in one process:

- ``none``: plain ResNet-20.
- ``sa-bookkeeping``: SA-ResNet-20 with the fast path's passes replaced by nothing: the
  forward hands its input on, the backward hands the gradient back and zero parameter
  gradients. What is left is the module's own cost: the autograd Function, the six small
  parameters a layer, their gradients and their SGD updates.
- ``sa-maps``: the passes replaced by copies (out = x, dx = gy): adds the fresh output and dx
  maps, written once each, to the bookkeeping.
- ``sa``: the real fast path (the models' default).
- ``sa-kernels``: with ``--kernels FILE``, the fast path with the C kernels of another version
  of ``sa_torch/fused/cpu.py`` (an earlier commit's, say).

The differences of the medians split SA's extra time a step into bookkeeping (sa-bookkeeping
- none), maps (sa-maps - sa-bookkeeping) and arithmetic (sa - sa-maps).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import statistics
from pathlib import Path

import torch

from bench_train_cpu import device_info, interleave, make_runner, quartiles, run_lines
from report import add_report_arguments, check_report_path, write_report
from sa_torch import fused
from sa_torch.fused import cpu as fused_cpu
from sa_torch.fused.rows import Coef, Param


def _bookkeeping_forward(x, params, groups, eps):
    return x.detach(), x.new_empty((len(Coef), *x.shape[:2])), x.new_empty(0)


def _bookkeeping_backward(grad_out, x, coef, saved, params, groups):
    return grad_out, params[0].new_zeros((len(Param), params[0].numel()))


def _maps_forward(x, params, groups, eps):
    return torch.empty_like(x).copy_(x), x.new_empty((len(Coef), *x.shape[:2])), x.new_empty(0)


def _maps_backward(grad_out, x, coef, saved, params, groups):
    return torch.empty_like(x).copy_(grad_out), params[0].new_zeros((len(Param), params[0].numel()))


@contextlib.contextmanager
def _replaced(module, **functions):
    """``module``'s attributes replaced by ``functions`` inside the block."""
    previous = {name: getattr(module, name) for name in functions}
    for name, function in functions.items():
        setattr(module, name, function)
    try:
        yield
    finally:
        for name, function in previous.items():
            setattr(module, name, function)


def load_kernels(path: str):
    """Another version of sa_torch/fused/cpu.py, imported from ``path`` as a module of its own inside
    sa_torch.fused (so that its relative imports resolve)."""
    if not Path(path).is_file() or not path.endswith(".py"):
        raise SystemExit(f"--kernels {path}: no such .py file (a copy of some version of sa_torch/fused/cpu.py)")
    spec = importlib.util.spec_from_file_location("sa_torch.fused.cpu_other", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:                       # any error of the file's own: say which and stop
        raise SystemExit(f"--kernels {path}: importing it failed ({type(err).__name__}: {err})") from None
    if not all(hasattr(module, name) for name in ("forward", "backward", "available")):
        raise SystemExit(f"--kernels {path}: not a version of sa_torch/fused/cpu.py (it lacks forward, "
                         f"backward or available)")
    source = getattr(module, "SOURCE", None)
    if source is not None and not Path(source).is_file():
        raise SystemExit(f"--kernels {path}: its C source {source} is missing (copy the cpu.c of the same "
                         f"version beside it)")
    if not module.available():
        raise SystemExit(f"--kernels {path}: its C kernels did not build here")
    return module


def variants(kernels_path: str | None) -> dict:
    """{name: (attention, context manager factory)}."""
    table = {"none": ("none", contextlib.nullcontext),
             "sa-bookkeeping": ("sa", lambda: _replaced(fused, forward_passes=_bookkeeping_forward,
                                                         backward_passes=_bookkeeping_backward)),
             "sa-maps": ("sa", lambda: _replaced(fused, forward_passes=_maps_forward,
                                                  backward_passes=_maps_backward)),
             "sa": ("sa", contextlib.nullcontext)}
    if kernels_path:
        other = load_kernels(kernels_path)
        table["sa-kernels"] = ("sa", lambda: _replaced(fused_cpu, forward=other.forward, backward=other.backward))
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--kernels", default=None, metavar="FILE",
                   help="also time the C kernels of this copy of some version of sa_torch/fused/cpu.py")
    add_report_arguments(p)
    args = p.parse_args(argv)
    for flag in ("batch_size", "rounds", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be at least 1")
    if args.warmup < 0:
        p.error(f"--warmup={args.warmup} must be at least 0")
    check_report_path(args)
    if not fused_cpu.available():
        p.exit(1, f"the C kernels are not available here: {fused_cpu.unavailable_reason()}\n")
    table = variants(args.kernels)
    device = torch.device("cpu")
    torch.set_flush_denormal(True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    runners = {}
    for name, (attention, context) in table.items():
        run = make_runner(attention, device, args.batch_size, True, None, 4, "resnet20")

        def timed(steps, run=run, context=context):
            with context():
                return run(steps)
        timed(args.warmup)
        runners[name] = timed
    times = interleave(runners, args.rounds, args.steps)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    lines = [*run_lines("sa_overhead_cpu.py", argv, started, load),
             f"- device: {device_info(device)}; torch {torch.__version__}; flush denormals True",
             f"- resnet20, groups 4, batch {args.batch_size}, channels_last; {args.rounds} rounds x {args.steps} "
             f"steps after {args.warmup} warmup steps; median step time", "",
             "| variant | step (ms) | images/s | vs none | per-round vs none, median (quartiles) |",
             "|---|---:|---:|---:|---|"]
    for name, ts in times.items():
        per_round = [b / t for b, t in zip(times["none"], ts)]
        q1, q3 = quartiles(per_round)
        lines.append(f"| {name} | {1000 * median[name]:.1f} | {args.batch_size / median[name]:,.0f} | "
                     f"{median['none'] / median[name]:.3f}x | {statistics.median(per_round):.3f}x ({q1:.3f}-{q3:.3f}) |")

    def step_ms(a, b):                     # median over rounds of a's step minus b's, in ms
        return 1000 * statistics.median(x - y for x, y in zip(times[a], times[b]))
    lines += ["", "SA's extra time a step (median over rounds of the differences):", "",
              f"- bookkeeping (sa-bookkeeping - none): {step_ms('sa-bookkeeping', 'none'):.1f} ms",
              f"- fresh maps (sa-maps - sa-bookkeeping): {step_ms('sa-maps', 'sa-bookkeeping'):.1f} ms",
              f"- arithmetic (sa - sa-maps): {step_ms('sa', 'sa-maps'):.1f} ms",
              f"- in all (sa - none): {step_ms('sa', 'none'):.1f} ms"]
    if "sa-kernels" in times:
        lines.append(f"- the other kernels (sa-kernels - sa): {step_ms('sa-kernels', 'sa'):.1f} ms")
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args, f"# SA's extra time in a CPU training step\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
