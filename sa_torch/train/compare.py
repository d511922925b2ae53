"""Train several variants with one recipe over several seeds, and tabulate them.

    python -m sa_torch.train.compare --variants plain sa se eca --seeds 0 1 2 --epochs 30 \
        --table docs/results/compare.md --json docs/results/compare.json

Every training flag of ``python -m sa_torch.train`` is accepted and applies to every
run; ``--variants`` picks the attention (and SA ablation) per run, from ``VARIANTS``.
The data are loaded once and shared by all runs. ``--out DIR`` gives each run its own
directory, ``DIR/<variant>-seed<seed>``; ``--export DIR`` writes each run's weights to
``DIR/<variant>-seed<seed>.pt``. ``--resume`` is refused: a comparison starts new runs
(continue one run with ``python -m sa_torch.train --out DIR/<variant>-seed<seed> --resume``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from .data import DataError, load_cifar10
from .checkpoint import export_weights
from .config import ConfigError, TrainConfig, add_config_options, check_model
from .device import pick_device
from .loop import train

# name -> (attention, SA options); the options are TrainConfig fields
VARIANTS = {
    "plain": ("none", {}),
    "sa": ("sa", {}),
    "sa-no-shuffle": ("sa", {"sa_shuffle": False}),
    "sa-no-groupnorm": ("sa", {"sa_groupnorm": False}),
    "sa-conv-affine": ("sa", {"sa_conv_affine": True}),
    "se": ("se", {}),
    "eca": ("eca", {}),
}


def run_variants(base: TrainConfig, variants: list[str], seeds: list[int], data,
                 source: str = "", on_run=None, export: str | None = None) -> list[dict]:
    """One training run per (variant, seed); a row of results per run (``on_run(rows)`` after each).

    ``export``: a directory that receives each run's weights as ``<variant>-seed<seed>.pt``."""
    rows = []
    for name in variants:
        if name not in VARIANTS:
            raise ValueError(f"variant {name!r} is unknown; choose from {sorted(VARIANTS)}")
    for name in variants:
        attention, options = VARIANTS[name]
        for seed in seeds:
            out = str(Path(base.out) / f"{name}-seed{seed}") if base.out else None
            cfg = dataclasses.replace(base, attention=attention, seed=seed, out=out, resume=False,
                                      **{**dict(sa_shuffle=True, sa_groupnorm=True, sa_conv_affine=False), **options})
            result = train(cfg, data=data)
            if export:
                Path(export).mkdir(parents=True, exist_ok=True)
                export_weights(result, Path(export) / f"{name}-seed{seed}.pt")
            last = result["metrics"][-1]
            speeds = [m["images_per_s"] for m in result["metrics"][1:]] or [last["images_per_s"]]
            rows.append({
                "name": name, "attention": attention, "options": cfg.model_options(), "seed": seed,
                "test_acc": last["test_acc"], "test_loss": last["test_loss"], "params": result["params"],
                "images_per_s": statistics.median(speeds),
                "train_time": sum(m["train_time"] for m in result["metrics"]),
                "epochs": cfg.epochs, "device": device_name(pick_device(cfg.device)), "source": source,
                "memory_format": result["layout"]["memory_format"], "precision": result["precision"]})
            print(f"{name} seed {seed}: test acc {last['test_acc']:.4f}", flush=True)
            if on_run is not None:
                on_run(rows)
    return rows


def device_name(device) -> str:
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def table(rows: list[dict]) -> str:
    """Markdown: one line per variant, mean ± std over its seeds (std 0 for a single seed)."""
    lines = ["| variant | attention | seeds | test acc (%) mean ± std | params | images/s (median epoch) | train time (s) |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["name"] for r in rows):
        runs = [r for r in rows if r["name"] == name]
        acc = [100 * r["test_acc"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(f"| {name} | {runs[0]['attention']} | {len(runs)} | {statistics.mean(acc):.2f} ± {std:.2f} "
                     f"| {runs[0]['params']:,} | {statistics.mean(r['images_per_s'] for r in runs):,.0f} "
                     f"| {statistics.mean(r['train_time'] for r in runs):.1f} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sa_torch.train.compare", description=__doc__.split("\n")[0],
        epilog="--out DIR puts each run in DIR/<variant>-seed<seed> (a run already there is replaced only "
               "with --overwrite). --resume is refused: a comparison starts new runs.")
    add_config_options(p)
    p.add_argument("--export", metavar="DIR", default=None,
                   help="write each run's final weights to DIR/<variant>-seed<seed>.pt")
    p.add_argument("--variants", nargs="+", default=["plain", "sa"], help=f"from {', '.join(VARIANTS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="one run per seed and variant")
    p.add_argument("--table", default=None, help="write the markdown table here")
    p.add_argument("--json", default=None, help="write every run's results here")
    p.add_argument("--source", default="", help="a tag stored with every run (e.g. gpu-full)")
    return p


def main(argv=None) -> int:
    args = vars(parser().parse_args(argv))
    extra = {k: args.pop(k) for k in ("variants", "seeds", "table", "json", "source", "export")}
    cfg = TrainConfig(**args)
    try:
        if cfg.resume:
            raise ConfigError("--resume: python -m sa_torch.train.compare starts new runs; continue one of them "
                              "with python -m sa_torch.train --out DIR/<variant>-seed<seed> --resume")
        check_model(cfg)
        data = load_cifar10(cfg.data, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                            download=cfg.download)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def save(rows):   # after every run, so that an interrupted comparison keeps what it has
        if extra["table"]:
            Path(extra["table"]).write_text(table(rows))
        if extra["json"]:
            Path(extra["json"]).write_text(json.dumps(rows, indent=1) + "\n")

    try:
        rows = run_variants(cfg, extra["variants"], extra["seeds"], data, extra["source"], on_run=save,
                            export=extra["export"])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
