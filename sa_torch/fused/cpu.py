"""The fast SA path as C loops for the CPU: forward and backward, one pass over memory each.

:mod:`sa_torch.fused.eager` (read it first: it is the readable version) runs four passes
over the (B, C, H, W) map: statistics, gate, gradient sums, dx. Here each direction is one
C function that takes the map in pieces small enough to stay in cache and runs both of its
passes on a piece before moving on: a channel row of N = H*W values in NCHW (its statistics
need nothing else), a whole image (N, C) in channels_last. So x is read from memory once
forward, and gy and x once backward. The per-channel coefficients between the two passes
(rstd, alpha, beta; u, w) are the formulas of :mod:`sa_torch.fused`, in C.

- :func:`forward`:  coef (5, B, C) = mean, rstd, alpha, beta, P - alpha; out[shuffled] =
  x g with g = sigmoid(alpha x + beta). Nothing but coef is saved: the gate is not stored.
- :func:`backward`: recomputes g for a piece (a row or an image, into a buffer of the
  thread's that stays in cache); Sz = sum(gz), Szx = sum(gz x) with gz = gy x g (1 - g), gy
  read at the shuffled channel; then dx = gy g (1 + alpha x (1 - g)) + u x + w; and the six
  parameter gradients, summed over samples and groups in a fixed order. Where alpha is 0 (a
  channel gate: one value a channel), the NCHW functions compute that one sigmoid only.

Why recompute: storing the gate costs a fresh (B, C, H, W) map a layer, written forward and
read backward, and in a training step a fresh map is the expensive part (the allocator hands
back new pages, which the kernel zeroes on first touch), dearer than a second sigmoid; the
measurements are in ``docs/results/cpu_sa_overhead.md`` and ``cpu_throughput.md``.

x is float32 or float64, dense in NCHW or channels_last, and so are gy, out and dx; apq and
coef have x's dtype. Sums run in blocks of ``real`` added into doubles; the variance uses
sums shifted by each channel's first value, so a mean far from zero costs no accuracy.
float32 uses a polynomial exp that the compiler vectorises (Cephes ``expf``, about 2 ulp);
float64 uses libm's ``exp``.

The source below is compiled with the system C compiler (``$CC``, else ``cc``) into
``$SA_TORCH_CACHE`` (default ``~/.cache/sa_torch``), keyed by a hash of source, flags and
CPU, in about a second, and loaded with ctypes. Threads: OpenMP, as many as
``torch.get_num_threads()`` (fewer for maps under ``GRAIN`` values a thread, as ATen does),
over rows (NCHW) or images (channels_last), in torch's own OpenMP runtime (the library asks
for ``libgomp.so.1``, which torch has already loaded). :func:`available` is False where no
compiler works (or ``SA_TORCH_CPU_KERNELS=0``); :mod:`sa_torch.fused` then uses torch ops.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

C_SOURCE = r"""
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef SA_DOUBLE
typedef double real;
#define sa_exp exp
#define SQRT sqrt
#else
typedef float real;
#define SQRT sqrtf
static inline float sa_exp(float x) {          /* Cephes expf: 2^n e^r, |r| <= ln2/2 */
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(x / ln2) */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}
#endif
#define BLOCK 256                 /* values summed in `real` before they go into a double */
static inline real sig(real z) { return (real)1 / ((real)1 + sa_exp(-z)); }
static inline long shuf(long c, long half) { return c < half ? 2 * c : 2 * (c - half) + 1; }

/* pr is (6, K): cweight, cbias, sweight, sbias, gn.weight, gn.bias; coef is (5, B, C): mean, rstd,
   alpha, beta, P - alpha, element i = b*C + ch. Channel ch is index j = ch % K of branch (ch / K) % 2:
   A = 0, P = cweight, Q = cbias (channel gate) or A = sweight gn.w, P = 0, Q = sweight gn.b + sbias. */
static inline void finish_stats(real shift, double s1, double s2, long n, double eps, const real *pr,
                                long k, long ch, real *coef, long i, long bc) {
    long j = ch % k;
    int spatial = (ch / k) % 2;
    real A = spatial ? pr[2 * k + j] * pr[4 * k + j] : 0, P = spatial ? 0 : pr[j];
    real Q = spatial ? pr[2 * k + j] * pr[5 * k + j] + pr[3 * k + j] : pr[k + j];
    double m = s1 / n, q = s2 / n - m * m;
    real mean = (real)(shift + m), var = (real)(q > 0 ? q : 0);
    real rstd = (real)1 / SQRT(var + (real)eps), alpha = A * rstd, pa = P - alpha;
    coef[i] = mean; coef[bc + i] = rstd; coef[2 * bc + i] = alpha;
    coef[3 * bc + i] = Q + mean * pa; coef[4 * bc + i] = pa;
}

/* dparams (6, K), rows as pr, from Sz, Szx (B, C): dL/dA = r (Szx - m Sz), dL/dP = m Sz, dL/dQ = Sz,
   summed over b and the groups in a fixed order (the result does not depend on the threads) */
static int parameter_grads(const real *coef, const real *sz, const real *szx, long b, long c, long k,
                           const real *pr, real *dparams) {
    double *acc = calloc(6 * k, sizeof(double));     /* dA, dP, dQ for branch 0, then branch 1 */
    if (!acc) return 1;
    long bc = b * c;
    for (long i = 0; i < bc; i++) {
        long ch = i % c, j = ch % k, at = ((ch / k) % 2) * 3 * k + j;
        double m = coef[i], r = coef[bc + i];
        acc[at] += r * (szx[i] - m * sz[i]); acc[at + k] += m * sz[i]; acc[at + 2 * k] += sz[i];
    }
    for (long j = 0; j < k; j++) {
        double dp0 = acc[k + j], dq0 = acc[2 * k + j], da1 = acc[3 * k + j], dq1 = acc[5 * k + j];
        double sw = pr[2 * k + j], gw = pr[4 * k + j], gb = pr[5 * k + j];
        dparams[j] = (real)dp0; dparams[k + j] = (real)dq0; dparams[2 * k + j] = (real)(da1 * gw + dq1 * gb);
        dparams[3 * k + j] = (real)dq1; dparams[4 * k + j] = (real)(da1 * sw); dparams[5 * k + j] = (real)(dq1 * sw);
    }
    free(acc);
    return 0;
}

/* u, w of dx = gy g (1 + alpha x (1 - g)) + u x + w, from the sums of element i */
static inline void finish_grad(double sz, double szx, long n, const real *coef, long i, long bc,
                               real *u, real *w) {
    double m = coef[i], r = coef[bc + i], a = coef[2 * bc + i], pa = coef[4 * bc + i];
    double uu = -a * r * r * (szx - m * sz) / n;
    *u = (real)uu; *w = (real)(sz * pa / n - uu * m);
}

/* Each function returns 0 when done, or 1 when a buffer it needs cannot be allocated (its outputs are
   then incomplete: the caller raises). Per-thread buffers are one block, each thread its slice. */

/* ---- NCHW: row r = b*C + c holds the N values of one channel ---- */
int forward_nchw(const real *x, long b, long c, long n, const real *pr, long k, double eps, real *out,
                 real *coef, int threads) {
    long bc = b * c;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < bc; r++) {
        const real *v = x + r * n, s = v[0];
        double s1 = 0, s2 = 0;
        for (long i0 = 0; i0 < n; i0 += BLOCK) {
            long i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
            real b1 = 0, b2 = 0;
            #pragma omp simd reduction(+:b1, b2)
            for (long i = i0; i < i1; i++) { real d = v[i] - s; b1 += d; b2 += d * d; }
            s1 += b1; s2 += b2;
        }
        finish_stats(s, s1, s2, n, eps, pr, k, r % c, coef, r, bc);
        real a = coef[2 * bc + r], t = coef[3 * bc + r];
        real *o = out + ((r / c) * c + shuf(r % c, c / 2)) * n;
        if (a == 0) {                       /* a channel gate: one value */
            real g0 = sig(t);
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = v[i] * g0;
        } else {
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = v[i] * sig(a * v[i] + t);
        }
    }
    return 0;
}

int backward_nchw(const real *gy, const real *x, const real *coef, long b, long c, long n, const real *pr,
                  long k, real *dx, real *sz, real *szx, real *dparams, int threads) {
    long bc = b * c;
    real *pool = malloc(threads * n * sizeof(real));
    if (!pool) return 1;
    #pragma omp parallel num_threads(threads)
    {
    real *g = pool + omp_get_thread_num() * n;      /* one row's gate, recomputed once for both passes */
    #pragma omp for schedule(static)
    for (long r = 0; r < bc; r++) {
        const real *v = x + r * n, a = coef[2 * bc + r], t = coef[3 * bc + r];
        const real *d = gy + ((r / c) * c + shuf(r % c, c / 2)) * n;
        real *o = dx + r * n, u, w, g0 = sig(t);
        double s1 = 0, s2 = 0;
        for (long i0 = 0; i0 < n; i0 += BLOCK) {
            long i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
            real b1 = 0, b2 = 0;
            if (a == 0) {                   /* gz = gy x g0 (1 - g0): sum gy x, gy x^2 */
                #pragma omp simd reduction(+:b1, b2)
                for (long i = i0; i < i1; i++) { real z = d[i] * v[i]; b1 += z; b2 += z * v[i]; }
            } else {
                #pragma omp simd reduction(+:b1, b2)
                for (long i = i0; i < i1; i++) {
                    real gi = sig(a * v[i] + t), z = d[i] * v[i] * gi * (1 - gi);
                    g[i] = gi; b1 += z; b2 += z * v[i];
                }
            }
            s1 += b1; s2 += b2;
        }
        if (a == 0) { s1 *= g0 * (1 - g0); s2 *= g0 * (1 - g0); }
        finish_grad(s1, s2, n, coef, r, bc, &u, &w);
        sz[r] = (real)s1; szx[r] = (real)s2;
        if (a == 0) {                       /* u = 0 */
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = d[i] * g0 + w;
        } else {
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = d[i] * g[i] * (1 + a * v[i] * (1 - g[i])) + u * v[i] + w;
        }
    }
    }
    free(pool);
    return parameter_grads(coef, sz, szx, b, c, k, pr, dparams);
}

/* ---- channels_last: image b is an (N, C) matrix, summed down its columns in blocks of ROWS.
   One image at a time; the image functions are inlined with C a constant for the usual widths,
   so that the short loops along a pixel's C values unroll into whole vectors. ---- */
#define ROWS 64
#define INLINE static inline __attribute__((always_inline))
#define BY_WIDTH(call) switch (c) { case 16: call(16); break; case 32: call(32); break; \
                                    case 64: call(64); break; case 128: call(128); break; default: call(c); }

INLINE void forward_cl_image(const real *v, long n, long c, const real *pr, long kk, double eps, real *o,
                             real *coef, long i0, long bc, double *s1) {
    double *s2 = s1 + c;
    long h = c / 2;
    memset(s1, 0, 2 * c * sizeof(double));
    for (long p0 = 0; p0 < n; p0 += ROWS) {
        long p1 = p0 + ROWS < n ? p0 + ROWS : n;
        real acc1[c], acc2[c];                /* in registers where c is a constant */
        for (long k = 0; k < c; k++) acc1[k] = acc2[k] = 0;
        for (long p = p0; p < p1; p++) {
            #pragma omp simd
            for (long k = 0; k < c; k++) { real d = v[p * c + k] - v[k]; acc1[k] += d; acc2[k] += d * d; }
        }
        for (long k = 0; k < c; k++) { s1[k] += acc1[k]; s2[k] += acc2[k]; }
    }
    for (long ch = 0; ch < c; ch++) finish_stats(v[ch], s1[ch], s2[ch], n, eps, pr, kk, ch, coef, i0 + ch, bc);
    const real *a = coef + 2 * bc + i0, *t = coef + 3 * bc + i0;
    for (long p = 0; p < n; p++) {
        const real *row = v + p * c;
        real gr[c], *orow = o + p * c;
        #pragma omp simd
        for (long k = 0; k < c; k++) gr[k] = sig(a[k] * row[k] + t[k]);
        #pragma omp simd
        for (long j = 0; j < h; j++) { orow[2 * j] = row[j] * gr[j]; orow[2 * j + 1] = row[j + h] * gr[j + h]; }
    }
}

int forward_cl(const real *x, long b, long n, long c, const real *pr, long k, double eps, real *out,
               real *coef, int threads) {
    double *pool = malloc(threads * 2 * c * sizeof(double));
    if (!pool) return 1;
    #pragma omp parallel num_threads(threads)
    {
        double *s1 = pool + omp_get_thread_num() * 2 * c;
        #pragma omp for schedule(static)
        for (long im = 0; im < b; im++) {
            long at = im * n * c;
#define FORWARD(width) forward_cl_image(x + at, n, width, pr, k, eps, out + at, coef, im * c, b * c, s1)
            BY_WIDTH(FORWARD)
        }
    }
    free(pool);
    return 0;
}

INLINE void backward_cl_image(const real *d, const real *v, real *g, const real *coef, long n, long c,
                              long i0, long bc, real *o, real *sz, real *szx, real *u, double *s1) {
    real *w = u + c;
    double *s2 = s1 + c;
    long h = c / 2;
    const real *a = coef + 2 * bc + i0, *t = coef + 3 * bc + i0;
    for (long p = 0; p < n; p++) {            /* the image's gate, recomputed once for both passes */
        #pragma omp simd
        for (long k = 0; k < c; k++) g[p * c + k] = sig(a[k] * v[p * c + k] + t[k]);
    }
    memset(s1, 0, 2 * c * sizeof(double));
    for (long p0 = 0; p0 < n; p0 += ROWS) {
        long p1 = p0 + ROWS < n ? p0 + ROWS : n;
        real acc1[c], acc2[c];                /* in registers where c is a constant */
        for (long k = 0; k < c; k++) acc1[k] = acc2[k] = 0;
        for (long p = p0; p < p1; p++) {
            const real *xr = v + p * c, *dr = d + p * c, *gr = g + p * c;
            #pragma omp simd
            for (long j = 0; j < h; j++) {
                real z0 = dr[2 * j] * xr[j] * gr[j] * (1 - gr[j]);
                real z1 = dr[2 * j + 1] * xr[j + h] * gr[j + h] * (1 - gr[j + h]);
                acc1[j] += z0; acc2[j] += z0 * xr[j];
                acc1[j + h] += z1; acc2[j + h] += z1 * xr[j + h];
            }
        }
        for (long k = 0; k < c; k++) { s1[k] += acc1[k]; s2[k] += acc2[k]; }
    }
    for (long k = 0; k < c; k++) {
        finish_grad(s1[k], s2[k], n, coef, i0 + k, bc, &u[k], &w[k]);
        sz[i0 + k] = (real)s1[k]; szx[i0 + k] = (real)s2[k];
    }
    for (long p = 0; p < n; p++) {
        const real *xr = v + p * c, *dr = d + p * c, *gr = g + p * c;
        real *orow = o + p * c;
        #pragma omp simd
        for (long j = 0; j < h; j++) {
            long k = j + h;
            orow[j] = dr[2 * j] * gr[j] * (1 + a[j] * xr[j] * (1 - gr[j])) + u[j] * xr[j] + w[j];
            orow[k] = dr[2 * j + 1] * gr[k] * (1 + a[k] * xr[k] * (1 - gr[k])) + u[k] * xr[k] + w[k];
        }
    }
}

int backward_cl(const real *gy, const real *x, const real *coef, long b, long n, long c, const real *pr,
                long k, real *dx, real *sz, real *szx, real *dparams, int threads) {
    long each = (n + 2) * c;                   /* a thread's image gate, then u and w */
    real *pool = malloc(threads * each * sizeof(real));
    double *sums = malloc(threads * 2 * c * sizeof(double));
    if (!pool || !sums) { free(pool); free(sums); return 1; }
    #pragma omp parallel num_threads(threads)
    {
        real *gate = pool + omp_get_thread_num() * each, *uw = gate + n * c;
        double *s1 = sums + omp_get_thread_num() * 2 * c;
        #pragma omp for schedule(static)
        for (long im = 0; im < b; im++) {
            long at = im * n * c;
#define BACKWARD(width) backward_cl_image(gy + at, x + at, gate, coef, n, width, im * c, b * c, dx + at, \
                                          sz, szx, uw, s1)
            BY_WIDTH(BACKWARD)
        }
    }
    free(pool); free(sums);
    return parameter_grads(coef, sz, szx, b, c, k, pr, dparams);
}
"""

# -fno-trapping-math lets gcc vectorise the sigmoid loops (it does not touch denormals or NaNs)
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared"]
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
STORES_GATE = False                # recomputing the gate is cheaper than a fresh map a layer
GRAIN = 32768                      # values per thread at least, as ATen's parallel_for
_libraries: dict | None = None
_failure: str | None = None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("model name", "flags"))), "")
    except OSError:
        return platform.processor()


def _build(kind: str) -> ctypes.CDLL:
    """Compile (or find in the cache) the library for ``kind`` ('f32' or 'f64') and load it."""
    cc = os.environ.get("CC", "cc")
    flags = FLAGS + (["-DSA_DOUBLE"] if kind == "f64" else [])
    key = hashlib.sha256("\n".join([C_SOURCE, cc, *flags, platform.machine(), _cpu_name()]).encode())
    cache = Path(os.environ.get("SA_TORCH_CACHE", Path.home() / ".cache" / "sa_torch"))
    path = cache / f"sa_cpu_{kind}_{key.hexdigest()[:16]}.so"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src, lib = Path(tmp) / "sa_cpu.c", Path(tmp) / "sa_cpu.so"
            src.write_text(C_SOURCE)
            subprocess.run([cc, *flags, str(src), "-o", str(lib), "-lm"], check=True, capture_output=True,
                           text=True, timeout=120)
            os.replace(lib, path)                  # atomic: a parallel process sees all or nothing
    return ctypes.CDLL(str(path))


def available() -> bool:
    """Whether the C kernels can run here (compiling them on the first call)."""
    global _libraries, _failure
    if _libraries is None and _failure is None:
        if os.environ.get("SA_TORCH_CPU_KERNELS", "1") == "0":
            _failure = "SA_TORCH_CPU_KERNELS=0"
        else:
            try:
                _libraries = {kind: _build(kind) for kind in _DTYPES.values()}
            except (OSError, subprocess.SubprocessError) as err:
                detail = getattr(err, "stderr", "") or str(err)
                _failure = f"{type(err).__name__}: {detail.strip()[:500]}"
                warnings.warn(f"sa_torch: the C kernels for the CPU did not build ({_failure}); the fast SA "
                              f"path uses torch ops instead", RuntimeWarning, stacklevel=2)
    return _libraries is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (None when it is True or has not been asked)."""
    return _failure


def _call(name: str, x: torch.Tensor, *tensors_and_sizes) -> None:
    """Call C function ``name`` of x's dtype: tensors go as pointers, ints as longs, floats as
    doubles, then the number of threads."""
    if not available():
        raise RuntimeError(f"the C kernels for the CPU are not available: {_failure}")
    args = [ctypes.c_void_p(a.data_ptr()) if isinstance(a, torch.Tensor)
            else ctypes.c_double(a) if isinstance(a, float) else ctypes.c_long(a) for a in tensors_and_sizes]
    threads = min(torch.get_num_threads(), max(1, x.numel() // GRAIN))
    if getattr(_libraries[_DTYPES[x.dtype]], name)(*args, ctypes.c_int(threads)) != 0:
        raise MemoryError(f"the C kernel {name} could not allocate its buffers for a map of shape "
                          f"{tuple(x.shape)} on {threads} threads")


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous()


def _dims(x: torch.Tensor) -> tuple[int, int, int]:
    b, c, h, w = x.shape
    return (b, h * w, c) if _channels_last(x) else (b, c, h * w)


def _name(kernel: str, x: torch.Tensor) -> str:
    return kernel + ("_cl" if _channels_last(x) else "_nchw")


def forward(x: torch.Tensor, params: torch.Tensor, groups: int, eps: float, out: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Writes out; returns coef (5, B, C) and an empty tensor (no gate is saved for the backward).
    params: (6, K) of x's dtype, rows cweight, cbias, sweight, sbias, gn.weight, gn.bias."""
    coef = x.new_empty((5, *x.shape[:2]))
    _call(_name("forward", x), x, x, *_dims(x), params.contiguous(), params.shape[1], float(eps), out, coef)
    return coef, x.new_empty(0)


def backward(gy: torch.Tensor, x: torch.Tensor, coef: torch.Tensor, saved: torch.Tensor, params: torch.Tensor,
             groups: int, dx: torch.Tensor) -> torch.Tensor:
    """Writes dx; returns the parameter gradients (6, K), rows as params."""
    sz, szx = (x.new_empty(x.shape[:2]) for _ in range(2))
    dparams = torch.empty_like(params)
    _call(_name("backward", x), x, gy, x, coef.contiguous(), *_dims(x), params.contiguous(),
          params.shape[1], dx, sz, szx, dparams)
    return dparams
