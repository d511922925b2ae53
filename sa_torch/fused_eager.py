"""The four passes of the fast SA path in plain torch ops: the readable version, on any device.

:mod:`sa_torch.fused` splits Shuffle Attention into per-channel coefficients (tiny (B, C)
tensors) and four passes over the (B, C, H, W) map, N = H*W. This module writes the passes
with torch ops; :mod:`sa_torch.fused_cpu` (C loops) and :mod:`sa_torch.fused_triton`
(Triton kernels) compute the same four things faster and are checked against it.

- ``stats(x) -> mean, var``: per (b, c), over the N positions of that channel.
- ``gate(x, alpha, beta, out) -> saved``: ``y = x * g``, ``g = sigmoid(alpha x + beta)``,
  written into ``out`` in the shuffled order (y channel ``i*C/2 + j`` goes to output
  channel ``2j + i``); ``saved`` is what the backward passes need besides x: here the gate
  g itself (``STORES_GATE``), in the Triton kernels an empty tensor (they recompute g).
- ``gate_sums(gy, x, alpha, beta, saved) -> sz, szx``: with ``gz = gy * x * g * (1 - g)``
  and gy the output gradient read in y's order, ``sz = sum(gz)``, ``szx = sum(gz * x)``.
- ``gate_dx(gy, x, alpha, beta, saved, u, w, dx)``: ``dx = gy g + alpha gz + u x + w``.

Every pass works on x as it is (NCHW or channels_last): the (B, 2, C/2, H, W) views below
split the channel axis, which is a view in both layouts, and the shuffle is the view
``out.view(B, C/2, 2, H, W).transpose(1, 2)`` of the output, so nothing is copied to
change layout. The coefficients are (B, C) tensors of the compute dtype (float32, or float64
for float64 x); x, gy, out and dx may be float32, float64, bfloat16 or float16.
"""
from __future__ import annotations

import torch


def in_y_order(t: torch.Tensor) -> torch.Tensor:
    """The (B, 2, C/2, H, W) view of a shuffled (B, C, H, W) tensor in y's channel order:
    ``view[:, i, j]`` is channel ``2j + i`` of ``t``."""
    b, c, h, w = t.shape
    return t.view(b, c // 2, 2, h, w).transpose(1, 2)


def _halves(t: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) -> (B, 2, C/2, ...): the two halves of the channel axis, as a view."""
    return t.unflatten(1, (2, t.shape[1] // 2))


def _per_channel(coef: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, 2, C/2, 1, 1), to broadcast against :func:`_halves` of a map."""
    return _halves(coef)[..., None, None]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of statistics and coefficients: float64 for float64 maps, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x.to(compute_dtype(x.dtype)), dim=(2, 3), correction=0)
    return mean, var


STORES_GATE = True


def gate(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Writes out; returns the gate g (B, C, H, W, compute dtype), saved for the backward."""
    x5 = _halves(x).to(alpha.dtype)
    g = torch.empty_like(x, dtype=alpha.dtype)
    torch.sigmoid(torch.addcmul(_per_channel(beta), x5, _per_channel(alpha)), out=_halves(g))
    in_y_order(out).copy_(x5 * _halves(g))
    return g


def gate_sums(gy, x, alpha, beta, saved):
    x5, g = _halves(x).to(alpha.dtype), _halves(saved)
    gz = in_y_order(gy) * x5 * g * (1 - g)
    return gz.sum(dim=(3, 4)).flatten(1), (gz * x5).sum(dim=(3, 4)).flatten(1)


def gate_dx(gy, x, alpha, beta, saved, u, w, dx) -> None:
    x5, g = _halves(x).to(alpha.dtype), _halves(saved)
    gyg = in_y_order(gy) * g
    a = _per_channel(alpha)
    _halves(dx).copy_(gyg + a * gyg * x5 * (1 - g) + _per_channel(u) * x5 + _per_channel(w))
