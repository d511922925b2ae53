"""How long ``torch.compile`` takes for plain, SA, SE and ECA ResNets on the CPU, cold.

    python benchmarks/bench_compile_cpu.py                                # prints the table
    python benchmarks/bench_compile_cpu.py --out docs/results/cpu_compile_time.md

Every (model, layout) runs in a fresh Python process with an empty inductor cache (its own
``TORCHINDUCTOR_CACHE_DIR``, FX-graph and AOT-autograd caches off), so nothing is reused:
the first compiled training step (forward, backward, SGD step, the same loop as
benchmarks/bench_train_cpu.py) is timed, then ``--steps`` more. Compile time = first step
minus a compiled step. Also listed: how many ops dynamo hands to the compiler for the
forward pass, to show what the fast SA path's single operator (``sa_torch::shuffle_attention``)
saves against ``sa-unfused`` (the official layer op by op).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from statistics import median

import torch

from report import add_report_arguments, check_report_path, write_report
from bench_train_cpu import VARIANTS, device_info, make_runner

LAYOUTS = {"on": ["channels_last"], "off": ["NCHW"], "both": ["NCHW", "channels_last"]}


def graph_ops(variant: str, channels_last: bool, groups: int, model_name: str) -> int:
    """Ops in the forward graph dynamo captures (no code generation)."""
    from sa_torch.models import build_model
    attention, options = VARIANTS[variant]
    model = build_model(model_name, attention, groups, **options)
    x = torch.randn(2, 3, 32, 32)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    torch._dynamo.reset()
    torch.compile(model, backend=backend)(x)
    torch._dynamo.reset()
    return sum(n.op == "call_function" for g in graphs for n in g.graph.nodes)


def measure_one(args) -> dict:
    """In this (fresh) process: ops, then the first compiled step and ``args.steps`` more."""
    torch.set_flush_denormal(True)
    channels_last = args.one_layout == "channels_last"
    ops = graph_ops(args.one, channels_last, args.groups, args.model)
    run = make_runner(args.one, torch.device("cpu"), args.batch_size, channels_last, args.mode, args.groups,
                      args.model)
    first = run(1)
    steps = [run(1) for _ in range(args.steps)]
    step = sorted(steps)[len(steps) // 2]
    return {"variant": args.one, "layout": args.one_layout, "ops": ops, "first_step_s": first,
            "step_s": step, "compile_s": first - step}


def run_isolated(variant: str, layout: str, args) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
               "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
        cmd = [sys.executable, __file__, "--one", variant, "--one-layout", layout, "--model", args.model,
               "--groups", str(args.groups), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--mode", args.mode]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{variant} {layout} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)``, or the one value."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="compiled steps timed after the first (median)")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds over all models, each round in a rotated order; the table gives medians and ranges")
    p.add_argument("--mode", default="default", help="torch.compile mode")
    p.add_argument("--attention", nargs="+", default=["none", "sa", "sa-unfused", "se", "eca"],
                   choices=[v for v in VARIANTS if v != "sa-eager"], metavar="VARIANT")
    p.add_argument("--channels-last", choices=list(LAYOUTS), default="both")
    add_report_arguments(p)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--one-layout", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for flag in ("steps", "repeats", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be at least 1")
    check_report_path(args)
    if args.one:
        print(json.dumps(measure_one(args)))
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()
    cases = [(variant, layout) for variant in args.attention for layout in LAYOUTS[args.channels_last]]
    runs = {case: [] for case in cases}
    for round_ in range(args.repeats):
        shift = round_ % len(cases)
        for variant, layout in cases[shift:] + cases[:shift]:
            start = time.perf_counter()
            runs[variant, layout].append(run_isolated(variant, layout, args))
            print(f"round {round_ + 1}: {variant} {layout}: compile {runs[variant, layout][-1]['compile_s']:.1f} s "
                  f"({time.perf_counter() - start:.0f} s with start-up)", file=sys.stderr)
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    lines = [f"- command: `python benchmarks/bench_compile_cpu.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- date: {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min; load average before: "
             f"{' '.join(f'{v:.2f}' for v in load)}",
             f"- device: {device_info(torch.device('cpu'))}; torch {torch.__version__}; "
             f"{sys.version.split()[0]}; compiler cache empty for every row",
             f"- model {args.model}, groups {args.groups}, batch {args.batch_size}, mode {args.mode}; "
             f"a training step = forward, backward, SGD step; {args.repeats} round(s) over the models, each "
             f"in a rotated order; median (min-max) over the rounds", "",
             "| model | layout | ops in the forward graph | first step (s) | compiled step (ms) | compile (s) | "
             "compile / plain's |", "|---|---|---:|---:|---:|---:|---:|"]
    plain = {layout: median([r["compile_s"] for r in rs]) for (variant, layout), rs in runs.items()
             if variant == "none"}
    for (variant, layout), rs in runs.items():
        compile_s = [r["compile_s"] for r in rs]
        ratio = f"{median(compile_s) / plain[layout]:.2f}x" if layout in plain else "n/a"
        lines.append(f"| {variant} | {layout} | {rs[0]['ops']} | {median([r['first_step_s'] for r in rs]):.1f} | "
                     f"{spread([1000 * r['step_s'] for r in rs], '.0f')} | {spread(compile_s, '.1f')} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args, f"# torch.compile time on the CPU: SA vs plain, SE and ECA\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
