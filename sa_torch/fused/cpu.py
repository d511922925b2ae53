"""The fast SA path as C loops for the CPU: forward and backward, one pass over memory each.

:mod:`sa_torch.fused.eager` (read it first: it is the readable version) runs four passes
over the (B, C, H, W) map: statistics, gate, gradient sums, dx. Here each direction is one
C function that takes the map in pieces small enough to stay in cache and runs both of its
passes on a piece before moving on: a channel row of N = H*W values in NCHW (its statistics
need nothing else), a whole image (N, C) in channels_last. So x is read from memory once
forward, and gy and x once backward. The per-channel coefficients between the two passes
(rstd, alpha, beta; u, w) are the formulas of :mod:`sa_torch.fused`, in C.

- :func:`forward`:  coef (N_COEF, B, C) = mean, rstd, alpha, beta, P; out[shuffled] = x g
  with g = sigmoid(alpha (x - m) + beta). Nothing but coef is saved: the gate is not stored.
- :func:`backward`: recomputes g for a piece (a row or an image, into a buffer of the
  thread's that stays in cache); Sz = sum(gz), Szc = sum(gz (x - m)) with gz = gy x g (1 - g),
  gy read at the shuffled channel; then dx = gy g + alpha (gz - Sz/N) + u (x - m) + w; and the
  six parameter gradients, summed over samples and groups in a fixed order. Where alpha is 0
  (a channel gate: one value a channel), the NCHW functions compute that one sigmoid only.

Why recompute: storing the gate costs a fresh (B, C, H, W) map a layer, written forward and
read backward, and in a training step a fresh map is the expensive part (the allocator hands
back new pages, which the kernel zeroes on first touch), dearer than a second sigmoid; the
measurements are in ``docs/results/cpu_sa_overhead.md`` and ``cpu_throughput.md``.

x is float32 or float64, dense in NCHW or channels_last, and so are gy, out and dx; params and
coef have x's dtype. Sums run in blocks of ``real`` added into doubles; the variance uses
sums shifted by each channel's first value, so a mean far from zero costs no accuracy.
float32 uses a polynomial exp that the compiler vectorises (Cephes ``expf``, about 2 ulp);
float64 uses libm's ``exp``.

The C source, ``cpu.c`` beside this module (shipped with the package), is compiled on first use
by :mod:`sa_torch.fused.build` (the system C compiler with OpenMP, a cache keyed by the CPU, so
that ``-march=native`` never reaches another machine) and loaded with ctypes. Threads: OpenMP,
as many as ``torch.get_num_threads()`` (fewer for maps under ``GRAIN`` values a thread, as ATen
does), over rows (NCHW) or images (channels_last), in torch's own OpenMP runtime (the library
asks for ``libgomp.so.1``, which torch has already loaded). :func:`available` is False where the
kernels cannot be built (said once, in a warning naming the reason and the fix) or with
``SA_TORCH_CPU_KERNELS=0``; :mod:`sa_torch.fused` then uses torch ops.
"""
from __future__ import annotations

import ctypes
import os
import warnings
from pathlib import Path

import torch

from . import build
from .rows import Coef

SOURCE = Path(__file__).with_name("cpu.c")
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
STORES_GATE = False                # recomputing the gate is cheaper than a fresh map a layer
GRAIN = 32768                      # values per thread at least, as ATen's parallel_for
_libraries: dict | None = None
_failure: str | None = None


def available() -> bool:
    """Whether the C kernels can run here (building them on the first call)."""
    global _libraries, _failure
    if _libraries is None and _failure is None:
        if os.environ.get("SA_TORCH_CPU_KERNELS", "1") == "0":
            _failure = "SA_TORCH_CPU_KERNELS=0"
        else:
            try:
                _libraries = {kind: build.load(SOURCE, kind) for kind in _DTYPES.values()}
            except (build.BuildError, OSError) as err:
                _failure = str(err) if isinstance(err, build.BuildError) else f"{type(err).__name__}: {err}"
                warnings.warn(f"sa_torch: the C kernels for the CPU are not used: {_failure}. The fast SA path "
                              f"runs torch ops instead (slower); to use the kernels, {build.FIX}.",
                              RuntimeWarning, stacklevel=2)
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
    """Writes out; returns coef (N_COEF, B, C) and an empty tensor (no gate is saved for the backward).
    params: (N_PARAM, K) of x's dtype, rows cweight, cbias, sweight, sbias, gn.weight, gn.bias."""
    coef = x.new_empty((len(Coef), *x.shape[:2]))
    _call(_name("forward", x), x, x, *_dims(x), params.contiguous(), params.shape[1], float(eps), out, coef)
    return coef, x.new_empty(0)


def backward(gy: torch.Tensor, x: torch.Tensor, coef: torch.Tensor, saved: torch.Tensor, params: torch.Tensor,
             groups: int, dx: torch.Tensor) -> torch.Tensor:
    """Writes dx; returns the parameter gradients (N_PARAM, K), rows as params."""
    sz, szc = (x.new_empty(x.shape[:2]) for _ in range(2))
    dparams = torch.empty_like(params)
    _call(_name("backward", x), x, gy, x, coef.contiguous(), *_dims(x), params.contiguous(),
          params.shape[1], dx, sz, szc, dparams)
    return dparams
