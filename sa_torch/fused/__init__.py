"""Shuffle Attention as one operator with a hand-derived backward: the fast SA path.

:class:`sa_torch.SALayer` computes the official layer op by op (reshape, chunk, mean,
GroupNorm, sigmoid, cat, shuffle) and lets autograd run them backwards: dozens of small,
memory-bound ops, and ``x.reshape(B*G, C/G, H, W)`` copies a channels_last input. This
module computes the same maths on the tensor as it is (NCHW or channels_last, no layout
copy), on any device, as the operator ``torch.ops.sa_torch.shuffle_attention`` (registered
with :mod:`torch.library`, with its backward ``sa_torch::shuffle_attention_backward``, so
``torch.compile`` sees one op, not dozens).

The idea: after the grouping, every gate is a function of one channel of one sample.
Channel c of x (B, C, H, W), with G groups, K = C // (2G) and N = H*W, belongs to group
``c // 2K``, branch ``i = (c // K) % 2`` (0 = channel gate, 1 = spatial gate) and index
``k = c % K``; GroupNorm with K groups on K channels normalises each channel on its own.
With ``m``, ``r = 1/sqrt(var + eps)`` the mean and inverse std of that channel:

    z = A r (x - m) + P m + Q,     g = sigmoid(z),     y = x g,     out = shuffle(y)

    branch 0 (channel):  A = 0               P = cweight   Q = cbias
    branch 1 (spatial):  A = sweight gn.w    P = 0         Q = sweight gn.b + sbias

A, P, Q are C-length vectors (the parameters expanded per channel), so the gate is, per
(b, c), ``z = alpha (x - m) + beta`` with ``alpha = A r`` and ``beta = P m + Q``. The shuffle
is a fixed permutation: y channel ``i*C/2 + j`` is output channel ``2j + i``, and the gate
pass writes there directly.

Backward, with ``gy`` the output gradient read in y's channel order and sums over the N
positions of one channel (``dm/dx = 1/N``, ``dr/dx = -r^3 (x - m) / N``):

    gz = gy x g (1 - g),   Sz = sum(gz),   Szc = sum(gz (x - m))
    dx = gy g + alpha (gz - Sz/N) + u (x - m) + w,   u = -A r^3 Szc / N,   w = P Sz / N

and ``dL/dA = r Szc``, ``dL/dP = m Sz``, ``dL/dQ = Sz`` per (b, c), summed over b and the
groups onto the six (K,)-shaped parameters. Four passes over memory:

    forward   1. stats: m, var                 2. gate: out[shuffled] = x g
    backward  3. sums: Sz, Szc                 4. dx

Written with ``x - m`` and ``gz - Sz/N``, nothing cancels where a channel's variance is far
below eps and r is large (H = W = 1 gives x = m): ``alpha x + (beta - alpha m)`` would subtract
two large numbers there and lose float32's digits; so would ``sum(gz x) - m Sz``. And ``x - m``
is ``(x - s) - d``, with s the channel's first value and d = m - s the mean of ``x - s`` (the
statistics sum ``x - s`` anyway, so that a mean far from zero costs no accuracy): exact where
the values are close together, where the rounding of m itself, magnified by r, would show.
Each backend computes gz the same way in both backward passes, so ``gz - Sz/N`` is exactly 0
where N = 1.

A backend runs them: :mod:`sa_torch.fused.cpu` (C, float32/float64 on the CPU: each
direction in one function that runs both of its passes on a piece of the map while it is in
cache, so memory is read once), :mod:`sa_torch.fused.triton` (Triton kernels, float32,
bfloat16 and float16 on CUDA) or, anywhere else, :mod:`sa_torch.fused.eager` (torch ops,
the readable version). ``sa_numpy/fused.py`` computes the same passes in NumPy with the
same names: the specification the kernels follow. Statistics and coefficients are float32
(float64 for float64 maps); the output has x's dtype, so under autocast it stays in the
autocast dtype. In eager mode an autograd.Function wraps the passes (cheaper to call than a
custom operator); under ``torch.compile`` the registered operators do. The tests check every
backend against autograd through the official ops in float64 (1e-10).
"""
import contextlib
import functools
import importlib.util
import os
import warnings

import torch
from torch import Tensor

from . import cpu, eager
from .eager import compute_dtype
from .rows import Coef, Param

BACKENDS = ("c", "triton", "eager")
_forced: str | None = None


def fused_applies(layer) -> bool:
    """Whether :func:`shuffle_attention` computes ``layer``: the official configuration (any
    device, dtype, layout, autocast or ``torch.compile``); the ablations run op by op."""
    return layer.shuffle and layer.gn is not None and not layer.conv_affine


def shuffle_attention(layer, x: Tensor) -> Tensor:
    """``layer(x)`` for an official-configuration :class:`sa_torch.SALayer`: (B, C, H, W) -> same
    shape, dtype and memory format (NCHW or channels_last; any other strides give NCHW).

    Like the official layer (whose GroupNorm refuses it), a map with one value per channel
    and B*G = 1 is an error: GroupNorm would normalise single values."""
    b, _, h, w = x.shape
    if b * layer.groups * h * w == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got B*G={b * layer.groups} "
                         f"and H*W={h * w} (x.shape={tuple(x.shape)}): GroupNorm needs B*G*H*W > 1")
    args = (x, layer.cweight, layer.cbias, layer.sweight, layer.sbias, layer.gn.weight, layer.gn.bias,
            layer.groups, layer.gn.eps)
    if torch.compiler.is_compiling():
        return torch.ops.sa_torch.shuffle_attention(*args)[0]
    return _ShuffleAttention.apply(*args)


@contextlib.contextmanager
def use_backend(name: str):
    """Run the passes with backend ``name`` (one of :data:`BACKENDS`) inside the block, instead
    of the automatic choice; a tensor the backend cannot run raises (tests and benchmarks)."""
    global _forced
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r} is not one of {BACKENDS}")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


TRITON_MIN_CAPABILITY = (7, 5)


@functools.cache
def triton_supports(index: int) -> bool:
    """Whether the Triton kernels run on GPU ``cuda:index``: compute capability 7.5 or newer, the
    oldest architecture they are compiled and checked for (``benchmarks/triton_kernels.py``; CUDA 13
    builds of PyTorch start there too). An older GPU (a P100 is 6.0, a V100 7.0) runs the eager
    path, announced once per GPU."""
    capability = torch.cuda.get_device_capability(index)
    if capability >= TRITON_MIN_CAPABILITY:
        return True
    warnings.warn(f"{torch.cuda.get_device_name(index)} (cuda:{index}) has compute capability "
                  f"{capability[0]}.{capability[1]}; the fast SA path's Triton kernels need "
                  f"{TRITON_MIN_CAPABILITY[0]}.{TRITON_MIN_CAPABILITY[1]} or newer, so the eager path "
                  f"(torch ops) runs the SA layers on it", RuntimeWarning, stacklevel=2)
    return False


def _runs(name: str, x: Tensor) -> bool:
    if name == "c":
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and cpu.available()
    if name == "triton":                            # on the CPU only in Triton's interpreter (tests)
        interpreted = x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
        on_gpu = x.device.type == "cuda" and triton_supports(x.device.index)
        return ((on_gpu or interpreted) and importlib.util.find_spec("triton") is not None
                and x.dtype in (torch.float32, torch.bfloat16, torch.float16))
    return True


def backend_name(x: Tensor) -> str:
    """The backend that runs the passes for x: the forced one (see :func:`use_backend`), else c
    for float32/float64 on the CPU, triton on CUDA (compute capability 7.5 or newer), and eager
    for the rest (and empty maps)."""
    if _forced is not None:
        if not _runs(_forced, x) or (_forced != "eager" and x.numel() == 0):
            raise ValueError(f"backend {_forced!r} cannot run a {x.dtype} tensor of shape {tuple(x.shape)} "
                             f"on {x.device} (c: float32/float64 on the CPU with a C compiler; triton: "
                             f"float32/bfloat16/float16 on CUDA with compute capability 7.5 or newer)")
        return _forced
    if x.numel() == 0:
        return "eager"
    if _runs("c", x):
        return "c"
    return "triton" if x.device.type == "cuda" and _runs("triton", x) else "eager"


def _backend(x: Tensor):
    name = backend_name(x)
    if name == "triton":
        from . import triton                 # imports triton: only where it runs
        return triton
    return cpu if name == "c" else eager


def _dense(x: Tensor) -> Tensor:
    """x if it is NCHW- or channels_last-contiguous, else an NCHW copy."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _layout(x: Tensor) -> torch.memory_format:
    return torch.contiguous_format if x.is_contiguous() else torch.channels_last


def _autocast_off(x: Tensor):
    """The passes pick their own dtypes: autocast off inside them (a no-op where it is off)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def _params_for(backend, params, dtype: torch.dtype):
    """The six parameters as ``backend`` takes them: the Triton kernels read each where it lies
    (``TAKES_PARAMETERS``: no copy a call); the others one (N_PARAM, K) tensor in ``dtype``, rows
    cweight, cbias, sweight, sbias, gn.weight, gn.bias (see :class:`~sa_torch.fused.rows.Param`)."""
    if getattr(backend, "TAKES_PARAMETERS", False):
        return params
    return torch.cat([p.reshape(-1) for p in params]).to(dtype).view(len(Param), -1)


def forward_passes(x: Tensor, params, groups: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Passes 1-2: out (B, C, H, W) in x's dtype and layout; coef (N_COEF, B, C), rows named by
    :class:`~sa_torch.fused.rows.Coef`; and what the backend saves for the backward (the gate
    (B, C, H, W), or an empty tensor)."""
    x, backend = _dense(x), _backend(x)
    with _autocast_off(x):
        out = torch.empty_like(x)
        coef, saved = backend.forward(x, _params_for(backend, params, compute_dtype(x.dtype)), groups, eps, out)
    return out, coef, saved


def backward_passes(grad_out: Tensor, x: Tensor, coef: Tensor, saved: Tensor, params, groups: int
                    ) -> tuple[Tensor, Tensor]:
    """Passes 3-4: dx (B, C, H, W) and the six parameter gradients as rows of an (N_PARAM, K) tensor."""
    x, backend = _dense(x), _backend(x)
    gy = grad_out.contiguous(memory_format=_layout(x))
    with _autocast_off(x):
        dx = torch.empty_like(x)
        dparams = backend.backward(gy, x, coef, saved, _params_for(backend, params, coef.dtype), groups, dx)
    return dx, dparams.to(params[0].dtype)


def _refuse_second_derivative(tensors) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("the fused SA path has a hand-derived first derivative only: for a second "
                           "derivative (create_graph=True) use SALayer(..., fused=False)")


def _split(dparams: Tensor, params) -> tuple[Tensor, ...]:
    return tuple(g.view(p.shape) for g, p in zip(dparams, params))


class _ShuffleAttention(torch.autograd.Function):
    """Eager autograd around the same passes (a custom operator's Python dispatch costs a few
    hundred microseconds a layer on a CPU; under torch.compile the operator is used instead)."""

    @staticmethod
    def forward(ctx, x, cweight, cbias, sweight, sbias, gn_weight, gn_bias, groups, eps):
        params = (cweight, cbias, sweight, sbias, gn_weight, gn_bias)
        out, coef, saved = forward_passes(x, params, groups, eps)
        ctx.save_for_backward(x, coef, saved, *params)
        ctx.groups = groups
        return out

    @staticmethod
    def backward(ctx, grad_out):
        _refuse_second_derivative((grad_out, *ctx.saved_tensors))
        x, coef, saved, *params = ctx.saved_tensors
        dx, dparams = backward_passes(grad_out, x, coef, saved, params, ctx.groups)
        return dx, *_split(dparams, params), None, None


@torch.library.custom_op("sa_torch::shuffle_attention", mutates_args=())
def shuffle_attention_op(x: Tensor, cweight: Tensor, cbias: Tensor, sweight: Tensor, sbias: Tensor,
                         gn_weight: Tensor, gn_bias: Tensor, groups: int, eps: float
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """(out, coef, saved) of :func:`forward_passes`, as one operator for torch.compile."""
    return forward_passes(x, (cweight, cbias, sweight, sbias, gn_weight, gn_bias), groups, eps)


@shuffle_attention_op.register_fake
def _(x, cweight, cbias, sweight, sbias, gn_weight, gn_bias, groups, eps):
    x, dtype = _dense(x), compute_dtype(x.dtype)
    saved = torch.empty_like(x, dtype=dtype) if _backend(x).STORES_GATE else x.new_empty(0, dtype=dtype)
    return torch.empty_like(x), x.new_empty((len(Coef), *x.shape[:2]), dtype=dtype), saved


@torch.library.custom_op("sa_torch::shuffle_attention_backward", mutates_args=())
def shuffle_attention_backward_op(grad_out: Tensor, x: Tensor, coef: Tensor, saved: Tensor, cweight: Tensor,
                                  cbias: Tensor, sweight: Tensor, sbias: Tensor, gn_weight: Tensor,
                                  gn_bias: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """(dx, dparams (N_PARAM, K)) of :func:`backward_passes`, as one operator for torch.compile."""
    params = (cweight, cbias, sweight, sbias, gn_weight, gn_bias)
    return backward_passes(grad_out, x, coef, saved, params, groups)


@shuffle_attention_backward_op.register_fake
def _(grad_out, x, coef, saved, cweight, cbias, sweight, sbias, gn_weight, gn_bias, groups):
    return torch.empty_like(_dense(x)), cweight.new_empty((len(Param), cweight.numel()))


def _setup_context(ctx, inputs, output):
    x, *params, groups, _eps = inputs
    _, coef, saved = output
    ctx.save_for_backward(x, coef, saved, *params)
    ctx.groups = groups
    ctx.mark_non_differentiable(coef, saved)
    ctx.set_materialize_grads(False)               # no zero tensors for the two of them


def _backward(ctx, grad_out, _grad_coef, _grad_saved):
    _refuse_second_derivative((grad_out, *ctx.saved_tensors))
    if grad_out is None:
        return (None,) * 9
    x, coef, saved, *params = ctx.saved_tensors
    dx, dparams = shuffle_attention_backward_op(grad_out, x, coef, saved, *params, ctx.groups)
    return dx, *_split(dparams, params), None, None


shuffle_attention_op.register_autograd(_backward, setup_context=_setup_context)
