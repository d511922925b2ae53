"""Where the time of a training step goes: torch.profiler over a few steps of one model.

    python benchmarks/profile_train_cpu.py --attention sa --channels-last on
    python benchmarks/profile_train_cpu.py --attention sa-unfused se --channels-last both --out docs/results/cpu_profile.md

For each (model, layout): the ops with the most self time (time in the op itself, not in
the ops it calls) and, for ``sa``, the share of the step spent in the fast SA path's own
events (its forward and backward, in which the C kernels run).
Same steps as benchmarks/bench_train_cpu.py (the real loop, random images).
The profiler adds overhead of its own: read the shares, not the absolute times.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from report import add_report_arguments, check_report_path, write_report
from bench_train_cpu import LAYOUTS, VARIANTS, device_info, make_runner
from sa_torch.train import pick_device

# the fast SA path's events: the eager autograd.Function and its backward (the C kernels run
# inside them), and the torch.library operators (what torch.compile runs)
SA_EVENTS = ("_ShuffleAttention", "sa_torch::", "GeneratedBackwardFor_sa_torch")


def profile_steps(variant, device, args, channels_last):
    run = make_runner(variant, device, args.batch_size, channels_last, None, args.groups, args.model)
    run(args.warmup)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        run(args.steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return events, total


def table(events, total, steps, rows) -> list[str]:
    lines = ["| op | self time per step (ms) | share | calls per step |", "|---|---:|---:|---:|"]
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]:
        lines.append(f"| `{e.key[:70]}` | {e.self_cpu_time_total / 1000 / steps:.2f} | "
                     f"{e.self_cpu_time_total / total:.1%} | {e.count / steps:g} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--attention", nargs="+", default=["sa"], choices=list(VARIANTS), metavar="VARIANT")
    p.add_argument("--channels-last", choices=list(LAYOUTS), default="both")
    add_report_arguments(p)
    args = p.parse_args(argv)
    check_report_path(args)
    device = pick_device("cpu")
    torch.set_flush_denormal(True)
    lines = [f"- command: `python benchmarks/profile_train_cpu.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- device: {device_info(device)}; torch {torch.__version__}; batch {args.batch_size}, "
             f"{args.steps} profiled steps after {args.warmup}", ""]
    for variant in args.attention:
        for cl in LAYOUTS[args.channels_last]:
            events, total = profile_steps(variant, device, args, cl)
            sa = sum(e.self_cpu_time_total for e in events if e.key.startswith(SA_EVENTS))
            lines += [f"### {variant}, {'channels_last' if cl else 'NCHW'}: "
                      f"{total / 1000 / args.steps:.0f} ms of op self time per step"
                      + (f", {sa / total:.1%} in the fast SA path" if variant == "sa" else ""), ""]
            lines += table(events, total, args.steps, args.rows) + [""]
    text = "\n".join(lines)
    print(text)
    write_report(args, f"# Profile of a CPU training step\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
