"""The four passes of the fast SA path as C loops for the CPU, compiled once on first use.

Same contract as :mod:`sa_torch.fused_eager` (read that module first: it is the readable
version). x is (B, C, H, W) float32 or float64, dense in NCHW or channels_last; N = H*W;
coefficients are (B, C) tensors of x's dtype. Output channel ``2j + i`` holds y channel
``i*C/2 + j`` (the shuffle), so the gate pass writes there and the backward reads there.

- :func:`stats`      x -> mean, var                          (one read of x)
- :func:`gate`       out[shuffled] = x * sigmoid(alpha x + beta)  (one read, one write)
- :func:`gate_sums`  Sz = sum(gz), Szx = sum(gz x) per channel (reads gy and x)
- :func:`gate_dx`    dx = gy g + alpha gz + u x + w           (reads gy and x, writes dx)

with ``gz = gy * x * g * (1 - g)`` recomputed from x (no gate is stored). Sums run in
blocks of ``real`` added into doubles; the variance uses sums shifted by each channel's
first value, so a mean far from zero costs no accuracy. float32 uses a polynomial exp
that the compiler vectorises (Cephes ``expf``, about 2 ulp); float64 uses libm's ``exp``.

The source below is compiled with the system C compiler (``$CC``, else ``cc``) into
``$SA_TORCH_CACHE`` (default ``~/.cache/sa_torch``), keyed by a hash of source, flags and
CPU, in about a second, and loaded with ctypes. Threads: OpenMP, as many as
``torch.get_num_threads()``, in torch's own OpenMP runtime (the library asks for
``libgomp.so.1``, which torch has already loaded). :func:`available` is False where no
compiler works (or ``SA_TORCH_CPU_KERNELS=0``); :mod:`sa_torch.fused` then uses the torch ops.
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef SA_DOUBLE
typedef double real;
#define sa_exp exp
#else
typedef float real;
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

/* ---- NCHW: row r = b*C + c holds the N values of one channel ---- */
void stats_nchw(const real *x, long rows, long n, real *mean, real *var, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const real *v = x + r * n, s = v[0];
        double s1 = 0, s2 = 0;
        for (long i0 = 0; i0 < n; i0 += BLOCK) {
            long i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
            real b1 = 0, b2 = 0;
            #pragma omp simd reduction(+:b1, b2)
            for (long i = i0; i < i1; i++) { real d = v[i] - s; b1 += d; b2 += d * d; }
            s1 += b1; s2 += b2;
        }
        double m = s1 / n, q = s2 / n - m * m;
        mean[r] = (real)(s + m);
        var[r] = (real)(q > 0 ? q : 0);
    }
}

void gate_nchw(const real *x, long b, long c, long n, const real *alpha, const real *beta,
               real *out, real *gate, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < b * c; r++) {
        const real *v = x + r * n, a = alpha[r], t = beta[r];
        real *o = out + ((r / c) * c + shuf(r % c, c / 2)) * n, *g = gate + r * n;
        if (a == 0) {                                  /* the channel gate: one value */
            real g0 = sig(t);
            #pragma omp simd
            for (long i = 0; i < n; i++) { g[i] = g0; o[i] = v[i] * g0; }
        } else {
            #pragma omp simd
            for (long i = 0; i < n; i++) { g[i] = sig(a * v[i] + t); o[i] = v[i] * g[i]; }
        }
    }
}

void sums_nchw(const real *gy, const real *x, const real *gate, long b, long c, long n,
               real *sz, real *szx, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < b * c; r++) {
        const real *v = x + r * n, *g = gate + r * n;
        const real *d = gy + ((r / c) * c + shuf(r % c, c / 2)) * n;
        double s1 = 0, s2 = 0;
        for (long i0 = 0; i0 < n; i0 += BLOCK) {
            long i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
            real b1 = 0, b2 = 0;
            #pragma omp simd reduction(+:b1, b2)
            for (long i = i0; i < i1; i++) {
                real gz = d[i] * v[i] * g[i] * (1 - g[i]);
                b1 += gz; b2 += gz * v[i];
            }
            s1 += b1; s2 += b2;
        }
        sz[r] = (real)s1; szx[r] = (real)s2;
    }
}

void dx_nchw(const real *gy, const real *x, const real *gate, long b, long c, long n,
             const real *alpha, const real *u, const real *w, real *dx, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < b * c; r++) {
        const real *v = x + r * n, *g = gate + r * n, a = alpha[r], ur = u[r], wr = w[r];
        const real *d = gy + ((r / c) * c + shuf(r % c, c / 2)) * n;
        real *o = dx + r * n;
        #pragma omp simd
        for (long i = 0; i < n; i++) o[i] = d[i] * g[i] * (1 + a * v[i] * (1 - g[i])) + ur * v[i] + wr;
    }
}

/* ---- channels_last: image b is an (N, C) matrix; per-channel sums run down its columns ---- */
#define ROWS 64                   /* pixels summed in `real` before they go into doubles */
void stats_cl(const real *x, long b, long n, long c, real *mean, real *var, int threads) {
    #pragma omp parallel num_threads(threads)
    {
        real *b1 = malloc(2 * c * sizeof(real)), *b2 = b1 + c;
        double *s1 = malloc(2 * c * sizeof(double)), *s2 = s1 + c;
        #pragma omp for schedule(static)
        for (long im = 0; im < b; im++) {
            const real *v = x + im * n * c, *s = v;
            memset(s1, 0, 2 * c * sizeof(double));
            for (long p0 = 0; p0 < n; p0 += ROWS) {
                long p1 = p0 + ROWS < n ? p0 + ROWS : n;
                memset(b1, 0, 2 * c * sizeof(real));
                for (long p = p0; p < p1; p++) {
                    const real *row = v + p * c;
                    #pragma omp simd
                    for (long k = 0; k < c; k++) { real d = row[k] - s[k]; b1[k] += d; b2[k] += d * d; }
                }
                for (long k = 0; k < c; k++) { s1[k] += b1[k]; s2[k] += b2[k]; }
            }
            for (long k = 0; k < c; k++) {
                double m = s1[k] / n, q = s2[k] / n - m * m;
                mean[im * c + k] = (real)(s[k] + m);
                var[im * c + k] = (real)(q > 0 ? q : 0);
            }
        }
        free(b1); free(s1);
    }
}

void gate_cl(const real *x, long b, long n, long c, const real *alpha, const real *beta,
             real *out, real *gate, int threads) {
    long h = c / 2;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < b * n; r++) {
        const real *v = x + r * c, *a = alpha + (r / n) * c, *t = beta + (r / n) * c;
        real *o = out + r * c, *g = gate + r * c;
        #pragma omp simd
        for (long k = 0; k < c; k++) g[k] = sig(a[k] * v[k] + t[k]);
        #pragma omp simd
        for (long j = 0; j < h; j++) { o[2 * j] = v[j] * g[j]; o[2 * j + 1] = v[j + h] * g[j + h]; }
    }
}

void sums_cl(const real *gy, const real *x, const real *gate, long b, long n, long c,
             real *sz, real *szx, int threads) {
    long h = c / 2;
    #pragma omp parallel num_threads(threads)
    {
        real *b1 = malloc(2 * c * sizeof(real)), *b2 = b1 + c;
        double *s1 = malloc(2 * c * sizeof(double)), *s2 = s1 + c;
        #pragma omp for schedule(static)
        for (long im = 0; im < b; im++) {
            const real *v = x + im * n * c, *d = gy + im * n * c, *gi = gate + im * n * c;
            memset(s1, 0, 2 * c * sizeof(double));
            for (long p0 = 0; p0 < n; p0 += ROWS) {
                long p1 = p0 + ROWS < n ? p0 + ROWS : n;
                memset(b1, 0, 2 * c * sizeof(real));
                for (long p = p0; p < p1; p++) {
                    const real *xr = v + p * c, *dr = d + p * c, *g = gi + p * c;
                    #pragma omp simd
                    for (long j = 0; j < h; j++) {
                        real z0 = dr[2 * j] * xr[j] * g[j] * (1 - g[j]);
                        real z1 = dr[2 * j + 1] * xr[j + h] * g[j + h] * (1 - g[j + h]);
                        b1[j] += z0; b2[j] += z0 * xr[j];
                        b1[j + h] += z1; b2[j + h] += z1 * xr[j + h];
                    }
                }
                for (long k = 0; k < c; k++) { s1[k] += b1[k]; s2[k] += b2[k]; }
            }
            for (long k = 0; k < c; k++) { sz[im * c + k] = (real)s1[k]; szx[im * c + k] = (real)s2[k]; }
        }
        free(b1); free(s1);
    }
}

void dx_cl(const real *gy, const real *x, const real *gate, long b, long n, long c,
           const real *alpha, const real *u, const real *w, real *dx, int threads) {
    long h = c / 2;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < b * n; r++) {
        long im = r / n;
        const real *v = x + r * c, *d = gy + r * c, *g = gate + r * c;
        const real *a = alpha + im * c, *ui = u + im * c, *wi = w + im * c;
        real *o = dx + r * c;
        #pragma omp simd
        for (long j = 0; j < h; j++) {
            long k = j + h;
            o[j] = d[2 * j] * g[j] * (1 + a[j] * v[j] * (1 - g[j])) + ui[j] * v[j] + wi[j];
            o[k] = d[2 * j + 1] * g[k] * (1 + a[k] * v[k] * (1 - g[k])) + ui[k] * v[k] + wi[k];
        }
    }
}
"""

# -fno-trapping-math lets gcc vectorise the sigmoid loops (it does not touch denormals or NaNs)
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared"]
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
STORES_GATE = True                 # the sigmoid is the costly part on a CPU: compute it once
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
    """Call C function ``name`` of x's dtype: tensors go as pointers, ints as longs, then threads."""
    if not available():
        raise RuntimeError(f"the C kernels for the CPU are not available: {_failure}")
    args = [ctypes.c_void_p(a.data_ptr()) if isinstance(a, torch.Tensor) else ctypes.c_long(a)
            for a in tensors_and_sizes]
    getattr(_libraries[_DTYPES[x.dtype]], name)(*args, ctypes.c_int(torch.get_num_threads()))


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous()


def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    mean, var = (x.new_empty(b, c) for _ in range(2))
    if _channels_last(x):
        _call("stats_cl", x, x, b, h * w, c, mean, var)
    else:
        _call("stats_nchw", x, x, b * c, h * w, mean, var)
    return mean, var


def _dims(x: torch.Tensor) -> tuple[int, int, int]:
    b, c, h, w = x.shape
    return (b, h * w, c) if _channels_last(x) else (b, c, h * w)


def _name(kernel: str, x: torch.Tensor) -> str:
    return kernel + ("_cl" if _channels_last(x) else "_nchw")


def gate(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Writes out; returns the gate g (B, C, H, W), saved for the backward passes."""
    g = torch.empty_like(x)
    _call(_name("gate", x), x, x, *_dims(x), alpha, beta, out, g)
    return g


def gate_sums(gy: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
              saved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sz, szx = (x.new_empty(x.shape[:2]) for _ in range(2))
    _call(_name("sums", x), x, gy, x, saved, *_dims(x), sz, szx)
    return sz, szx


def gate_dx(gy, x, alpha, beta, saved, u, w, dx) -> None:
    _call(_name("dx", x), x, gy, x, saved, *_dims(x), alpha, u, w, dx)
