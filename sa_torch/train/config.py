"""What defines a training run, and the command line made from it.

:class:`TrainConfig` is the one source of both: every field carries its flag's help text
(and its choices, its flag name where that is not the field's name, what its default
means) in its metadata, and :func:`add_config_options` builds the argparse options from
the fields. A new field is a new flag, with its help, and nothing else to keep in step.

Fields marked ``resume_safe`` say where or how a run is computed, not what it computes
(device, data location, progress output); ``--resume`` accepts them changed. Every other
field must match the saved run (:func:`config_differences`).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field

from ..attention import ATTENTION_NAMES
from ..models import MODEL_NAMES, build_model
from .device import PRECISIONS

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
LAYOUTS = ("auto", "on", "off")
# fields that steer a run (where it is written, whether it continues) rather than describe it
RUN_CONTROL = ("out", "resume", "overwrite")


class ConfigError(ValueError):
    """A training configuration that cannot run (the CLIs print it as one line)."""


def option(default, help: str, **cli):
    """A config field with its command-line metadata.

    ``help``: the flag's help text. Optional ``cli`` keys: ``flag`` (the option string, when
    not ``--field-name``), ``choices``, ``metavar``, ``const`` (the flag may stand alone and
    then means ``const``), ``shown_default`` (the words --help prints for the default),
    ``cli_default`` (the command line's default, where it differs from the library's),
    ``negation`` (an extra flag setting the field to a value, ``("--no-x", value)``),
    ``resume_safe`` (may differ from the saved run on ``--resume``), ``per_command`` (on
    ``--resume``, taken from this command line rather than from the saved run).
    """
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in every checkpoint."""

    model: str = option("resnet20", "the CIFAR ResNet (depth 6n+2)", choices=MODEL_NAMES)
    attention: str = option("sa", "attention in every block: none (plain ResNet), sa (Shuffle Attention), "
                            "se or eca", choices=ATTENTION_NAMES)
    groups: int = option(4, "SA groups G (every block's width must divide by 2G)")
    sa_shuffle: bool = option(True, "SA ablation: drop the channel shuffle", flag="--no-shuffle",
                              shown_default="the shuffle is kept")
    sa_groupnorm: bool = option(True, "SA ablation: a plain per-channel affine on x1 instead of GroupNorm",
                                flag="--no-groupnorm", shown_default="GroupNorm is used")
    sa_conv_affine: bool = option(False, "SA ablation: 1x1 convs as the gates' affines", flag="--conv-affine")
    epochs: int = option(30, "number of passes over the training set")
    batch_size: int = option(512, "global batch size (split over DDP ranks)")
    lr: float = option(0.4, "peak learning rate of the one-cycle schedule")
    warmup_epochs: float = option(2.0, "epochs of linear rise from 0 to --lr; then a linear fall to 0 "
                                  "at the last step")
    momentum: float = option(0.9, "SGD momentum (Nesterov)")
    weight_decay: float = option(5e-4, "weight decay on conv and linear weights (not on norms or gates)")
    label_smoothing: float = option(0.1, "label smoothing of the training loss")
    tta: bool = option(False, "test-time augmentation: evaluate on image and mirror (averaged logits)")
    seed: int = option(0, "seed of the model's initialisation, the data order and the augmentation")
    data: str | None = option(None, "tar.gz, ImageFolder directory or torchvision root", metavar="PATH",
                              shown_default="$SA_CIFAR_DATA, else ../shared/data/cifar10-jpeg.tar.gz",
                              resume_safe=True)
    download: bool = option(False, "let torchvision download CIFAR-10 into --data", resume_safe=True)
    out: str | None = option(None, "directory for metrics.json, metrics.csv and checkpoint.pt",
                             metavar="DIR", shown_default="nothing is written")
    resume: bool = option(False, "continue the run saved in --out with its saved configuration "
                          "(see 'resuming' below)")
    overwrite: bool = option(False, "start a new run in an --out that holds a checkpoint (replaces that run)")
    device: str | None = option(None, "torch device to train on", shown_default="cuda, then mps, then cpu",
                                resume_safe=True)
    limit_train: int | None = option(None, "train on this many images (a fixed subset)", metavar="N",
                                     shown_default="all")
    limit_test: int | None = option(None, "test on this many images (a fixed subset)", metavar="N",
                                    shown_default="all")
    compile: str | None = option(None, "torch.compile the model with this mode", metavar="MODE",
                                 choices=COMPILE_MODES, const="default", shown_default="eager, no compile")
    # None (the library's default): on for CUDA, off elsewhere, not measured
    channels_last: str | None = option(
        None, "memory layout: auto times a few training steps of this model in both layouts and takes "
        "the faster; on = channels_last, off = NCHW; a resumed run keeps the layout it started with",
        choices=LAYOUTS, const="on", cli_default="auto", negation=("--no-channels-last", "off"))
    amp: str = option("auto", "precision: auto = bf16 autocast on a GPU that has bfloat16 in hardware "
                      "(compute capability 8.0 on), fp16 autocast with a gradient scaler on older GPUs, off "
                      "(float32) on a CPU or Apple GPU; bf16 on an older GPU and fp16 on a CPU are refused; "
                      "a resumed run keeps the precision it started with",
                      choices=PRECISIONS, negation=("--no-amp", "off"))
    progress: bool = option(True, "no progress bar or epoch lines", flag="--quiet",
                            shown_default="progress is shown", resume_safe=True, per_command=True)

    def __post_init__(self):
        # files written by earlier versions hold bools here
        if isinstance(self.compile, bool):
            self.compile = "default" if self.compile else None
        if isinstance(self.channels_last, bool):
            self.channels_last = "on" if self.channels_last else "off"
        if self.channels_last not in (None, *LAYOUTS):
            raise ConfigError(f"channels_last={self.channels_last!r} must be one of {LAYOUTS} or None")
        # earlier versions: None = bf16 autocast on CUDA only, True = bf16 autocast, False = off
        self.amp = {None: "auto", True: "bf16", False: "off"}.get(self.amp, self.amp)
        if self.amp not in PRECISIONS:
            raise ConfigError(f"amp={self.amp!r} must be one of {PRECISIONS}")

    def model_options(self) -> dict:
        options = dict(sa_shuffle=self.sa_shuffle, sa_groupnorm=self.sa_groupnorm,
                       sa_conv_affine=self.sa_conv_affine)
        return options if self.attention == "sa" else {}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
RESUME_SAFE = tuple(name for name, f in FIELDS.items() if f.metadata.get("resume_safe"))
PER_COMMAND = tuple(name for name, f in FIELDS.items() if f.metadata.get("per_command"))


def check_model(cfg: TrainConfig) -> None:
    """Build the configured model once, so that an impossible one (say groups that do not fit
    a block) is reported before any data is loaded."""
    try:
        build_model(cfg.model, cfg.attention, cfg.groups, **cfg.model_options())
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def _value_type(hint):
    """``int | None`` -> int; ``bool`` -> bool."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def flag(name: str) -> str:
    """The option string of config field ``name``: ``--batch-size``, ``--no-shuffle``."""
    return FIELDS[name].metadata.get("flag", "--" + name.replace("_", "-"))


def _help(f: dataclasses.Field, kind) -> str:
    shown = f.metadata.get("shown_default")
    if shown is None and kind is not bool:
        shown = f.metadata.get("cli_default", f.default)
    return f.metadata["help"] + (f" (default: {shown})" if shown is not None else "")


def add_config_options(p: argparse.ArgumentParser, suppress_defaults: bool = False) -> None:
    """One option per :class:`TrainConfig` field, from its metadata.

    With ``suppress_defaults`` an option left out does not appear in the parsed namespace,
    so that ``vars(p.parse_args(argv))`` holds exactly the flags given.
    """
    hints = typing.get_type_hints(TrainConfig)
    for name, f in FIELDS.items():
        meta, kind = f.metadata, _value_type(hints[name])
        default = argparse.SUPPRESS if suppress_defaults else meta.get("cli_default", f.default)
        kwargs = dict(dest=name, default=default, help=_help(f, kind))
        if kind is bool:
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs.update(type=kind, choices=meta.get("choices"), metavar=meta.get("metavar"))
            if "const" in meta:
                kwargs.update(nargs="?", const=meta["const"])
        p.add_argument(flag(name), **kwargs)
        if "negation" in meta:
            negation, value = meta["negation"]
            p.add_argument(negation, dest=name, action="store_const", const=value, default=default,
                           help=f"the same as {flag(name)} {value}")


def _is_switch(name: str) -> bool:
    """A flag without a value that sets a bool field to the opposite of its default."""
    return isinstance(FIELDS[name].default, bool)


def flag_text(name: str, value) -> str:
    """How the command line says ``name = value``: ``--epochs 5``, ``--no-shuffle``, ``no --tta``."""
    opt = flag(name)
    if _is_switch(name):
        return opt if value != FIELDS[name].default else f"no {opt}"
    return f"{opt} {value}" if value is not None else f"no {opt}"


def _saved_text(name: str, value) -> str:
    if _is_switch(name):
        return "without it" if value == FIELDS[name].default else flag(name)
    return str(value) if value is not None else FIELDS[name].metadata.get("shown_default", "unset")


def config_differences(saved: dict, wanted: dict) -> list[str]:
    """``wanted``'s fields that differ from the ``saved`` run's, leaving out run control and
    resume-safe fields: ``["--epochs 5 (saved 3)", "--tta (saved without it)"]``."""
    differ = []
    for name, value in wanted.items():
        if name not in FIELDS or name in RUN_CONTROL or name in RESUME_SAFE:
            continue
        old = getattr(TrainConfig(**{name: saved.get(name, FIELDS[name].default)}), name)   # normalised
        new = getattr(TrainConfig(**{name: value}), name)
        if old != new:
            differ.append(f"{flag_text(name, new)} (saved {_saved_text(name, old)})")
    return differ
