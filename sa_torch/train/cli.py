"""The command line of ``python -m sa_torch.train``: flags in, :class:`TrainConfig` out, and
``--resume`` and ``--export`` handled around :func:`~sa_torch.train.loop.train`.

``--out DIR --resume`` continues the run saved in DIR exactly where it stopped, even in
the middle of an epoch (Ctrl-C saves a checkpoint there), with its saved configuration.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import CHECKPOINT, RunState, check_same_run, export_weights, saved_run, write_weights
from .config import FIELDS, PER_COMMAND, RESUME_SAFE, ConfigError, TrainConfig, add_config_options, flag
from .data import DataError
from .ddp import finish, is_rank0
from .loop import train

RESUME_RULE = (
    "resuming: --out DIR --resume continues the run saved in DIR with its saved configuration. "
    "Flags given with --resume must match the saved run, except those that do not change what is "
    f"trained: {', '.join(flag(n) for n in RESUME_SAFE)} and --export. A finished run is left as it "
    "is (with --export, its weights are exported). A new run in a DIR that holds a checkpoint "
    "needs --overwrite.")


def parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The command line: one option per :class:`TrainConfig` field, and ``--export``.

    ``suppress_defaults``: flags left out do not appear in the parsed namespace (so that it
    holds exactly the flags given)."""
    p = argparse.ArgumentParser(prog="python -m sa_torch.train", description="Train a CIFAR ResNet, with or without attention.",
                                epilog=RESUME_RULE)
    add_config_options(p, suppress_defaults)
    p.add_argument("--export", metavar="PATH", default=argparse.SUPPRESS if suppress_defaults else None,
                   help="also write the final weights, the configuration and the last metrics here "
                        "(a small .pt; sa_torch.train.load_trained reads it)")
    return p


def given_flags(argv) -> dict:
    """The flags on the command line ``argv``, as ``{field or "export": value}``."""
    return vars(parser(suppress_defaults=True).parse_args(argv))


def resume_config(args: dict, given: dict) -> tuple[TrainConfig, dict]:
    """The saved run's configuration, with this command's resume-safe flags; and its checkpoint.

    ConfigError (one line, each difference named) when a flag given differs from the saved run."""
    ckpt = saved_run(args["out"], args["overwrite"])
    saved = {k: v for k, v in ckpt["config"].items() if k in FIELDS}
    check_same_run(args["out"], saved, given)
    now = {k: v for k, v in given.items() if k in RESUME_SAFE}
    now.update({k: args[k] for k in PER_COMMAND})
    return TrainConfig(**{**saved, **now, "out": args["out"], "resume": True, "overwrite": False}), ckpt


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = vars(parser().parse_args(argv))
    export = args.pop("export")
    try:
        if args["resume"]:
            cfg, ckpt = resume_config(args, given_flags(argv))
            state = RunState(**ckpt["state"])
            if state.epoch >= cfg.epochs:
                last = state.metrics[-1] if state.metrics else {}
                print(f"{cfg.out} is finished: {state.epoch} of {cfg.epochs} epochs done"
                      + (f", test accuracy {last['test_acc']:.4f}" if "test_acc" in last else "")
                      + "; nothing to train (a longer run is a new run: another --out, or --overwrite)")
                if export:
                    write_weights(ckpt["model"], cfg, last or None, export)
                    print(f"exported the weights to {export}")
                return 0
        else:
            cfg = TrainConfig(**args)
        result = train(cfg)
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before training started; nothing to save", file=sys.stderr)
        return 130
    if result["interrupted"]:
        where = (f"checkpoint saved to {Path(cfg.out) / CHECKPOINT}; continue with: "
                 f"python -m sa_torch.train --out {cfg.out} --resume" if cfg.out else "nothing saved (no --out)")
        print(f"interrupted: {where}", file=sys.stderr)
        return 130
    if export and is_rank0():
        export_weights(result, export)
    finish()
    return 0

