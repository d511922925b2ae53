"""The fast SA path as Triton kernels, for CUDA: one launch forward, two backward.

Same contract as :mod:`sa_torch.fused.cpu`: ``forward(x, params, groups, eps, out)`` writes
out and returns coef (N_COEF, B, C) = shift, offset, rstd, alpha, beta, P (and an empty tensor:
nothing else is saved, the backward recomputes the gate, cheaper on a GPU than storing it);
``backward(gy, x, coef, saved, params, groups, dx)`` writes dx and returns the parameter
gradients (N_PARAM, K). x is (B, C, H, W), float32, bfloat16 or float16, dense in NCHW or
channels_last, N = H*W. params are the layer's six parameters as they are (cweight, cbias,
sweight, sbias, gn.weight, gn.bias, K values each, or the rows of one (N_PARAM, K) tensor): the
kernels read each where it lies, so a call copies none of them (:data:`TAKES_PARAMETERS`). The
maths is :mod:`sa_torch.fused`'s; :mod:`sa_torch.fused.eager` is the readable version.

A program owns a sample b and a block of channel pairs (j, j + C/2), j < C/2: y channels j and
j + C/2 become output channels 2j and 2j + 1, neighbours in memory, so the gate's store (and
the backward's load of gy) moves whole runs of channels (``tl.interleave`` and ``tl.split``
pair them in registers) instead of one 16-bit value every other channel. The program walks
the N positions of its channels twice, the second time from cache where the first left them:

- ``_forward_kernel``: (1) shifted sums of ``x - s``, s = x[first position], and their squares in
  float32 (a mean far from zero costs no accuracy) give offset d = m - s and rstd; the program
  writes the coefficients of its channels; (2) ``x * sigmoid(alpha (x - m) + beta)``, with
  ``x - m = (x - s) - d`` (:func:`_centred`), to output channels 2j, 2j + 1.
- ``_backward_kernel``: (1) Sz and Szc over ``gz = gy x g (1 - g)`` (g recomputed), kept for the
  parameter gradients; (2) ``dx = gy g + alpha (gz - Sz/N) + u (x - m) + w`` (gz as in (1), so
  that ``gz - Sz/N`` is 0 where N = 1).
- ``_param_grads_kernel``: a program per k sums over samples and groups (a fixed order: the
  gradients are the same bits run after run; a sum across programs inside the backward kernel
  would need atomics, whose order is not fixed).

Every kernel reads the map through strides ``(s_b, s_c, s_n)`` that follow from the layout and
the shape (NCHW: ``(C N, N, 1)``; channels_last: ``(N C, 1, C)``; PyTorch leaves the stride of a
size-1 dimension free), so one kernel serves both layouts; the tile is ``BLOCK_N`` positions by
``BLOCK_J`` channel pairs, long along the positions for NCHW and wide along the channels for
channels_last, at most 512 values a half and 4 a thread (:func:`_geometry`), which keeps every
kernel clear of spills on sm_75 to sm_120 (``benchmarks/triton_kernels.py``).

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
TAKES_PARAMETERS = True
# The rows of params, coef and grads (see sa_torch.fused.rows), as constants a kernel can read
(PARAM_CWEIGHT, PARAM_CBIAS, PARAM_SWEIGHT, PARAM_SBIAS, PARAM_GN_WEIGHT,
 PARAM_GN_BIAS) = (tl.constexpr(int(row)) for row in Param)
COEF_SHIFT, COEF_OFFSET, COEF_RSTD, COEF_ALPHA, COEF_BETA, COEF_P = (tl.constexpr(int(r)) for r in Coef)
GRAD_SZ, GRAD_SZC = (tl.constexpr(int(row)) for row in Grad)
TILE = 512                                  # values of one half of a tile: 4 a thread, 128 a warp


@triton.jit
def _centred(v, s, d):
    """x - m as (x - s) - d: exact where a channel's values are close together (r large there)."""
    return (v - s) - d


@triton.jit
def _apq(c, ok, K, cw_ptr, cb_ptr, sw_ptr, sb_ptr, gw_ptr, gb_ptr):
    """A, P, Q of channels c (see sa_torch.fused): branch (c // K) % 2, index c % K."""
    k = c % K
    spatial = (c // K) % 2 == 1
    sw = tl.load(sw_ptr + k, mask=ok, other=0.0).to(tl.float32)
    a = tl.where(spatial, sw * tl.load(gw_ptr + k, mask=ok, other=0.0).to(tl.float32), 0.0)
    p = tl.where(spatial, 0.0, tl.load(cw_ptr + k, mask=ok, other=0.0).to(tl.float32))
    q = tl.where(spatial, sw * tl.load(gb_ptr + k, mask=ok, other=0.0).to(tl.float32)
                 + tl.load(sb_ptr + k, mask=ok, other=0.0).to(tl.float32),
                 tl.load(cb_ptr + k, mask=ok, other=0.0).to(tl.float32))
    return a, p, q


@triton.jit
def _pair(row, n, j, half, N, s_c, s_n, other0, other1):
    """The mask and x at positions n of channels j and j + half, in float32 (other0, other1 where
    masked)."""
    ok = (n[:, None] < N) & (j < half)[None, :]
    at = row + n[:, None] * s_n
    v0 = tl.load(at + j[None, :] * s_c, mask=ok, other=other0).to(tl.float32)
    v1 = tl.load(at + (j + half)[None, :] * s_c, mask=ok, other=other1).to(tl.float32)
    return ok, v0, v1


@triton.jit
def _paired_gy(row, n, pair, C, N, s_c, s_n, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr):
    """gy at positions n of output channels 2j, 2j + 1 (``pair``, side by side in memory), split
    into the gradients of y channels j and j + C/2; 0 where masked."""
    ok = (n[:, None] < N) & (pair < C)[None, :]
    gy = tl.load(row + n[:, None] * s_n + pair[None, :] * s_c, mask=ok, other=0.0).to(tl.float32)
    return tl.split(tl.reshape(gy, [BLOCK_N, BLOCK_J, 2]))


@triton.jit
def _gate_grad(v, e, s, d, a, t):
    """x - m, the gate g and gz = gy x g (1 - g) of one channel of each pair (gy = e)."""
    xc = _centred(v, s, d)
    g = tl.sigmoid(a * xc + t)
    return xc, g, e * v * g * (1 - g)


@triton.jit
def _statistics(row, j, half, N, eps, s_c, s_n, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr):
    """shift s, offset d = m - s and rstd of channels j and j + half: shifted sums over the N
    positions, in float32."""
    j_ok = j < half
    s0 = tl.load(row + j * s_c, mask=j_ok, other=0.0).to(tl.float32)
    s1 = tl.load(row + (j + half) * s_c, mask=j_ok, other=0.0).to(tl.float32)
    sum0 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    sum1 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    squares0 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    squares1 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        ok, v0, v1 = _pair(row, n0 + tl.arange(0, BLOCK_N), j, half, N, s_c, s_n, 0.0, 0.0)
        e0 = tl.where(ok, v0 - s0[None, :], 0.0)
        e1 = tl.where(ok, v1 - s1[None, :], 0.0)
        sum0 += e0
        sum1 += e1
        squares0 += e0 * e0
        squares1 += e1 * e1
    d0 = tl.sum(sum0, axis=0) / N
    d1 = tl.sum(sum1, axis=0) / N
    r0 = 1.0 / tl.sqrt(tl.maximum(tl.sum(squares0, axis=0) / N - d0 * d0, 0.0) + eps)
    r1 = 1.0 / tl.sqrt(tl.maximum(tl.sum(squares1, axis=0) / N - d1 * d1, 0.0) + eps)
    return s0, d0, r0, s1, d1, r1


@triton.jit
def _store_coef(at, BC, shift, offset, rstd, a, p, q, ok):
    """The coefficient rows of channels at ``at`` (= b C + c), BC = B C."""
    tl.store(at + COEF_SHIFT * BC, shift, mask=ok)
    tl.store(at + COEF_OFFSET * BC, offset, mask=ok)
    tl.store(at + COEF_RSTD * BC, rstd, mask=ok)
    tl.store(at + COEF_ALPHA * BC, a * rstd, mask=ok)
    tl.store(at + COEF_BETA * BC, p * (shift + offset) + q, mask=ok)
    tl.store(at + COEF_P * BC, p, mask=ok)


@triton.jit
def _forward_kernel(x_ptr,                  # (B, C, H, W) x's dtype, strides (s_b, s_c, s_n)
                    cw_ptr, cb_ptr,         # (K,) cweight, cbias
                    sw_ptr, sb_ptr,         # (K,) sweight, sbias
                    gw_ptr, gb_ptr,         # (K,) gn.weight, gn.bias
                    coef_ptr,               # (N_COEF, B, C) float32, written
                    out_ptr,                # (B, C, H, W) x's dtype and strides, written
                    B, C, N, K,             # N = H*W, K = C // (2 groups)
                    eps,                    # GroupNorm's eps
                    s_b, s_c, s_n,          # strides of a sample, a channel, a position
                    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)      # channel pairs (j, j + C/2)
    pair = 2 * tl.program_id(1) * BLOCK_J + tl.arange(0, 2 * BLOCK_J)     # output channels 2j, 2j + 1
    half = C // 2
    j_ok = j < half
    row = x_ptr + b * s_b
    # (1) statistics and coefficients of both channels of each pair
    s0, d0, r0, s1, d1, r1 = _statistics(row, j, half, N, eps, s_c, s_n, BLOCK_N, BLOCK_J)
    a0, p0, q0 = _apq(j, j_ok, K, cw_ptr, cb_ptr, sw_ptr, sb_ptr, gw_ptr, gb_ptr)
    a1, p1, q1 = _apq(j + half, j_ok, K, cw_ptr, cb_ptr, sw_ptr, sb_ptr, gw_ptr, gb_ptr)
    at = coef_ptr + b * C + j
    _store_coef(at, B * C, s0, d0, r0, a0, p0, q0, j_ok)
    _store_coef(at + half, B * C, s1, d1, r1, a1, p1, q1, j_ok)
    alpha0, beta0 = (a0 * r0)[None, :], (p0 * (s0 + d0) + q0)[None, :]
    alpha1, beta1 = (a1 * r1)[None, :], (p1 * (s1 + d1) + q1)[None, :]
    s0, d0, s1, d1 = s0[None, :], d0[None, :], s1[None, :], d1[None, :]
    # (2) the gate, written to output channels 2j, 2j + 1 side by side
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        _, v0, v1 = _pair(row, n, j, half, N, s_c, s_n, s0, s1)         # masked: x = s, a finite z
        y0 = v0 * tl.sigmoid(alpha0 * _centred(v0, s0, d0) + beta0)
        y1 = v1 * tl.sigmoid(alpha1 * _centred(v1, s1, d1) + beta1)
        dst = out_ptr + b * s_b + n[:, None] * s_n + pair[None, :] * s_c
        out_ok = (n[:, None] < N) & (pair < C)[None, :]
        tl.store(dst, tl.interleave(y0, y1).to(out_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _backward_kernel(gy_ptr,                # (B, C, H, W) the output's gradient, x's dtype and strides
                     x_ptr,                 # (B, C, H, W) x's dtype, strides (s_b, s_c, s_n)
                     coef_ptr,              # (N_COEF, B, C) float32
                     grads_ptr,             # (N_GRAD, B, C) float32, written: Sz, Szc
                     dx_ptr,                # (B, C, H, W) x's dtype and strides, written
                     B, C, N,               # N = H*W
                     s_b, s_c, s_n,         # strides of a sample, a channel, a position
                     BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)      # channel pairs (j, j + C/2)
    pair = 2 * tl.program_id(1) * BLOCK_J + tl.arange(0, 2 * BLOCK_J)     # output channels 2j, 2j + 1
    half = C // 2
    j_ok = j < half
    at0 = coef_ptr + b * C + j
    at1 = at0 + half
    s0 = tl.load(at0 + COEF_SHIFT * B * C, mask=j_ok, other=0.0)[None, :]
    s1 = tl.load(at1 + COEF_SHIFT * B * C, mask=j_ok, other=0.0)[None, :]
    d0 = tl.load(at0 + COEF_OFFSET * B * C, mask=j_ok, other=0.0)[None, :]
    d1 = tl.load(at1 + COEF_OFFSET * B * C, mask=j_ok, other=0.0)[None, :]
    a0 = tl.load(at0 + COEF_ALPHA * B * C, mask=j_ok, other=0.0)[None, :]
    a1 = tl.load(at1 + COEF_ALPHA * B * C, mask=j_ok, other=0.0)[None, :]
    t0 = tl.load(at0 + COEF_BETA * B * C, mask=j_ok, other=0.0)[None, :]
    t1 = tl.load(at1 + COEF_BETA * B * C, mask=j_ok, other=0.0)[None, :]
    x_row, gy_row, dx_row = x_ptr + b * s_b, gy_ptr + b * s_b, dx_ptr + b * s_b
    # (1) Sz and Szc of both channels of each pair
    sz0 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    sz1 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    szc0 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    szc1 = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        _, v0, v1 = _pair(x_row, n, j, half, N, s_c, s_n, s0, s1)
        e0, e1 = _paired_gy(gy_row, n, pair, C, N, s_c, s_n, BLOCK_N, BLOCK_J)
        xc0, _, gz0 = _gate_grad(v0, e0, s0, d0, a0, t0)                 # gz is 0 where masked: gy = 0
        xc1, _, gz1 = _gate_grad(v1, e1, s1, d1, a1, t1)
        sz0 += gz0
        sz1 += gz1
        szc0 += gz0 * xc0
        szc1 += gz1 * xc1
    sum0, sum1 = tl.sum(sz0, axis=0), tl.sum(sz1, axis=0)
    sumc0, sumc1 = tl.sum(szc0, axis=0), tl.sum(szc1, axis=0)
    at = grads_ptr + b * C + j
    tl.store(at + GRAD_SZ * B * C, sum0, mask=j_ok)
    tl.store(at + half + GRAD_SZ * B * C, sum1, mask=j_ok)
    tl.store(at + GRAD_SZC * B * C, sumc0, mask=j_ok)
    tl.store(at + half + GRAD_SZC * B * C, sumc1, mask=j_ok)
    # Sz/N, u and w of dx, per channel
    r0 = tl.load(at0 + COEF_RSTD * B * C, mask=j_ok, other=0.0)
    r1 = tl.load(at1 + COEF_RSTD * B * C, mask=j_ok, other=0.0)
    p0 = tl.load(at0 + COEF_P * B * C, mask=j_ok, other=0.0)
    p1 = tl.load(at1 + COEF_P * B * C, mask=j_ok, other=0.0)
    m0, m1 = (sum0 / N)[None, :], (sum1 / N)[None, :]
    u0, u1 = -a0 * (r0 * r0 * sumc0 / N)[None, :], -a1 * (r1 * r1 * sumc1 / N)[None, :]
    w0, w1 = (p0 * sum0 / N)[None, :], (p1 * sum1 / N)[None, :]
    # (2) dx, in x's channel order
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        ok, v0, v1 = _pair(x_row, n, j, half, N, s_c, s_n, s0, s1)
        e0, e1 = _paired_gy(gy_row, n, pair, C, N, s_c, s_n, BLOCK_N, BLOCK_J)
        xc0, g0, gz0 = _gate_grad(v0, e0, s0, d0, a0, t0)          # as in (1): gz - Sz/N is 0 where N = 1
        xc1, g1, gz1 = _gate_grad(v1, e1, s1, d1, a1, t1)
        dx0 = e0 * g0 + a0 * (gz0 - m0) + u0 * xc0 + w0
        dx1 = e1 * g1 + a1 * (gz1 - m1) + u1 * xc1 + w1
        here = dx_row + n[:, None] * s_n + j[None, :] * s_c
        tl.store(here, dx0.to(dx_ptr.dtype.element_ty), mask=ok)
        tl.store(here + half * s_c, dx1.to(dx_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _param_grads_kernel(coef_ptr,           # (N_COEF, B, C) float32
                        grads_ptr,          # (N_GRAD, B, C) float32
                        sw_ptr, gw_ptr, gb_ptr,     # (K,) sweight, gn.weight, gn.bias
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
    sw = tl.load(sw_ptr + k).to(tl.float32)
    gw = tl.load(gw_ptr + k).to(tl.float32)
    gb = tl.load(gb_ptr + k).to(tl.float32)
    tl.store(dparams_ptr + PARAM_CWEIGHT * K + k, p0)
    tl.store(dparams_ptr + PARAM_CBIAS * K + k, q0)
    tl.store(dparams_ptr + PARAM_SWEIGHT * K + k, a1 * gw + q1 * gb)
    tl.store(dparams_ptr + PARAM_SBIAS * K + k, q1)
    tl.store(dparams_ptr + PARAM_GN_WEIGHT * K + k, a1 * sw)
    tl.store(dparams_ptr + PARAM_GN_BIAS * K + k, q1 * sw)


def _geometry(x: torch.Tensor):
    """(B, C, N, s_b, s_c, s_n), the tile (BLOCK_N, BLOCK_J) and num_warps for x's layout (NCHW
    where x is NCHW-contiguous, else channels_last). The strides follow from the layout and the
    shape, not from ``x.stride()``: the stride of a size-1 dimension is free (a dense (2, 8, 4, 1)
    channels_last map may have stride 5 along W), and out, gy and dx have x's layout. A tile is
    at most TILE values a half, 4 a thread: long along the positions for NCHW; for channels_last up
    to 16 channel pairs wide: x is read in runs of 16 channels on each side (a whole 32-byte sector
    of 16-bit values) and the output written in runs of 32, with programs enough to keep loads in
    flight where C is large and B small (ImageNet)."""
    b, c, h, w = x.shape
    n, pairs = h * w, triton.next_power_of_2(c // 2)
    if x.is_contiguous():
        strides, block_n = (c * n, n, 1), min(TILE, triton.next_power_of_2(n))
        block_j = min(pairs, TILE // block_n)
    else:
        strides, block_j = (n * c, 1, c), min(16, pairs)
        block_n = min(triton.next_power_of_2(n), TILE // block_j)
    return (b, c, n, *strides), (block_n, block_j), max(1, min(4, block_n * block_j // 128))


def _on(device: torch.device):
    """The launches' device: a kernel runs on the current CUDA device, so make it x's (a no-op for
    the CPU tensors of the interpreter)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _flat(params) -> list[torch.Tensor]:
    """The six parameters as (K,) views, in Param's order (no copy for contiguous parameters)."""
    return [p.reshape(-1) for p in params]


def forward(x, params, groups, eps, out):
    (b, c, n, *strides), (bn, bj), warps = _geometry(x)
    params = _flat(params)
    coef = torch.empty((len(Coef), b, c), dtype=torch.float32, device=x.device)
    with _on(x.device):
        _forward_kernel[(b, triton.cdiv(c // 2, bj))](x, *params, coef, out, b, c, n, params[0].numel(), eps,
                                                       *strides, BLOCK_N=bn, BLOCK_J=bj, num_warps=warps)
    return coef, x.new_empty(0, dtype=torch.float32)


def backward(gy, x, coef, saved, params, groups, dx):
    (b, c, n, *strides), (bn, bj), warps = _geometry(x)
    params = _flat(params)
    k = params[0].numel()
    grads = torch.empty((len(Grad), b, c), dtype=torch.float32, device=x.device)
    dparams = torch.empty((len(Param), k), dtype=torch.float32, device=x.device)
    with _on(x.device):
        _backward_kernel[(b, triton.cdiv(c // 2, bj))](gy, x, coef, grads, dx, b, c, n, *strides,
                                                        BLOCK_N=bn, BLOCK_J=bj, num_warps=warps)
        _param_grads_kernel[(k,)](coef, grads, params[Param.SWEIGHT], params[Param.GN_WEIGHT],
                                  params[Param.GN_BIAS], dparams, b, c, k, groups,
                                  BLOCK_B=min(256, triton.next_power_of_2(b)))
    return dparams
