"""The four passes of the fast SA path in plain torch ops: the readable version, on any device.

:mod:`sa_torch.fused` splits Shuffle Attention into per-channel coefficients (tiny (B, C)
tensors) and four passes over the (B, C, H, W) map, N = H*W. This module writes the passes
with torch ops; :mod:`sa_torch.fused.cpu` (C loops) and :mod:`sa_torch.fused.triton`
(Triton kernels) compute the same four things faster and are checked against it.

- ``stats(x) -> shift, offset, var``: per (b, c), over the N positions of that channel: its
  first value s, the mean d of ``x - s`` (the mean is ``m = s + d``) and the variance.
- ``gate(x, coef, out) -> g``: ``y = x * g``, ``g = sigmoid(alpha (x - m) + beta)``,
  written into ``out`` in the shuffled order (y channel ``i*C/2 + j`` goes to output
  channel ``2j + i``); g is saved for the backward.
- ``gate_sums(gy, x, coef, g) -> sz, szc``: with ``gz = gy * x * g * (1 - g)`` and gy the
  output gradient read in y's order, ``sz = sum(gz)``, ``szc = sum(gz * (x - m))``.
- ``gate_dx(gy, x, coef, g, sz_n, u, w, dx)``: ``dx = gy g + alpha (gz - Sz/N) + u (x - m) + w``.

``x - m`` is always ``(x - s) - d`` (:func:`_centred`): exact where a channel's values are close
together, where the rounding of m itself would show (r is large there).

:func:`forward` and :func:`backward` put them together with the per-channel coefficients
between them (:func:`channel_vectors`, :func:`parameter_grads`). They are the contract every
backend keeps: ``forward(x, params, groups, eps, out) -> coef, saved`` and
``backward(gy, x, coef, saved, params, groups, dx) -> dparams``, params being one (N_PARAM, K)
tensor, rows cweight, cbias, sweight, sbias, gn.weight, gn.bias, and coef (N_COEF, B, C) the
per-channel coefficients, rows named by :mod:`sa_torch.fused.rows`. :mod:`sa_torch.fused.cpu`
runs each direction as one C function, :mod:`sa_torch.fused.triton` as Triton kernels.

Every pass works on x as it is (NCHW or channels_last): the (B, 2, C/2, H, W) views below
split the channel axis, which is a view in both layouts, and the shuffle is the view
``out.view(B, C/2, 2, H, W).transpose(1, 2)`` of the output, so nothing is copied to
change layout. The coefficients are (B, C) tensors of the compute dtype (float32, or float64
for float64 x); x, gy, out and dx may be float32, float64, bfloat16 or float16.
"""
from __future__ import annotations

import torch

from .rows import Coef, Param


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


def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.to(compute_dtype(x.dtype))
    shift = x[:, :, 0, 0]
    var, offset = torch.var_mean(x - shift[..., None, None], dim=(2, 3), correction=0)
    return shift, offset, var


def _centred(x5: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """x - m as (x - s) - d, for x5 = :func:`_halves` of a map."""
    return (x5 - _per_channel(coef[Coef.SHIFT])).sub_(_per_channel(coef[Coef.OFFSET]))


STORES_GATE = True


def channel_vectors(params: torch.Tensor, groups: int) -> torch.Tensor:
    """(3, C): the A, P, Q vectors of :mod:`sa_torch.fused`, channel order ``(g, i, k)``, from
    params (N_PARAM, K) = cweight, cbias, sweight, sbias, gn.weight, gn.bias as rows."""
    cw, cb, sw, sb, gw, gb = params
    zero = torch.zeros_like(cw)
    apq = torch.stack([zero, sw * gw, cw, zero, cb, torch.addcmul(sb, sw, gb)]).view(3, 1, 2, -1)
    return apq.expand(3, groups, 2, apq.shape[-1]).reshape(3, -1)


def parameter_grads(coef: torch.Tensor, sz: torch.Tensor, szc: torch.Tensor, params: torch.Tensor,
                    groups: int) -> torch.Tensor:
    """(N_PARAM, K), rows as params: dL/dA = r Szc, dL/dP = m Sz, dL/dQ = Sz per (b, c),
    summed over b and the groups, then through A = sweight gn.w, P = cweight, Q = cbias
    (branch 0) or sweight gn.b + sbias (branch 1)."""
    mean, rstd = coef[Coef.SHIFT] + coef[Coef.OFFSET], coef[Coef.RSTD]
    d_a, d_p, d_q = torch.stack([rstd * szc, mean * sz, sz]).sum(1).view(3, groups, 2, -1).sum(1)
    sw, gw, gb = params[Param.SWEIGHT], params[Param.GN_WEIGHT], params[Param.GN_BIAS]
    rows = {Param.CWEIGHT: d_p[0], Param.CBIAS: d_q[0], Param.SWEIGHT: torch.addcmul(d_a[1] * gw, d_q[1], gb),
            Param.SBIAS: d_q[1], Param.GN_WEIGHT: d_a[1] * sw, Param.GN_BIAS: d_q[1] * sw}
    return torch.stack([rows[row] for row in Param])


def forward(x: torch.Tensor, params: torch.Tensor, groups: int, eps: float, out: torch.Tensor):
    """Passes 1-2: writes out; returns coef (N_COEF, B, C) and the gate (saved for the backward)."""
    shift, offset, var = stats(x)
    a, p, q = channel_vectors(params, groups)
    rstd = var.add_(eps).rsqrt_()
    beta = torch.addcmul(q, p, shift + offset)                         # P m + Q
    rows = {Coef.SHIFT: shift, Coef.OFFSET: offset, Coef.RSTD: rstd, Coef.ALPHA: a * rstd, Coef.BETA: beta,
            Coef.P: p.expand_as(rstd)}
    coef = torch.stack([rows[row] for row in Coef])
    return coef, gate(x, coef, out)


def backward(gy, x, coef, saved, params, groups, dx):
    """Passes 3-4: writes dx; returns the parameter gradients (N_PARAM, K)."""
    rstd, alpha, p = coef[Coef.RSTD], coef[Coef.ALPHA], coef[Coef.P]
    sz, szc = gate_sums(gy, x, coef, saved)
    n = x.shape[2] * x.shape[3]
    u = (alpha * rstd).mul_(rstd).mul_(szc).div_(-n)                   # -A r^3 Szc / N
    w = (p * sz).div_(n)                                               # P Sz / N
    gate_dx(gy, x, coef, saved, sz / n, u, w, dx)
    return parameter_grads(coef, sz, szc, params, groups)


def gate(x: torch.Tensor, coef: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Writes out; returns the gate g (B, C, H, W, compute dtype), saved for the backward."""
    x5 = _halves(x).to(coef.dtype)
    g = torch.empty_like(x, dtype=coef.dtype)
    z = torch.addcmul(_per_channel(coef[Coef.BETA]), _centred(x5, coef), _per_channel(coef[Coef.ALPHA]))
    torch.sigmoid(z, out=_halves(g))
    in_y_order(out).copy_(x5 * _halves(g))
    return g


def _gz(gy, x5, g):
    """gz = gy x g (1 - g), (B, 2, C/2, H, W): the same roundings in both backward passes, so that
    gz - Sz/N is exactly 0 where N = 1."""
    return in_y_order(gy) * x5 * g * (1 - g)


def gate_sums(gy, x, coef, saved):
    x5, g = _halves(x).to(coef.dtype), _halves(saved)
    gz = _gz(gy, x5, g)
    return gz.sum(dim=(3, 4)).flatten(1), (gz * _centred(x5, coef)).sum(dim=(3, 4)).flatten(1)


def gate_dx(gy, x, coef, saved, sz_n, u, w, dx) -> None:
    x5, g = _halves(x).to(coef.dtype), _halves(saved)
    gz = _gz(gy, x5, g)
    gz = torch.addcmul(in_y_order(gy) * g, _per_channel(coef[Coef.ALPHA]), gz - _per_channel(sz_n))
    _halves(dx).copy_(gz.addcmul_(_per_channel(u), _centred(x5, coef)).add_(_per_channel(w)))
