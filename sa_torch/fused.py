"""Shuffle Attention as one hand-derived autograd function, for training on the CPU.

:class:`sa_torch.SALayer` computes the official layer op by op (reshape, chunk, mean,
GroupNorm, sigmoid, cat, shuffle) and lets autograd run them backwards. On a CPU, where
these ops are bound by memory traffic, that is slow: every op writes a fresh tensor,
GroupNorm copies its non-contiguous half-group input, and ``cat``, the shuffle and the
backward of ``chunk`` copy the whole map again. :func:`shuffle_attention` computes the
same maths with two full-size writes in the forward pass (the gate and the output) and
has its backward written out by hand.

The idea: after the grouping, both gates are per-channel functions of one channel of one
sample. With the (B, C, H, W) input seen as ``X`` (B, G, 2, K, N), N = H*W (branch 0 =
channel gate, branch 1 = spatial gate), every position gets

    z = a * (x - mean) + d,     gate = sigmoid(z),     y = x * gate,     out = shuffle(y)

    branch 0 (channel):  a = 0                      d = cweight * mean + cbias
    branch 1 (spatial):  a = sweight * gn.w * rstd  d = sweight * gn.b + sbias

where ``mean`` and ``rstd = 1/sqrt(var + eps)`` are per (b, g, branch, k): GroupNorm with
K groups on K channels normalises each channel on its own. The shuffle costs nothing
extra: the last multiplication writes straight into the shuffled positions.

Backward, with ``gy`` the output gradient seen in y's channel order and sums over the N
positions of one channel:

    gz = gy * x * gate * (1 - gate),   Sz = sum(gz),   Szx = sum(gz * x)
    dx = gy * gate + a * gz + beta * x + alpha

    branch 0:  beta = 0,   alpha = cweight * Sz / N                    (through the mean)
    branch 1:  beta = -A rstd^3 (Szx - mean Sz) / N,   alpha = -A rstd Sz / N - beta mean
               with A = sweight * gn.w                           (through mean and rstd)

and the parameter gradients are sums of Sz, Szx and the means over (b, g). The tests
check all of it against autograd through the official ops in float64 (1e-10).

Only the official configuration has this form, on CPU tensors of float32 or float64
outside autocast and ``torch.compile``; :meth:`SALayer.forward` uses it where
:func:`fused_applies` says so and the op-by-op layer everywhere else (CUDA included).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def fused_applies(layer, x: torch.Tensor) -> bool:
    """Whether :func:`shuffle_attention` computes ``layer(x)`` here (else the op-by-op path)."""
    return (layer.shuffle and layer.gn is not None and not layer.conv_affine
            and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and layer.cweight.dtype == x.dtype
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def shuffle_attention(layer, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for an official-configuration :class:`sa_torch.SALayer`: (B, C, H, W) -> same."""
    return _ShuffleAttention.apply(x.contiguous(), layer.cweight, layer.cbias, layer.sweight, layer.sbias,
                                   layer.gn.weight, layer.gn.bias, layer.groups, layer.gn.eps)


def _shuffled(t: torch.Tensor, b: int, c: int, n: int) -> torch.Tensor:
    """The (B, 2, C/2, N) view of a (B, C, H, W) output in y's channel order: channel
    ``i*C/2 + j`` of y is channel ``2j + i`` of the shuffled output."""
    return t.view(b, c // 2, 2, n).permute(0, 2, 1, 3)


class _ShuffleAttention(torch.autograd.Function):
    """apply(x (B, C, H, W) contiguous, cweight, cbias, sweight, sbias (1, K, 1, 1),
    gn_weight, gn_bias (K,), groups, eps) -> out (B, C, H, W); the maths in the module docstring."""

    @staticmethod
    def forward(ctx, x, cweight, cbias, sweight, sbias, gn_weight, gn_bias, groups, eps):
        b, c, h, w = x.shape
        k, n = c // (2 * groups), h * w
        X = x.view(b, groups, 2, k, n)
        cw, cb, sw, sb, gw, gb = (p.reshape(k) for p in (cweight, cbias, sweight, sbias, gn_weight, gn_bias))
        mean = X.mean(dim=-1)                                            # (B, G, 2, K)
        gate = torch.empty_like(X)
        # channel branch: one gate value per channel
        gate[:, :, 0] = torch.sigmoid(cw * mean[:, :, 0] + cb)[..., None]
        # spatial branch: z = (x - mean) * a + d, computed in place in its half of `gate`
        z = torch.sub(X[:, :, 1], mean[:, :, 1, :, None], out=gate[:, :, 1])
        rstd = torch.linalg.vector_norm(z, dim=-1).square_().div_(n).add_(eps).rsqrt_()   # (B, G, K)
        a = sw * gw * rstd
        torch.addcmul((sw * gb + sb)[..., None], z, a[..., None], out=z).sigmoid_()
        out = torch.empty_like(x)
        torch.mul(x.view(b, 2, c // 2, n), gate.view(b, 2, c // 2, n), out=_shuffled(out, b, c, n))
        ctx.save_for_backward(x, gate, mean, rstd, a, cw, sw, gw, gb)
        ctx.groups = groups
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, gate, mean, rstd, a, cw, sw, gw, gb = ctx.saved_tensors
        b, c, h, w = x.shape
        k, n = c // (2 * ctx.groups), h * w
        X = x.view(b, ctx.groups, 2, k, n)
        dx = torch.empty_like(X)                                         # starts as gy * gate
        torch.mul(_shuffled(grad_out.contiguous(), b, c, n), gate.view(b, 2, c // 2, n),
                  out=dx.view(b, 2, c // 2, n))
        gz = dx * X
        gz.addcmul_(gz, gate, value=-1)                                  # gy * x * gate * (1 - gate)
        sz = gz.sum(dim=-1)                                              # (B, G, 2, K)
        sz0, sz1, m0, m1 = sz[:, :, 0], sz[:, :, 1], mean[:, :, 0], mean[:, :, 1]
        dx[:, :, 1].addcmul_(gz[:, :, 1], a[..., None])
        szx1 = gz[:, :, 1].mul_(X[:, :, 1]).sum(dim=-1)                  # (the last use of gz)
        centred = szx1 - m1 * sz1                                        # sum(gz * (x - mean))
        nsum = (rstd * centred).sum(dim=(0, 1))                          # sum(gz * GroupNorm(x))
        sz1_total = sz1.sum(dim=(0, 1))
        amp = sw * gw
        beta = -amp * rstd ** 3 * centred / n
        alpha = torch.stack([cw * sz0 / n, -amp * rstd * sz1 / n - beta * m1], dim=2)
        dx[:, :, 1].addcmul_(X[:, :, 1], beta[..., None])
        dx.add_(alpha[..., None])
        d_cweight, d_cbias = (sz0 * m0).sum(dim=(0, 1)), sz0.sum(dim=(0, 1))
        d_sweight, d_sbias = gw * nsum + gb * sz1_total, sz1_total
        per_channel = [g.view(1, k, 1, 1) for g in (d_cweight, d_cbias, d_sweight, d_sbias)]
        return (dx.view(b, c, h, w), *per_channel, sw * nsum, sw * sz1_total, None, None)
