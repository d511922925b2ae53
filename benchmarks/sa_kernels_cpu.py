"""The fast SA path's C functions alone, on the shapes of SA-ResNet-20's three stages (batch 128).

    python benchmarks/sa_kernels_cpu.py

Times ``sa_torch.fused.cpu.forward`` and ``backward`` with preallocated outputs (no autograd,
no allocation), in channels_last and NCHW, against one copy of the map, so a training step's SA
time can be split into the kernels' own and the rest. Median of ``--repeats`` calls, float32,
torch's thread count.
"""
from __future__ import annotations

import argparse

import torch

from bench_sa import median_ms
from sa_torch.fused import cpu as fused_cpu

STAGES = [(16, 32), (32, 16), (64, 8)]          # (channels, height = width) of ResNet-20's stages


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1:
        p.error(f"--repeats={args.repeats} and --batch-size={args.batch_size} must both be at least 1")
    if not fused_cpu.available():
        p.exit(1, f"the C kernels are not available here: {fused_cpu.unavailable_reason()}\n")
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    print(f"batch {args.batch_size}, groups {args.groups}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats}\n\n| channels | H=W | layout | forward (ms) | backward (ms) | one copy (ms) |\n"
          "|---:|---:|---|---:|---:|---:|")
    totals = {}
    for channels, size in STAGES:
        if channels % (2 * args.groups):
            p.error(f"channels={channels} is not divisible by 2*groups={2 * args.groups}")
        params = torch.randn(6, channels // (2 * args.groups))
        for layout in (torch.channels_last, torch.contiguous_format):
            x = torch.randn(args.batch_size, channels, size, size).contiguous(memory_format=layout)
            out, gy, dx = torch.empty_like(x), torch.randn_like(x), torch.empty_like(x)
            coef, gate = fused_cpu.forward(x, params, args.groups, 1e-5, out)
            forward = median_ms(lambda: fused_cpu.forward(x, params, args.groups, 1e-5, out), args.repeats, 1)
            backward = median_ms(lambda: fused_cpu.backward(gy, x, coef, gate, params, args.groups, dx), args.repeats, 1)
            copy = median_ms(lambda: dx.copy_(x), args.repeats, 1)
            name = "channels_last" if layout is torch.channels_last else "NCHW"
            totals[name] = totals.get(name, 0.0) + 3 * (forward + backward)      # three SA blocks a stage
            print(f"| {channels} | {size} | {name} | {forward:.2f} | {backward:.2f} | {copy:.2f} |")
    print("\nnine SA layers (three a stage), forward + backward: "
          + ", ".join(f"{name} {ms:.1f} ms" for name, ms in totals.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
