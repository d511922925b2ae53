/* The fast SA path as C loops for the CPU: forward and backward, one pass over memory each.
 *
 * sa_torch/fused/cpu.py compiles this file (once per dtype: -DSA_DOUBLE for float64) and calls it
 * through ctypes; its docstring says how the work is split, sa_torch/fused/__init__.py derives the
 * maths and sa_torch/fused/eager.py is the readable version. Letters: B samples, C channels,
 * N = H*W positions, K = C / (2 G) channels a half-group. Every map is dense: (B, C, N) in NCHW,
 * (B, N, C) in channels_last. Each exported function returns 0 when done, or 1 when a buffer it
 * needs cannot be allocated (its outputs are then incomplete: the caller raises). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Rows of the packed buffers: the names of sa_torch/fused/rows.py (tests/test_fused_rows.py checks
   that they match). params (N_PARAM, K) holds the layer's parameters; coef (N_COEF, B, C) what the
   forward computes per (sample, channel), element i = b*C + ch of each row. */
#define PARAM_CWEIGHT 0
#define PARAM_CBIAS 1
#define PARAM_SWEIGHT 2
#define PARAM_SBIAS 3
#define PARAM_GN_WEIGHT 4
#define PARAM_GN_BIAS 5
#define N_PARAM 6
#define COEF_SHIFT 0              /* s, the channel's first value */
#define COEF_OFFSET 1             /* d = m - s: the mean is m = s + d */
#define COEF_RSTD 2               /* r = 1 / sqrt(var + eps) */
#define COEF_ALPHA 3              /* alpha = A r */
#define COEF_BETA 4               /* beta = P m + Q: the gate is sig(alpha (x - m) + beta) */
#define COEF_P 5                  /* P */
#define N_COEF 6

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
/* x - m as (x - s) - d: exact where the variance is small, where m's own rounding is not */
static inline real centred(real x, real s, real d) { return (x - s) - d; }

/* The coefficients of element i = b*C + ch from its shifted sums s1 = sum(x - shift), s2 =
   sum((x - shift)^2). Channel ch is index j = ch % K of branch (ch / K) % 2: A = 0, P = cweight,
   Q = cbias (channel gate) or A = sweight gn.w, P = 0, Q = sweight gn.b + sbias (spatial gate). */
static inline void finish_stats(real shift, double s1, double s2, long n, double eps,
                                const real *pr,       /* (N_PARAM, K) */
                                long k, long ch,
                                real *coef,           /* (N_COEF, B, C): element i of each row written */
                                long i, long bc) {
    long j = ch % k;
    int spatial = (ch / k) % 2;
    real sw = pr[PARAM_SWEIGHT * k + j];
    real A = spatial ? sw * pr[PARAM_GN_WEIGHT * k + j] : 0, P = spatial ? 0 : pr[PARAM_CWEIGHT * k + j];
    real Q = spatial ? sw * pr[PARAM_GN_BIAS * k + j] + pr[PARAM_SBIAS * k + j] : pr[PARAM_CBIAS * k + j];
    double d = s1 / n, q = s2 / n - d * d;
    real var = (real)(q > 0 ? q : 0), rstd = (real)1 / SQRT(var + (real)eps);
    coef[COEF_SHIFT * bc + i] = shift; coef[COEF_OFFSET * bc + i] = (real)d; coef[COEF_RSTD * bc + i] = rstd;
    coef[COEF_ALPHA * bc + i] = A * rstd; coef[COEF_BETA * bc + i] = P * (real)(shift + d) + Q;
    coef[COEF_P * bc + i] = P;
}

/* dparams from the sums: dL/dA = r Szc, dL/dP = m Sz, dL/dQ = Sz per (b, c), summed over
   b and the groups in a fixed order (the result does not depend on the threads), then through
   A, P, Q onto the six parameters. */
static int parameter_grads(const real *coef,     /* (N_COEF, B, C) */
                           const real *sz,       /* (B, C) Sz */
                           const real *szc,      /* (B, C) Szc */
                           long b, long c, long k,
                           const real *pr,       /* (N_PARAM, K) */
                           real *dparams) {      /* (N_PARAM, K) written */
    double *da = calloc(6 * k, sizeof(double));      /* dA, dP, dQ: (2, K) each, [branch * K + j] */
    if (!da) return 1;
    double *dp = da + 2 * k, *dq = dp + 2 * k;
    long bc = b * c;
    for (long i = 0; i < bc; i++) {
        long ch = i % c, at = ((ch / k) % 2) * k + ch % k;
        double m = (double)coef[COEF_SHIFT * bc + i] + coef[COEF_OFFSET * bc + i];
        double r = coef[COEF_RSTD * bc + i];
        da[at] += r * szc[i]; dp[at] += m * sz[i]; dq[at] += sz[i];
    }
    for (long j = 0; j < k; j++) {
        double dp0 = dp[j], dq0 = dq[j], da1 = da[k + j], dq1 = dq[k + j];
        double sw = pr[PARAM_SWEIGHT * k + j], gw = pr[PARAM_GN_WEIGHT * k + j], gb = pr[PARAM_GN_BIAS * k + j];
        dparams[PARAM_CWEIGHT * k + j] = (real)dp0;
        dparams[PARAM_CBIAS * k + j] = (real)dq0;
        dparams[PARAM_SWEIGHT * k + j] = (real)(da1 * gw + dq1 * gb);
        dparams[PARAM_SBIAS * k + j] = (real)dq1;
        dparams[PARAM_GN_WEIGHT * k + j] = (real)(da1 * sw);
        dparams[PARAM_GN_BIAS * k + j] = (real)(dq1 * sw);
    }
    free(da);
    return 0;
}

/* Sz / N, u and w of dx = gy g + alpha (gz - Sz / N) + u (x - m) + w, from the sums of element i */
static inline void finish_grad(double sz, double szc, long n,
                               const real *coef,     /* (N_COEF, B, C) */
                               long i, long bc,
                               real *sz_n, real *u, real *w) {   /* one value each, written */
    double r = coef[COEF_RSTD * bc + i], a = coef[COEF_ALPHA * bc + i], p = coef[COEF_P * bc + i];
    *sz_n = (real)(sz / n); *u = (real)(-a * r * r * szc / n); *w = (real)(p * sz / n);
}

/* Per-thread buffers are one block, each thread its slice. */

/* ---- NCHW: row r = b*C + c holds the N values of one channel ---- */
int forward_nchw(const real *x,        /* (B, C, N) */
                 long b, long c, long n,
                 const real *pr,       /* (N_PARAM, K) */
                 long k, double eps,
                 real *out,            /* (B, C, N) written: x g at the shuffled channel */
                 real *coef,           /* (N_COEF, B, C) written */
                 int threads) {
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
        real dm = coef[COEF_OFFSET * bc + r], a = coef[COEF_ALPHA * bc + r], t = coef[COEF_BETA * bc + r];
        real *o = out + ((r / c) * c + shuf(r % c, c / 2)) * n;
        if (a == 0) {                       /* a channel gate: one value */
            real g0 = sig(t);
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = v[i] * g0;
        } else {
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = v[i] * sig(a * centred(v[i], s, dm) + t);
        }
    }
    return 0;
}

int backward_nchw(const real *gy,      /* (B, C, N) the output's gradient */
                  const real *x,       /* (B, C, N) */
                  const real *coef,    /* (N_COEF, B, C) from forward_nchw */
                  long b, long c, long n,
                  const real *pr,      /* (N_PARAM, K) */
                  long k,
                  real *dx,            /* (B, C, N) written */
                  real *sz,            /* (B, C) written: Sz */
                  real *szc,           /* (B, C) written: Szc */
                  real *dparams,       /* (N_PARAM, K) written */
                  int threads) {
    long bc = b * c;
    real *pool = malloc(threads * n * sizeof(real));
    if (!pool) return 1;
    #pragma omp parallel num_threads(threads)
    {
    real *g = pool + omp_get_thread_num() * n;      /* one row's gate, recomputed once for both passes */
    #pragma omp for schedule(static)
    for (long r = 0; r < bc; r++) {
        const real *v = x + r * n, s = coef[COEF_SHIFT * bc + r], dm = coef[COEF_OFFSET * bc + r];
        const real a = coef[COEF_ALPHA * bc + r], t = coef[COEF_BETA * bc + r];
        const real *d = gy + ((r / c) * c + shuf(r % c, c / 2)) * n;
        real *o = dx + r * n, sz_n, u, w, g0 = sig(t);
        double s1 = 0, s2 = 0;
        for (long i0 = 0; i0 < n; i0 += BLOCK) {
            long i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
            real b1 = 0, b2 = 0;
            if (a == 0) {                   /* gz = gy x g0 (1 - g0): sum gy x, gy x (x - m) */
                #pragma omp simd reduction(+:b1, b2)
                for (long i = i0; i < i1; i++) { real z = d[i] * v[i]; b1 += z; b2 += z * centred(v[i], s, dm); }
            } else {
                #pragma omp simd reduction(+:b1, b2)
                for (long i = i0; i < i1; i++) {
                    real gi = sig(a * centred(v[i], s, dm) + t), z = d[i] * v[i] * gi * (1 - gi);
                    g[i] = gi; b1 += z; b2 += z * centred(v[i], s, dm);
                }
            }
            s1 += b1; s2 += b2;
        }
        if (a == 0) { s1 *= g0 * (1 - g0); s2 *= g0 * (1 - g0); }
        finish_grad(s1, s2, n, coef, r, bc, &sz_n, &u, &w);
        sz[r] = (real)s1; szc[r] = (real)s2;
        if (a == 0) {                       /* alpha = u = 0 */
            #pragma omp simd
            for (long i = 0; i < n; i++) o[i] = d[i] * g0 + w;
        } else {                            /* gz as in the sums, so that gz - Sz/N is 0 where N = 1 */
            #pragma omp simd
            for (long i = 0; i < n; i++) {
                real z = d[i] * v[i] * g[i] * (1 - g[i]);
                o[i] = d[i] * g[i] + a * (z - sz_n) + u * centred(v[i], s, dm) + w;
            }
        }
    }
    }
    free(pool);
    return parameter_grads(coef, sz, szc, b, c, k, pr, dparams);
}

/* ---- channels_last: image b is an (N, C) matrix, summed down its columns in blocks of ROWS.
   One image at a time; the image functions are inlined with C a constant for the usual widths,
   so that the short loops along a pixel's C values unroll into whole vectors. ---- */
#define ROWS 64
#define INLINE static inline __attribute__((always_inline))
#define BY_WIDTH(call) switch (c) { case 16: call(16); break; case 32: call(32); break; \
                                    case 64: call(64); break; case 128: call(128); break; default: call(c); }

INLINE void forward_cl_image(const real *v,       /* (N, C) the image */
                             long n, long c,
                             const real *pr,      /* (N_PARAM, K) */
                             long kk, double eps,
                             real *o,             /* (N, C) written: the image's output */
                             real *coef,          /* (N_COEF, B, C): the image's C elements written */
                             long i0, long bc,    /* i0 = b*C, the image's first element */
                             double *s1) {        /* (2, C) scratch: the shifted sums */
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
    const real *s = coef + COEF_SHIFT * bc + i0, *dm = coef + COEF_OFFSET * bc + i0;
    const real *a = coef + COEF_ALPHA * bc + i0, *t = coef + COEF_BETA * bc + i0;
    for (long p = 0; p < n; p++) {
        const real *row = v + p * c;
        real gr[c], *orow = o + p * c;
        #pragma omp simd
        for (long k = 0; k < c; k++) gr[k] = sig(a[k] * centred(row[k], s[k], dm[k]) + t[k]);
        #pragma omp simd
        for (long j = 0; j < h; j++) { orow[2 * j] = row[j] * gr[j]; orow[2 * j + 1] = row[j + h] * gr[j + h]; }
    }
}

int forward_cl(const real *x,          /* (B, N, C) */
               long b, long n, long c,
               const real *pr,         /* (N_PARAM, K) */
               long k, double eps,
               real *out,              /* (B, N, C) written: x g at the shuffled channel */
               real *coef,             /* (N_COEF, B, C) written */
               int threads) {
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

INLINE void backward_cl_image(const real *d,      /* (N, C) the image's output gradient */
                              const real *v,      /* (N, C) the image */
                              real *g,            /* (N, C) scratch: the image's gate */
                              const real *coef,   /* (N_COEF, B, C) */
                              long n, long c,
                              long i0, long bc,   /* i0 = b*C, the image's first element */
                              real *o,            /* (N, C) written: the image's dx */
                              real *sz,           /* (B, C): the image's C elements written */
                              real *szc,          /* (B, C): the image's C elements written */
                              real *u,            /* (3, C) scratch: u, w, then Sz / N */
                              double *s1) {       /* (2, C) scratch: the sums */
    real *w = u + c, *sz_n = w + c;
    double *s2 = s1 + c;
    long h = c / 2;
    const real *s = coef + COEF_SHIFT * bc + i0, *dm = coef + COEF_OFFSET * bc + i0;
    const real *a = coef + COEF_ALPHA * bc + i0, *t = coef + COEF_BETA * bc + i0;
    for (long p = 0; p < n; p++) {            /* the image's gate, recomputed once for both passes */
        #pragma omp simd
        for (long k = 0; k < c; k++) g[p * c + k] = sig(a[k] * centred(v[p * c + k], s[k], dm[k]) + t[k]);
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
                acc1[j] += z0; acc2[j] += z0 * centred(xr[j], s[j], dm[j]);
                acc1[j + h] += z1; acc2[j + h] += z1 * centred(xr[j + h], s[j + h], dm[j + h]);
            }
        }
        for (long k = 0; k < c; k++) { s1[k] += acc1[k]; s2[k] += acc2[k]; }
    }
    for (long k = 0; k < c; k++) {
        finish_grad(s1[k], s2[k], n, coef, i0 + k, bc, &sz_n[k], &u[k], &w[k]);
        sz[i0 + k] = (real)s1[k]; szc[i0 + k] = (real)s2[k];
    }
    for (long p = 0; p < n; p++) {            /* gz as in the sums, so that gz - Sz/N is 0 where N = 1 */
        const real *xr = v + p * c, *dr = d + p * c, *gr = g + p * c;
        real *orow = o + p * c;
        #pragma omp simd
        for (long j = 0; j < h; j++) {
            long k = j + h;
            real z0 = dr[2 * j] * xr[j] * gr[j] * (1 - gr[j]);
            real z1 = dr[2 * j + 1] * xr[k] * gr[k] * (1 - gr[k]);
            orow[j] = dr[2 * j] * gr[j] + a[j] * (z0 - sz_n[j]) + u[j] * centred(xr[j], s[j], dm[j]) + w[j];
            orow[k] = dr[2 * j + 1] * gr[k] + a[k] * (z1 - sz_n[k]) + u[k] * centred(xr[k], s[k], dm[k]) + w[k];
        }
    }
}

int backward_cl(const real *gy,        /* (B, N, C) the output's gradient */
                const real *x,         /* (B, N, C) */
                const real *coef,      /* (N_COEF, B, C) from forward_cl */
                long b, long n, long c,
                const real *pr,        /* (N_PARAM, K) */
                long k,
                real *dx,              /* (B, N, C) written */
                real *sz,              /* (B, C) written: Sz */
                real *szc,             /* (B, C) written: Szc */
                real *dparams,         /* (N_PARAM, K) written */
                int threads) {
    long each = (n + 3) * c;                   /* a thread's image gate, then u, w and Sz / N */
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
                                          sz, szc, uw, s1)
            BY_WIDTH(BACKWARD)
        }
    }
    free(pool); free(sums);
    return parameter_grads(coef, sz, szc, b, c, k, pr, dparams);
}
