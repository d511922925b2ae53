"""Your NumPy layer inside a PyTorch network: it trains SA-ResNet-20 next to the torch layer.

The finale of exercise 05. :class:`NumpySAFunction` is a ``torch.autograd.Function``
whose forward calls *your* ``sa_forward`` and whose backward calls *your* ``sa_backward``
(float64 NumPy arrays in and out). :class:`NumpySALayer` holds the six parameters under
the official names (``cweight cbias sweight sbias gn.weight gn.bias``), so it takes the
state dict of a :class:`sa_torch.SALayer` unchanged. :func:`use_numpy_layers` swaps every
torch SA layer of a model for one of these, and :func:`check_training` trains two copies
of SA-ResNet-20 from the same initial weights on the same batches, one with the torch
layers and one with yours, and compares their losses step by step.

Shapes: x, out, dx (B, C, H, W); cweight, cbias, sweight, sbias (1, K, 1, 1);
gn.weight, gn.bias (K,); K = C // (2G).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sa_numpy import PARAM_NAMES
from sa_torch import SALayer as TorchSALayer

#: Largest relative difference between the two loss curves that still counts as "trained
#: identically". Both runs are float64; the NumPy and torch layers round differently in the
#: last bits, and training carries those differences along (measured with sa_numpy's own
#: functions: below 1e-14 over the 20 steps of check_training). A missing gradient term was
#: off by 1e-2 at step 2.
RTOL = 1e-6


class NumpySAFunction(torch.autograd.Function):
    """Shuffle Attention through a NumPy ``forward_fn(x, params, groups, eps) -> (out, cache)``
    and ``backward_fn(dout, cache) -> (dx, grads)``, as one autograd node."""

    @staticmethod
    def forward(ctx, x, cweight, cbias, sweight, sbias, gn_weight, gn_bias, functions, groups, eps):
        forward_fn, backward_fn = functions
        tensors = (cweight, cbias, sweight, sbias, gn_weight, gn_bias)
        params = {name: t.detach().cpu().numpy().copy() for name, t in zip(PARAM_NAMES, tensors)}
        out, cache = forward_fn(x.detach().cpu().numpy().copy(), params, groups, eps)
        ctx.cache, ctx.backward_fn = cache, backward_fn
        ctx.shapes = [t.shape for t in tensors]
        return _tensor(out, "out", x)

    @staticmethod
    def backward(ctx, dout):
        dx, grads = ctx.backward_fn(dout.detach().cpu().numpy().copy(), ctx.cache)
        ctx.cache = None
        param_grads = [_tensor(grads[name], f"grads[{name!r}]", dout).reshape(shape)
                       for name, shape in zip(PARAM_NAMES, ctx.shapes)]
        return (_tensor(dx, "dx", dout), *param_grads, None, None, None)


def _tensor(array, name: str, like: torch.Tensor) -> torch.Tensor:
    """A NumPy result as a new tensor of ``like``'s dtype and device."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name}: your function returned {type(array).__name__}, expected a numpy.ndarray")
    return torch.from_numpy(np.array(array, dtype=np.float64)).to(dtype=like.dtype, device=like.device)


class NumpySALayer(nn.Module):
    """A drop-in for :class:`sa_torch.SALayer` that computes with NumPy functions.

    Same parameters, same names and shapes (``cweight``... as ``(1, K, 1, 1)``, ``gn`` a
    ``GroupNorm(K, K)`` whose ``weight`` and ``bias`` it holds), so ``load_state_dict``
    takes a torch SA layer's state dict. Only float64 inputs: the point is an exact check.
    """

    def __init__(self, channels: int, groups: int, forward_fn, backward_fn, eps: float = 1e-5):
        super().__init__()
        k = channels // (2 * groups)
        self.channels, self.groups, self.eps = channels, groups, eps
        self.functions = (forward_fn, backward_fn)
        self.cweight = nn.Parameter(torch.zeros(1, k, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, k, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, k, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, k, 1, 1))
        self.gn = nn.GroupNorm(k, k, eps=eps)

    def extra_repr(self) -> str:
        names = ", ".join(getattr(f, "__name__", "?") for f in self.functions)
        return f"channels={self.channels}, groups={self.groups}, NumPy functions: {names}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float64:
            raise TypeError(f"NumpySALayer computes in float64 only, got {x.dtype}: call model.double()")
        return NumpySAFunction.apply(x, self.cweight, self.cbias, self.sweight, self.sbias,
                                     self.gn.weight, self.gn.bias, self.functions, self.groups, self.eps)


def use_numpy_layers(model: nn.Module, forward_fn, backward_fn) -> int:
    """Replace every :class:`sa_torch.SALayer` in ``model`` (in place) by a
    :class:`NumpySALayer` with the same parameters. Returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TorchSALayer):
                layer = NumpySALayer(child.channels, child.groups, forward_fn, backward_fn, child.gn.eps)
                layer.to(next(child.parameters()).dtype)       # before loading: no rounding to float32
                layer.load_state_dict(child.state_dict())
                setattr(parent, name, layer)
                replaced += 1
    return replaced


@dataclass
class TrainingComparison:
    """The two loss curves, one value per step, and how far apart they are."""
    torch_losses: np.ndarray      # (steps,)
    numpy_losses: np.ndarray      # (steps,)
    layers: int                   # SA layers that ran your code
    rtol: float = RTOL

    @property
    def rel_diff(self) -> np.ndarray:
        """|yours - torch| / |torch| at every step."""
        return np.abs(self.numpy_losses - self.torch_losses) / np.abs(self.torch_losses)

    @property
    def max_rel_diff(self) -> float:
        return float(np.max(self.rel_diff))

    @property
    def identical(self) -> bool:
        return bool(np.all(np.isfinite(self.numpy_losses)) and self.max_rel_diff <= self.rtol)


def _toy_batches(steps: int, batch_size: int, image_size: int, seed: int):
    """``steps`` batches of normalised float64 images (B, 3, image_size, image_size) and labels
    (B,) from :func:`sa_torch.train.data.toy_cifar` (average-pooled from 32 x 32), seeded."""
    from sa_torch.train.data import MEAN, STD, toy_cifar

    if image_size < 8 or 32 % image_size:
        raise ValueError(f"image_size={image_size} must divide 32 and be at least 8 (ResNet-20 halves it twice)")
    data = toy_cifar(train_per_class=-(-steps * batch_size // 10), test_per_class=0, seed=seed)
    x = torch.from_numpy(data.train_x).permute(0, 3, 1, 2).double() / 255.0
    x = (x - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    x = F.avg_pool2d(x, 32 // image_size)
    y = torch.from_numpy(data.train_y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return [(x[idx], y[idx]) for idx in order[: steps * batch_size].view(steps, batch_size)]


def train_side_by_side(forward_fn, backward_fn, steps: int = 20, batch_size: int = 8, image_size: int = 16,
                       seed: int = 0, lr: float = 0.02) -> TrainingComparison:
    """Train SA-ResNet-20 twice in float64 from the same initial weights on the same batches:
    with the torch SA layers (the official ops through autograd) and with your NumPy layers.

    The SA parameters start at random values, not at the official ``cweight = sweight = 0``,
    which would cut the gradient paths through the pooling and the GroupNorm (and hide a
    wrong backward there) for the first steps.
    """
    from sa_torch.models import build_model

    torch.manual_seed(seed)
    reference = build_model("resnet20", "sa", groups=4, sa_fused=False).double()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, TorchSALayer):
                for value in module.parameters():
                    value.normal_()
    yours = copy.deepcopy(reference)
    layers = use_numpy_layers(yours, forward_fn, backward_fn)
    if list(yours.state_dict()) != list(reference.state_dict()):
        raise RuntimeError("the network with NumPy layers has other parameter names than the torch one")
    batches = _toy_batches(steps, batch_size, image_size, seed)
    curves = []
    for model in (reference, yours):
        model.train()
        optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        losses = []
        for images, labels in batches:
            loss = F.cross_entropy(model(images), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        curves.append(np.array(losses))
    return TrainingComparison(curves[0], curves[1], layers)


def plot_losses(result: TrainingComparison):
    """The two loss curves on top of each other, and their relative difference per step."""
    from .viz import figure, label_axes

    fig, axes = figure(1, 2, width=4.6, height=3.2)
    steps = np.arange(1, len(result.torch_losses) + 1)
    ax = axes[0, 0]
    ax.plot(steps, result.torch_losses, lw=3, alpha=0.5, label="torch SA layers")
    ax.plot(steps, result.numpy_losses, "k--", lw=1, label="your NumPy SA layers")
    ax.legend(fontsize=8)
    label_axes(ax, "SA-ResNet-20, float64, same batches", "step", "training loss")
    ax = axes[0, 1]
    ax.semilogy(steps, np.maximum(result.rel_diff, 1e-17), "o-", ms=3)
    ax.axhline(result.rtol, color="red", ls=":", label=f"tolerance {result.rtol:g}")
    ax.legend(fontsize=8)
    label_axes(ax, "how far apart the curves are", "step", "|yours - torch| / |torch|")
    return fig


def check_training(forward_fn, backward_fn, steps: int = 20, batch_size: int = 8, image_size: int = 16,
                   seed: int = 0, plot: bool = True) -> None:
    """Train with your ``sa_forward`` / ``sa_backward`` next to the torch layer, show the two
    loss curves (``plot``) and print the verdict.

    Raises AssertionError when the curves differ by more than :data:`RTOL` (relative, at any
    step), after showing them.
    """
    from .viz import upper_bound

    result = train_side_by_side(forward_fn, backward_fn, steps, batch_size, image_size, seed)
    if plot:
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = plot_losses(result)
        display(fig)          # shown under any matplotlib backend, then closed so it shows once
        plt.close(fig)
    where = f"{result.layers} SA layers, {steps} steps of batch {batch_size}, float64"
    if result.identical:
        print(f"Your layer trained SA-ResNet-20 exactly like the torch layer ({where}): the losses "
              f"agree to {upper_bound(max(result.max_rel_diff, 1e-16))} relative (tolerance {RTOL:g}).")
        return
    first = int(np.argmax(~(result.rel_diff <= RTOL)))
    raise AssertionError(
        f"Your layer trains SA-ResNet-20 differently from the torch layer ({where}): the losses "
        f"differ by up to {result.max_rel_diff:.1e} relative (tolerance {RTOL:g}), first at step {first + 1}: "
        f"yours {result.numpy_losses[first]:.6g}, torch {result.torch_losses[first]:.6g}."
        + ("\n  hint: step 1's loss is the forward alone: your sa_forward differs" if first == 0 else
           "\n  hint: step 1 agrees, so the forward is right and a gradient is wrong: run "
           "check_sa_layer(sa_forward, sa_backward) to find which one"))
