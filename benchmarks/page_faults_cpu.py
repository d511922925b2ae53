"""Minor page faults per training step on the CPU: how much fresh memory each model's step touches.

    python benchmarks/page_faults_cpu.py
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296 \
        python benchmarks/page_faults_cpu.py

(Both tunables: setting the trim threshold alone switches off glibc's adaptive mmap threshold,
and every large tensor is then mapped afresh, many more faults; see docs/results/cpu_throughput.md.)

Each fault is a page the kernel maps and zeroes because the allocator gave memory back to the
system after the previous step. Same steps as benchmarks/bench_train_cpu.py (the real loop,
random images); one process, the models in turn. Linux and macOS (``resource.getrusage``).
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from bench_train_cpu import VARIANTS, make_runner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--attention", nargs="+", default=["none", "sa"], choices=list(VARIANTS), metavar="VARIANT")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        p.error(f"--steps={args.steps} and --batch-size={args.batch_size} must both be at least 1")
    torch.set_flush_denormal(True)
    print("| model | minor page faults per step | wall ms per step |\n|---|---:|---:|")
    for variant in args.attention:
        run = make_runner(variant, torch.device("cpu"), args.batch_size, args.channels_last, None, 4, "resnet20")
        run(3)                                            # warm up: the first steps allocate for good
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        run(args.steps)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(f"| {variant} | {faults / args.steps:.0f} | {1000 * (time.perf_counter() - start) / args.steps:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
