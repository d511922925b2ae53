"""The four passes of the fast SA path as Triton kernels, for CUDA.

Same contract as :mod:`sa_torch.fused_eager` (the readable version): x is (B, C, H, W),
float32, bfloat16 or float16, dense in NCHW or channels_last; N = H*W; the coefficients
are float32 (B, C) tensors. Every kernel reads x through its strides ``(s_b, s_c, s_n)``
(NCHW: ``(C N, N, 1)``; channels_last: ``(N C, 1, C)``), so one kernel serves both
layouts, and a tile is ``BLOCK_C`` channels by ``BLOCK_N`` positions: long along the
positions for NCHW, wide along the channels for channels_last, so that loads coalesce.

- ``_stats_kernel``: one program per (b, channel block) walks the N positions and sums
  ``x - x[first]`` and its square in float32 (shifted sums: a mean far from zero costs
  no accuracy); mean and var out.
- ``_gate_kernel``: one program per (b, channel block, position block) computes
  ``x * sigmoid(alpha x + beta)`` and stores it at the shuffled channel ``2j + i``.
- ``_sums_kernel``: like the statistics, over ``gz = gy x g (1 - g)``, gy read at the
  shuffled channel; g is recomputed (cheaper on a GPU than storing it).
- ``_dx_kernel``: like the gate, ``dx = gy g (1 + alpha x (1 - g)) + u x + w``.

Math in float32, loads and stores in the tensors' dtypes; :func:`forward` and :func:`backward`
put the passes together as :mod:`sa_torch.fused_eager` does. With ``TRITON_INTERPRET=1`` set
before triton is imported the kernels run on CPU tensors (the tests do this).
"""
import sys

import torch
import triton
import triton.language as tl

from . import fused_eager

STORES_GATE = False


@triton.jit
def _shuffled(c, C):
    """Output channel of y channel c (the channel shuffle with 2 groups)."""
    half = C // 2
    return tl.where(c < half, 2 * c, 2 * (c - half) + 1)


@triton.jit
def _stats_kernel(x_ptr, mean_ptr, var_ptr, C, N, s_b, s_c, s_n,
                  BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    row = x_ptr + b * s_b + c[:, None] * s_c
    shift = tl.load(x_ptr + b * s_b + c * s_c, mask=c_ok, other=0.0).to(tl.float32)
    acc1 = tl.zeros([BLOCK_C, BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_C, BLOCK_N], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        ok = c_ok[:, None] & (n[None, :] < N)
        v = tl.load(row + n[None, :] * s_n, mask=ok, other=0.0).to(tl.float32)
        d = tl.where(ok, v - shift[:, None], 0.0)
        acc1 += d
        acc2 += d * d
    m = tl.sum(acc1, axis=1) / N
    tl.store(mean_ptr + b * C + c, shift + m, mask=c_ok)
    tl.store(var_ptr + b * C + c, tl.maximum(tl.sum(acc2, axis=1) / N - m * m, 0.0), mask=c_ok)


@triton.jit
def _gate_kernel(x_ptr, alpha_ptr, beta_ptr, out_ptr, C, N, s_b, s_c, s_n,
                 BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ok = c < C
    ok = c_ok[:, None] & (n[None, :] < N)
    a = tl.load(alpha_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    t = tl.load(beta_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    v = tl.load(x_ptr + b * s_b + c[:, None] * s_c + n[None, :] * s_n, mask=ok, other=0.0).to(tl.float32)
    y = v * tl.sigmoid(a * v + t)
    dst = out_ptr + b * s_b + _shuffled(c, C)[:, None] * s_c + n[None, :] * s_n
    tl.store(dst, y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _sums_kernel(gy_ptr, x_ptr, alpha_ptr, beta_ptr, sz_ptr, szx_ptr, C, N, s_b, s_c, s_n,
                 BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    a = tl.load(alpha_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    t = tl.load(beta_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    x_row = x_ptr + b * s_b + c[:, None] * s_c
    gy_row = gy_ptr + b * s_b + _shuffled(c, C)[:, None] * s_c
    acc1 = tl.zeros([BLOCK_C, BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_C, BLOCK_N], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        ok = c_ok[:, None] & (n[None, :] < N)
        v = tl.load(x_row + n[None, :] * s_n, mask=ok, other=0.0).to(tl.float32)
        d = tl.load(gy_row + n[None, :] * s_n, mask=ok, other=0.0).to(tl.float32)
        g = tl.sigmoid(a * v + t)
        gz = d * v * g * (1 - g)                     # 0 where masked: d = 0 there
        acc1 += gz
        acc2 += gz * v
    tl.store(sz_ptr + b * C + c, tl.sum(acc1, axis=1), mask=c_ok)
    tl.store(szx_ptr + b * C + c, tl.sum(acc2, axis=1), mask=c_ok)


@triton.jit
def _dx_kernel(gy_ptr, x_ptr, alpha_ptr, beta_ptr, u_ptr, w_ptr, dx_ptr, C, N, s_b, s_c, s_n,
               BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ok = c < C
    ok = c_ok[:, None] & (n[None, :] < N)
    a = tl.load(alpha_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    t = tl.load(beta_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    u = tl.load(u_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    w = tl.load(w_ptr + b * C + c, mask=c_ok, other=0.0)[:, None]
    here = b * s_b + c[:, None] * s_c + n[None, :] * s_n
    v = tl.load(x_ptr + here, mask=ok, other=0.0).to(tl.float32)
    d = tl.load(gy_ptr + b * s_b + _shuffled(c, C)[:, None] * s_c + n[None, :] * s_n, mask=ok,
                other=0.0).to(tl.float32)
    g = tl.sigmoid(a * v + t)
    dx = d * g * (1 + a * v * (1 - g)) + u * v + w
    tl.store(dx_ptr + here, dx.to(dx_ptr.dtype.element_ty), mask=ok)


def _geometry(x: torch.Tensor):
    """(C, N, s_b, s_c, s_n) and the tile (BLOCK_C, BLOCK_N) for x's layout."""
    b, c, h, w = x.shape
    s_b, s_c, _, s_n = x.stride()
    if x.is_contiguous():
        block_c, block_n = 2, min(1024, triton.next_power_of_2(h * w))
    else:
        block_c = min(64, triton.next_power_of_2(c))
        block_n = min(max(1, 4096 // block_c), triton.next_power_of_2(h * w))
    return (c, h * w, s_b, s_c, s_n), (block_c, block_n)


def stats(x: torch.Tensor):
    args, (bc, bn) = _geometry(x)
    mean, var = (torch.empty(x.shape[:2], dtype=torch.float32, device=x.device) for _ in range(2))
    _stats_kernel[(x.shape[0], triton.cdiv(args[0], bc))](x, mean, var, *args, BLOCK_C=bc, BLOCK_N=bn)
    return mean, var


def gate(x, alpha, beta, out):
    args, (bc, bn) = _geometry(x)
    grid = (x.shape[0], triton.cdiv(args[0], bc), triton.cdiv(args[1], bn))
    _gate_kernel[grid](x, alpha, beta, out, *args, BLOCK_C=bc, BLOCK_N=bn)
    return x.new_empty(0, dtype=torch.float32)       # nothing saved: the backward recomputes g


def gate_sums(gy, x, alpha, beta, saved):
    args, (bc, bn) = _geometry(x)
    sz, szx = (torch.empty(x.shape[:2], dtype=torch.float32, device=x.device) for _ in range(2))
    _sums_kernel[(x.shape[0], triton.cdiv(args[0], bc))](gy, x, alpha, beta, sz, szx, *args,
                                                         BLOCK_C=bc, BLOCK_N=bn)
    return sz, szx


def gate_dx(gy, x, alpha, beta, saved, u, w, dx):
    args, (bc, bn) = _geometry(x)
    grid = (x.shape[0], triton.cdiv(args[0], bc), triton.cdiv(args[1], bn))
    _dx_kernel[grid](gy, x, alpha, beta, u, w, dx, *args, BLOCK_C=bc, BLOCK_N=bn)


def forward(x, params, groups, eps, out):
    return fused_eager.forward_with(sys.modules[__name__], x, params, groups, eps, out)


def backward(gy, x, coef, saved, params, groups, dx):
    return fused_eager.backward_with(sys.modules[__name__], gy, x, coef, saved, params, groups, dx)
