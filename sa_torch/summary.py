"""Parameters and multiply-adds (MACs) of a model, and the share taken by attention.

What is counted, per image (one MAC = one multiply, one add or one multiply-add):

- Convolutions (1-D and 2-D) and linear layers, through forward hooks:
  ``output elements x (input channels / conv groups) x kernel size`` and
  ``output elements x in_features``. Bias adds are not counted. This is the usual
  convention (torchvision's 4.09 GMACs for ResNet-50), so BatchNorm (folded into the
  convolution at inference), ReLU, the backbone's pooling and the residual add are not
  counted either.
- Attention modules (:data:`sa_torch.attention.ATTENTION_TYPES`) also do element-wise work
  on the whole feature map, which the convention above would hide. It is counted with the
  same unit, for x of shape (B, C, H, W) and N = C*H*W/2 elements per half:

  ============================  =========================================================
  Shuffle Attention             pool N + channel affine C/2 + channel gate N;
                                GroupNorm 4N (mean, variance, normalise, affine) +
                                spatial affine N + spatial gate N
                                -> 4*C*H*W + C/2 (1x1 convs replace the affines when
                                ``conv_affine=True``, GroupNorm goes with ``groupnorm=False``)
  Squeeze-and-Excitation        pool C*H*W + gate C*H*W, plus its two linear layers
  Efficient Channel Attention   pool C*H*W + gate C*H*W, plus its 1-D convolution
  ============================  =========================================================

  Sigmoids and the channel shuffle (a copy, no arithmetic) are not counted.

Every MAC and parameter inside an attention module counts towards the attention share.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import torch
from torch import nn

from .attention import ATTENTION_TYPES, ECABlock, SEBlock
from .layer import SALayer


@dataclass
class Row:
    """One top-level child of the model (``conv1``, ``layer1``, ``fc``, ...)."""

    name: str
    params: int = 0
    macs: int = 0
    attention_params: int = 0
    attention_macs: int = 0


@dataclass
class Summary:
    """Per-image MACs and parameters of a model, by top-level child; totals as properties."""

    name: str
    input_size: tuple[int, ...]
    rows: list[Row] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def attention_params(self) -> int:
        return sum(r.attention_params for r in self.rows)

    @property
    def attention_macs(self) -> int:
        return sum(r.attention_macs for r in self.rows)

    @property
    def attention_param_share(self) -> float:
        return self.attention_params / self.params if self.params else 0.0

    @property
    def attention_mac_share(self) -> float:
        return self.attention_macs / self.macs if self.macs else 0.0

    def __str__(self) -> str:
        total = Row("total", self.params, self.macs, self.attention_params, self.attention_macs)
        header = ("module", "params", "attn params", "MACs", "attn MACs")
        lines = [header] + [(r.name, f"{r.params:,}", f"{r.attention_params:,}", f"{r.macs:,}",
                             f"{r.attention_macs:,}") for r in self.rows + [total]]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

        def fmt(line):
            return "  ".join([line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])])

        rule = "-" * len(fmt(header))
        return "\n".join([f"{self.name}, input {tuple(self.input_size)}, MACs per image", fmt(header), rule]
                         + [fmt(line) for line in lines[1:-1]] + [rule, fmt(lines[-1]),
                         f"attention: {self.attention_param_share:.3%} of parameters, "
                         f"{self.attention_mac_share:.3%} of MACs"])


def layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    """MACs of one convolution or linear layer that produced ``out``."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return out.numel() * (module.in_channels // module.groups) * prod(module.kernel_size)
    return out.numel() * module.in_features


def attention_elementwise_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Element-wise MACs of an attention module on x (B, C, H, W); see the module docstring."""
    b, c = x.shape[:2]
    if isinstance(module, (SEBlock, ECABlock)):
        return 2 * x.numel()                     # pool + gate
    if not isinstance(module, SALayer):
        raise TypeError(f"no MAC formula for {type(module).__name__}")
    half = x.numel() // 2
    macs = 3 * half                              # channel pool, channel gate, spatial gate
    if not module.conv_affine:                   # (else the hooked 1x1 convs count)
        macs += b * c // 2 + half                # channel affine on the pooled values, spatial affine
    if module.gn is not None:
        macs += 4 * half                         # GroupNorm: mean, variance, normalise, affine
    return macs


def _top_level(name: str) -> str:
    return name.split(".")[0] if name else "(model)"


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)   # "" is the root


def summarize(model: nn.Module, input_size=(1, 3, 32, 32), name: str | None = None) -> Summary:
    """Count ``model``'s parameters and per-image MACs with one forward pass on zeros.

    The model runs in eval mode under ``torch.no_grad()`` (BatchNorm statistics are left
    alone); every submodule's training flag is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    input_size = tuple(input_size)
    if len(input_size) < 2 or not all(isinstance(n, int) and n >= 1 for n in input_size):
        raise ValueError(f"input_size={input_size} must be a tuple of positive integers (B, C, ...)")
    attention = [n for n, m in model.named_modules() if isinstance(m, ATTENTION_TYPES)]
    rows: dict[str, Row] = {}

    def row(module_name: str) -> Row:
        key = _top_level(module_name)
        return rows.setdefault(key, Row(key))

    for pname, p in model.named_parameters():
        owner = pname.rpartition(".")[0]
        r = row(owner)
        r.params += p.numel()
        r.attention_params += p.numel() if _inside(owner, attention) else 0

    def count(module_name: str, macs: int) -> None:
        r = row(module_name)
        r.macs += macs
        r.attention_macs += macs if _inside(module_name, attention) else 0

    hooks = []
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, mname=mname: count(mname, layer_macs(mod, out))))
        elif isinstance(m, ATTENTION_TYPES):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, mname=mname: count(mname, attention_elementwise_macs(mod, inp[0]))))
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    x = torch.zeros(input_size, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for m, training in modes.items():
            m.training = training
        for h in hooks:
            h.remove()
    batch = input_size[0]
    for r in rows.values():
        r.macs //= batch
        r.attention_macs //= batch
    order = [n for n, _ in model.named_children()]   # "(model)" (the root's own) comes first
    ordered = sorted(rows.values(), key=lambda r: order.index(r.name) if r.name in order else -1)
    return Summary(name or type(model).__name__, input_size, ordered)


def compare_models(models: dict[str, nn.Module], input_size=(1, 3, 32, 32)) -> str:
    """A markdown table of parameters, MACs and attention shares for several models."""
    lines = ["| model | params | attention params | MACs | attention MACs |",
             "|---|---:|---:|---:|---:|"]
    for name, model in models.items():
        s = summarize(model, input_size, name)
        lines.append(f"| {name} | {s.params:,} | {s.attention_params:,} ({s.attention_param_share:.3%}) "
                     f"| {s.macs:,} | {s.attention_macs:,} ({s.attention_mac_share:.3%}) |")
    return "\n".join(lines)


def main() -> None:
    """``python -m sa_torch.summary``: the tables of docs/results/model_summary.md."""
    import torchvision

    from .models import cifar_resnet, sa_resnet50

    cifar = {f"ResNet-20, {kind}": cifar_resnet(20, kind) for kind in ("none", "sa", "se", "eca")}
    cifar.update({"ResNet-20, sa without GroupNorm": cifar_resnet(20, "sa", sa_groupnorm=False),
                  "ResNet-20, sa with 1x1 conv affines": cifar_resnet(20, "sa", sa_conv_affine=True),
                  "ResNet-56, none": cifar_resnet(56, "none"), "ResNet-56, sa": cifar_resnet(56, "sa")})
    print("CIFAR models (groups=4 for sa), input (1, 3, 32, 32), MACs per image\n")
    print(compare_models(cifar, (1, 3, 32, 32)))
    print("\nImageNet models, input (1, 3, 224, 224)\n")
    print(compare_models({"ResNet-50 (torchvision)": torchvision.models.resnet50(),
                          "SA-ResNet-50 (groups=64)": sa_resnet50()}, (1, 3, 224, 224)))
    print()
    print(summarize(cifar["ResNet-20, sa"], name="SA-ResNet-20 (groups=4)"))


if __name__ == "__main__":
    main()
