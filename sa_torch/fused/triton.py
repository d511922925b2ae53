"""The fast SA path as Triton kernels, for CUDA: four passes, the coefficients computed inside.

Same contract as :mod:`sa_torch.fused.cpu`: ``forward(x, params, groups, eps, out)`` writes
out and returns coef (N_COEF, B, C) = shift, offset, rstd, alpha, beta, P (and an empty tensor:
nothing else is saved, the backward recomputes the gate, cheaper on a GPU than storing it);
``backward(gy, x, coef, saved, params, groups, dx)`` writes dx and returns the parameter
gradients (N_PARAM, K). x is (B, C, H, W), float32, bfloat16 or float16, dense in NCHW or
channels_last, N = H*W; params are float32 (N_PARAM, K), rows cweight, cbias, sweight, sbias,
gn.weight, gn.bias. The maths is :mod:`sa_torch.fused`'s; :mod:`sa_torch.fused.eager` is
the readable version.

Every kernel reads the map through its strides ``(s_b, s_c, s_n)`` (NCHW: ``(C N, N, 1)``;
channels_last: ``(N C, 1, C)``, from the layout and the shape: PyTorch leaves the stride of a
size-1 dimension free), so one kernel serves both layouts; a tile is ``BLOCK_C``
channels by ``BLOCK_N`` positions, long along the positions for NCHW and wide along the
channels for channels_last, so that loads coalesce.

- ``_stats_kernel``: a program per (b, channel block) walks the N positions summing
  ``x - s``, s = x[first], and its square in float32 (shifted sums: a mean far from zero costs
  no accuracy), then writes the coefficients of its channels; ``x - m`` is ``(x - s) - d``
  everywhere, d = m - s (:func:`_centred`).
- ``_gate_kernel``: a program per (b, channel block, position block) stores
  ``x * sigmoid(alpha (x - m) + beta)`` at the shuffled channel ``2j + i``.
- ``_sums_kernel``: like the statistics, Sz and Szc over ``gz = gy x g (1 - g)`` (gy read at
  the shuffled channel, g recomputed), then u and w of ``dx = gy g + alpha (gz - Sz/N) +
  u (x - m) + w``.
- ``_dx_kernel``: like the gate, dx (gz computed as in the sums, so that ``gz - Sz/N`` is 0
  where N = 1).
- ``_param_grads_kernel``: a program per k sums over samples and groups (fixed order).

Math in float32, loads and stores in the tensors' dtypes (a narrowing store rounds to nearest
even). Every launch runs on x's device (``torch.cuda.device``: a launch goes to the current
device, whatever its pointers). With ``TRITON_INTERPRET=1`` set before triton is imported the
kernels run on CPU tensors (the tests do this).
"""
import contextlib

import torch
import triton
import triton.language as tl

from .rows import Coef, Grad, Param

STORES_GATE = False
# The rows of params, coef and grads (see sa_torch.fused.rows), as constants a kernel can read
(PARAM_CWEIGHT, PARAM_CBIAS, PARAM_SWEIGHT, PARAM_SBIAS, PARAM_GN_WEIGHT,
 PARAM_GN_BIAS) = (tl.constexpr(int(row)) for row in Param)
COEF_SHIFT, COEF_OFFSET, COEF_RSTD, COEF_ALPHA, COEF_BETA, COEF_P = (tl.constexpr(int(r)) for r in Coef)
GRAD_SZ, GRAD_SZC, GRAD_U, GRAD_W = (tl.constexpr(int(row)) for row in Grad)


@triton.jit
def _shuffled(c, C):
    """Output channel of y channel c (the channel shuffle with 2 groups)."""
    half = C // 2
    return tl.where(c < half, 2 * c, 2 * (c - half) + 1)


@triton.jit
def _centred(v, s, d):
    """x - m as (x - s) - d: exact where a channel's values are close together (r large there)."""
    return (v - s) - d


@triton.jit
def _stats_kernel(x_ptr,                    # (B, C, H, W) x's dtype, strides (s_b, s_c, s_n)
                  pr_ptr,                   # (N_PARAM, K) float32
                  coef_ptr,                 # (N_COEF, B, C) float32, written
                  B, C, N, K,               # N = H*W, K = C // (2 groups)
                  eps,                      # GroupNorm's eps
                  s_b, s_c, s_n,            # strides of a sample, a channel, a position (N = H*W)
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
    offset = tl.sum(acc1, axis=1) / N               # d = m - s
    rstd = 1.0 / tl.sqrt(tl.maximum(tl.sum(acc2, axis=1) / N - offset * offset, 0.0) + eps)
    j = c % K                                       # A, P, Q of the channels, from the parameters
    spatial = (c // K) % 2 == 1
    sw = tl.load(pr_ptr + PARAM_SWEIGHT * K + j, mask=c_ok, other=0.0)
    a = tl.where(spatial, sw * tl.load(pr_ptr + PARAM_GN_WEIGHT * K + j, mask=c_ok, other=0.0), 0.0)
    p = tl.where(spatial, 0.0, tl.load(pr_ptr + PARAM_CWEIGHT * K + j, mask=c_ok, other=0.0))
    sb = tl.load(pr_ptr + PARAM_SBIAS * K + j, mask=c_ok, other=0.0)
    q = tl.where(spatial, sw * tl.load(pr_ptr + PARAM_GN_BIAS * K + j, mask=c_ok, other=0.0) + sb,
                 tl.load(pr_ptr + PARAM_CBIAS * K + j, mask=c_ok, other=0.0))
    at = coef_ptr + b * C + c
    tl.store(at + COEF_SHIFT * B * C, shift, mask=c_ok)
    tl.store(at + COEF_OFFSET * B * C, offset, mask=c_ok)
    tl.store(at + COEF_RSTD * B * C, rstd, mask=c_ok)
    tl.store(at + COEF_ALPHA * B * C, a * rstd, mask=c_ok)
    tl.store(at + COEF_BETA * B * C, p * (shift + offset) + q, mask=c_ok)
    tl.store(at + COEF_P * B * C, p, mask=c_ok)


@triton.jit
def _gate_kernel(x_ptr,                     # (B, C, H, W) x's dtype, strides (s_b, s_c, s_n)
                 coef_ptr,                  # (N_COEF, B, C) float32
                 out_ptr,                   # (B, C, H, W) x's dtype and strides, written
                 B, C, N,                   # N = H*W
                 s_b, s_c, s_n,             # strides of a sample, a channel, a position
                 BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ok = c < C
    ok = c_ok[:, None] & (n[None, :] < N)
    at = coef_ptr + b * C + c
    s = tl.load(at + COEF_SHIFT * B * C, mask=c_ok, other=0.0)[:, None]
    dm = tl.load(at + COEF_OFFSET * B * C, mask=c_ok, other=0.0)[:, None]
    a = tl.load(at + COEF_ALPHA * B * C, mask=c_ok, other=0.0)[:, None]
    t = tl.load(at + COEF_BETA * B * C, mask=c_ok, other=0.0)[:, None]
    v = tl.load(x_ptr + b * s_b + c[:, None] * s_c + n[None, :] * s_n, mask=ok, other=s).to(tl.float32)
    y = v * tl.sigmoid(a * _centred(v, s, dm) + t)
    dst = out_ptr + b * s_b + _shuffled(c, C)[:, None] * s_c + n[None, :] * s_n
    tl.store(dst, y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _sums_kernel(gy_ptr,                    # (B, C, H, W) the output's gradient, x's dtype and strides
                 x_ptr,                     # (B, C, H, W) x's dtype, strides (s_b, s_c, s_n)
                 coef_ptr,                  # (N_COEF, B, C) float32
                 grads_ptr,                 # (N_GRAD, B, C) float32, written
                 B, C, N,                   # N = H*W
                 s_b, s_c, s_n,             # strides of a sample, a channel, a position
                 BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    at = b * C + c
    s = tl.load(coef_ptr + COEF_SHIFT * B * C + at, mask=c_ok, other=0.0)[:, None]
    dm = tl.load(coef_ptr + COEF_OFFSET * B * C + at, mask=c_ok, other=0.0)[:, None]
    a = tl.load(coef_ptr + COEF_ALPHA * B * C + at, mask=c_ok, other=0.0)
    t = tl.load(coef_ptr + COEF_BETA * B * C + at, mask=c_ok, other=0.0)
    x_row = x_ptr + b * s_b + c[:, None] * s_c
    gy_row = gy_ptr + b * s_b + _shuffled(c, C)[:, None] * s_c
    acc1 = tl.zeros([BLOCK_C, BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_C, BLOCK_N], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        ok = c_ok[:, None] & (n[None, :] < N)
        v = tl.load(x_row + n[None, :] * s_n, mask=ok, other=s).to(tl.float32)   # masked: x = s, a finite z
        d = tl.load(gy_row + n[None, :] * s_n, mask=ok, other=0.0).to(tl.float32)
        xc = _centred(v, s, dm)
        g = tl.sigmoid(a[:, None] * xc + t[:, None])
        gz = d * v * g * (1 - g)                     # 0 where masked: d = 0 there
        acc1 += gz
        acc2 += gz * xc
    sz, szc = tl.sum(acc1, axis=1), tl.sum(acc2, axis=1)
    rstd = tl.load(coef_ptr + COEF_RSTD * B * C + at, mask=c_ok, other=0.0)
    p = tl.load(coef_ptr + COEF_P * B * C + at, mask=c_ok, other=0.0)
    tl.store(grads_ptr + GRAD_SZ * B * C + at, sz, mask=c_ok)
    tl.store(grads_ptr + GRAD_SZC * B * C + at, szc, mask=c_ok)
    tl.store(grads_ptr + GRAD_U * B * C + at, -a * rstd * rstd * szc / N, mask=c_ok)
    tl.store(grads_ptr + GRAD_W * B * C + at, p * sz / N, mask=c_ok)


@triton.jit
def _dx_kernel(gy_ptr,                      # (B, C, H, W) the output's gradient, x's dtype and strides
               x_ptr,                       # (B, C, H, W) x's dtype, strides (s_b, s_c, s_n)
               coef_ptr,                    # (N_COEF, B, C) float32
               grads_ptr,                   # (N_GRAD, B, C) float32
               dx_ptr,                      # (B, C, H, W) x's dtype and strides, written
               B, C, N,                     # N = H*W
               s_b, s_c, s_n,               # strides of a sample, a channel, a position
               BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ok = c < C
    ok = c_ok[:, None] & (n[None, :] < N)
    at = b * C + c
    s = tl.load(coef_ptr + COEF_SHIFT * B * C + at, mask=c_ok, other=0.0)[:, None]
    dm = tl.load(coef_ptr + COEF_OFFSET * B * C + at, mask=c_ok, other=0.0)[:, None]
    a = tl.load(coef_ptr + COEF_ALPHA * B * C + at, mask=c_ok, other=0.0)[:, None]
    t = tl.load(coef_ptr + COEF_BETA * B * C + at, mask=c_ok, other=0.0)[:, None]
    sz_n = tl.load(grads_ptr + GRAD_SZ * B * C + at, mask=c_ok, other=0.0)[:, None] / N
    u = tl.load(grads_ptr + GRAD_U * B * C + at, mask=c_ok, other=0.0)[:, None]
    w = tl.load(grads_ptr + GRAD_W * B * C + at, mask=c_ok, other=0.0)[:, None]
    here = b * s_b + c[:, None] * s_c + n[None, :] * s_n
    v = tl.load(x_ptr + here, mask=ok, other=s).to(tl.float32)
    d = tl.load(gy_ptr + b * s_b + _shuffled(c, C)[:, None] * s_c + n[None, :] * s_n, mask=ok,
                other=0.0).to(tl.float32)
    xc = _centred(v, s, dm)
    g = tl.sigmoid(a * xc + t)
    gz = d * v * g * (1 - g)                         # as in the sums: gz - Sz/N is 0 where N = 1
    dx = d * g + a * (gz - sz_n) + u * xc + w
    tl.store(dx_ptr + here, dx.to(dx_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _param_grads_kernel(coef_ptr,           # (N_COEF, B, C) float32
                        grads_ptr,          # (N_GRAD, B, C) float32
                        pr_ptr,             # (N_PARAM, K) float32
                        dparams_ptr,        # (N_PARAM, K) float32, written
                        B, C, K, G,         # G groups, K = C // (2 G)
                        BLOCK_B: tl.constexpr):
    """dL/dA = r Szc, dL/dP = m Sz, dL/dQ = Sz summed over b and the groups, for index k."""
    k = tl.program_id(0)
    d_p0 = tl.zeros([BLOCK_B], dtype=tl.float32)
    d_q0 = tl.zeros([BLOCK_B], dtype=tl.float32)
    d_a1 = tl.zeros([BLOCK_B], dtype=tl.float32)
    d_q1 = tl.zeros([BLOCK_B], dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        b = b0 + tl.arange(0, BLOCK_B)
        b_ok = b < B
        for g in range(G):
            i0 = b.to(tl.int64) * C + g * 2 * K + k            # branch 0, then branch 1 at i0 + K
            sz0 = tl.load(grads_ptr + GRAD_SZ * B * C + i0, mask=b_ok, other=0.0)
            m0 = (tl.load(coef_ptr + COEF_SHIFT * B * C + i0, mask=b_ok, other=0.0)
                  + tl.load(coef_ptr + COEF_OFFSET * B * C + i0, mask=b_ok, other=0.0))
            d_p0 += m0 * sz0
            d_q0 += sz0
            i1 = i0 + K
            sz1 = tl.load(grads_ptr + GRAD_SZ * B * C + i1, mask=b_ok, other=0.0)
            szc1 = tl.load(grads_ptr + GRAD_SZC * B * C + i1, mask=b_ok, other=0.0)
            d_a1 += tl.load(coef_ptr + COEF_RSTD * B * C + i1, mask=b_ok, other=0.0) * szc1
            d_q1 += sz1
    p0, q0, a1, q1 = tl.sum(d_p0), tl.sum(d_q0), tl.sum(d_a1), tl.sum(d_q1)
    sw = tl.load(pr_ptr + PARAM_SWEIGHT * K + k)
    gw = tl.load(pr_ptr + PARAM_GN_WEIGHT * K + k)
    gb = tl.load(pr_ptr + PARAM_GN_BIAS * K + k)
    tl.store(dparams_ptr + PARAM_CWEIGHT * K + k, p0)
    tl.store(dparams_ptr + PARAM_CBIAS * K + k, q0)
    tl.store(dparams_ptr + PARAM_SWEIGHT * K + k, a1 * gw + q1 * gb)
    tl.store(dparams_ptr + PARAM_SBIAS * K + k, q1)
    tl.store(dparams_ptr + PARAM_GN_WEIGHT * K + k, a1 * sw)
    tl.store(dparams_ptr + PARAM_GN_BIAS * K + k, q1 * sw)


def _geometry(x: torch.Tensor):
    """(B, C, N, s_b, s_c, s_n) and the tile (BLOCK_C, BLOCK_N) for x's layout (NCHW where x is
    NCHW-contiguous, else channels_last). The strides follow from the layout and the shape, not
    from ``x.stride()``: the stride of a size-1 dimension is free (a dense (2, 8, 4, 1)
    channels_last map may have stride 5 along W), and out, gy and dx have x's layout."""
    b, c, h, w = x.shape
    n = h * w
    if x.is_contiguous():
        strides, block_c, block_n = (c * n, n, 1), 2, min(1024, triton.next_power_of_2(n))
    else:
        block_c = min(64, triton.next_power_of_2(c))
        strides, block_n = (n * c, 1, c), min(max(1, 4096 // block_c), triton.next_power_of_2(n))
    return (b, c, n, *strides), (block_c, block_n)


def _on(device: torch.device):
    """The launches' device: a kernel runs on the current CUDA device, so make it x's (a no-op for
    the CPU tensors of the interpreter)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def forward(x, params, groups, eps, out):
    (b, c, n, *strides), (bc, bn) = _geometry(x)
    coef = torch.empty((len(Coef), b, c), dtype=torch.float32, device=x.device)
    with _on(x.device):
        _stats_kernel[(b, triton.cdiv(c, bc))](x, params, coef, b, c, n, params.shape[1], eps, *strides,
                                               BLOCK_C=bc, BLOCK_N=bn)
        _gate_kernel[(b, triton.cdiv(c, bc), triton.cdiv(n, bn))](x, coef, out, b, c, n, *strides,
                                                                  BLOCK_C=bc, BLOCK_N=bn)
    return coef, x.new_empty(0, dtype=torch.float32)


def backward(gy, x, coef, saved, params, groups, dx):
    (b, c, n, *strides), (bc, bn) = _geometry(x)
    grads = torch.empty((len(Grad), b, c), dtype=torch.float32, device=x.device)
    k = params.shape[1]
    dparams = torch.empty((len(Param), k), dtype=torch.float32, device=x.device)
    with _on(x.device):
        _sums_kernel[(b, triton.cdiv(c, bc))](gy, x, coef, grads, b, c, n, *strides, BLOCK_C=bc, BLOCK_N=bn)
        _dx_kernel[(b, triton.cdiv(c, bc), triton.cdiv(n, bn))](gy, x, coef, grads, dx, b, c, n, *strides,
                                                                BLOCK_C=bc, BLOCK_N=bn)
        _param_grads_kernel[(k,)](coef, grads, params, dparams, b, c, k, groups,
                                  BLOCK_B=min(256, triton.next_power_of_2(b)))
    return dparams
