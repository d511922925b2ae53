"""Time to accuracy from training runs' metrics.json: when (wall-clock) each run first reached
the target test accuracy, and whether that was within the budget.

    python benchmarks/time_to_accuracy.py RUN_DIR [RUN_DIR ...] --target 0.91 --budget 60 --out summary.md

A run directory is the ``--out`` of ``python -m sa_torch.train``; its metrics.json has one row
per epoch with ``wall_time``: seconds of training (compilation included, in epoch 1) and
evaluation since the start, not counting loading and decoding the data.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from report import add_report_arguments, check_report_path, write_report


def summarize(run: Path, target: float, budget: float) -> dict:
    rows = json.loads((run / "metrics.json").read_text())
    reached = next((r for r in rows if r["test_acc"] >= target), None)
    last = rows[-1]
    return {"run": run.name, "epochs": last["epoch"], "final_acc": last["test_acc"], "wall": last["wall_time"],
            "epoch_1": rows[0]["train_time"], "reached_epoch": reached and reached["epoch"],
            "reached_wall": reached and reached["wall_time"],
            "verdict": bool(reached) and reached["wall_time"] <= budget}


def table(results: list[dict], target: float, budget: float) -> str:
    lines = [f"| run | epochs | final test acc (%) | wall (s) | epoch 1 incl. compile (s) | "
             f"first >= {100 * target:.1f}% (epoch, wall s) | within {budget:g} s |", "|---|---:|---:|---:|---:|---|---|"]
    for r in results:
        first = f"{r['reached_epoch']}, {r['reached_wall']:.1f}" if r["reached_epoch"] else "never"
        lines.append(f"| {r['run']} | {r['epochs']} | {100 * r['final_acc']:.2f} | {r['wall']:.1f} | "
                     f"{r['epoch_1']:.1f} | {first} | {'yes' if r['verdict'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--target", type=float, default=0.91, help="test accuracy, as a fraction")
    p.add_argument("--budget", type=float, default=60.0, help="seconds of wall-clock")
    add_report_arguments(p)
    args = p.parse_args(argv)
    check_report_path(args)
    found = [run for run in args.runs if (run / "metrics.json").exists()]
    missing = [str(run) for run in args.runs if run not in found]
    text = table([summarize(run, args.target, args.budget) for run in found], args.target, args.budget)
    if missing:
        text += f"\nNo metrics.json (the run did not finish an epoch): {', '.join(missing)}\n"
    print(text)
    write_report(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
