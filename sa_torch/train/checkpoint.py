"""What a run saves and reads back: its metrics files, the checkpoint that resumes it, and the small weights file.

``DIR/checkpoint.pt`` (written atomically: temp file, then rename) holds everything an exact
resume needs: model, optimizer and scheduler state, the augmentation generator and every
global RNG state, the configuration (:class:`~sa_torch.train.config.TrainConfig` as a dict),
the :class:`RunState` (epochs done, steps into the current one, its running sums, the
metrics so far, the memory layout and precision chosen) and, for an fp16 run, the gradient
scaler's state (its loss scale and growth counter).

``--export PATH`` writes another file for others to load: float32 CPU weights, the
configuration without machine-specific entries (:func:`portable_config`: no absolute path,
no output directory) and the last epoch's metrics.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models import build_model
from .config import ConfigError, TrainConfig, config_differences

CHECKPOINT = "checkpoint.pt"


def empty_sums() -> dict:
    return {"loss": 0.0, "correct": 0, "count": 0}


@dataclass
class RunState:
    """Where a run is: completed epochs, steps into the current one, its running sums; and what
    was fixed when it started (``layout``, ``amp``: the precision, the ``data`` sizes), so a resume
    keeps them."""

    epoch: int = 0
    step: int = 0
    sums: dict = field(default_factory=empty_sums)
    wall_time: float = 0.0
    metrics: list = field(default_factory=list)
    layout: dict | None = None   # {"memory_format", "chosen_by", "ms_per_step"}
    amp: str | None = None       # "bf16", "fp16" or "off"
    data: dict | None = None     # {"train": N, "test": M, "classes": [...]}

    def __post_init__(self):
        # earlier versions: True = bf16 autocast, False = off
        self.amp = {True: "bf16", False: "off"}.get(self.amp, self.amp)


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(out: Path, model, opt, sched, aug: torch.Generator, cfg: TrainConfig,
                    state: RunState, scaler: torch.amp.GradScaler | None = None) -> None:
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "aug_rng": aug.get_state(),
            "rng": rng_states(), "config": dataclasses.asdict(cfg),
            "state": dataclasses.asdict(state)}
    if scaler is not None:
        ckpt["scaler"] = scaler.state_dict()
    save_atomic(ckpt, out / CHECKPOINT)


def write_metrics(out: Path, metrics: list[dict]) -> None:
    """``out/metrics.json`` and ``out/metrics.csv``: one row per epoch."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]))
        writer.writeheader()
        writer.writerows(metrics)


def read_checkpoint(out: str | os.PathLike) -> dict:
    """The checkpoint of the run in ``out`` (FileNotFoundError naming the path when none)."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {out} ({path} does not exist); "
                                f"to start a new run there, leave out --resume")
    return torch.load(path, map_location="cpu", weights_only=False)


def saved_run(out: str | os.PathLike | None, overwrite: bool) -> dict:
    """The checkpoint that ``--out out --resume`` continues: ConfigError when there is no run to
    continue (no ``out``, or ``--overwrite`` too), FileNotFoundError when ``out`` holds none."""
    if overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if not out:
        raise ConfigError("--resume needs --out DIR, the directory of the run to continue")
    return read_checkpoint(out)


def check_same_run(out: str | os.PathLike, saved: dict, wanted: dict) -> None:
    """ConfigError, naming each flag, where ``wanted`` differs from the ``saved`` run's configuration."""
    differ = config_differences(saved, wanted)
    if differ:
        raise ConfigError(f"--resume continues the saved run in {out}; these flags differ from it: "
                          + ", ".join(differ))


def checkpoint_to_resume(cfg: TrainConfig) -> dict | None:
    """The saved checkpoint a ``resume`` run continues (None for a new run), after checking that
    ``cfg`` is that run's; a new run may not replace a saved one unless ``cfg.overwrite``."""
    if cfg.resume:
        ckpt = saved_run(cfg.out, cfg.overwrite)
        check_same_run(cfg.out, ckpt["config"], dataclasses.asdict(cfg))
        return ckpt
    out = Path(cfg.out) if cfg.out else None
    if out is not None and (out / CHECKPOINT).exists() and not cfg.overwrite:
        raise ConfigError(f"{out} already holds a run ({out / CHECKPOINT}); continue it with "
                          f"--out {out} --resume, or start a new run there with --overwrite")
    return None


def restore(ckpt: dict, model, opt, sched, aug: torch.Generator,
            scaler: torch.amp.GradScaler | None = None) -> RunState:
    """Load a checkpoint's states into the run's objects and the global RNGs."""
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    aug.set_state(ckpt["aug_rng"])
    if scaler is not None:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_states(ckpt["rng"])
    return RunState(**ckpt["state"])


def _portable_path(path: str | None) -> str | None:
    """A relative path as given; an absolute one (this machine's) cut to its last part."""
    if path is None or not os.path.isabs(os.path.expanduser(path)):
        return path
    return Path(path).name


def portable_config(cfg: TrainConfig | dict) -> dict:
    """The configuration as a dict without what only made sense on the machine that trained:
    no output directory, no resume or overwrite request, and no absolute path."""
    config = dataclasses.asdict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
    config.update(out=None, resume=False, overwrite=False, data=_portable_path(config.get("data")))
    return dataclasses.asdict(TrainConfig(**config))      # normalised (channels_last "on"/"off")


def write_weights(state_dict: dict, cfg: TrainConfig | dict, metrics: dict | None,
                  path: str | os.PathLike) -> None:
    """The export file: ``{"state_dict" (float32, CPU), "config" (portable), "metrics"}``."""
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in state_dict.items()}
    save_atomic({"state_dict": state, "config": portable_config(cfg), "metrics": metrics}, Path(path))


def export_weights(result: dict, path: str | os.PathLike) -> None:
    """A small file for others, from what :func:`~sa_torch.train.loop.train` returned."""
    write_weights(result["model"].state_dict(), result["config"],
                  result["metrics"][-1] if result["metrics"] else None, path)


def load_trained(path: str | os.PathLike, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a file written by ``python -m sa_torch.train --export PATH``.

    Returns (model in eval mode, the file's dict: ``state_dict``, ``config``, ``metrics``).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no trained model at {path}: train one and export it with "
                                f"`python -m sa_torch.train --export {path}` (see docs/engineering.md)")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    missing = [k for k in ("state_dict", "config") if k not in checkpoint]
    if missing:
        raise ValueError(f"{path} has no {missing}: expected a file written by "
                         f"`python -m sa_torch.train --export {path}`")
    cfg = TrainConfig(**checkpoint["config"])
    model = build_model(cfg.model, cfg.attention, cfg.groups, **cfg.model_options())
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
