"""The whole Shuffle Attention layer: forward, backward and a small stateful class.

Two implementations of the same maths:

- :func:`sa_forward_parts` / :func:`sa_backward_parts` chain the five parts
  (grouping, channel gate, spatial gate, merge, shuffle) exactly as the paper's figure
  draws them. Read these first; the cache keeps every intermediate by name.
- :func:`sa_forward` / :func:`sa_backward` compute the same thing fused: the shuffle is
  folded into the indexing of the output, the GroupNorm and the gate affine are folded
  into one per-channel affine, and each pass over the data does as much as it can. They
  are the fast path and agree with the parts version to rounding error (tested).

Letters: B batch, C channels, H, W, P = H*W pixels, G groups, K = C // (2G).

Fused layout trick. With G even, write g = ga * (G/2) + gb (ga in {0, 1}). Input channel
``c = g*2K + i*K + k`` (i: branch) is the reshape ``x.reshape(B, 2, G/2, 2, K, P)``, and
the shuffle sends it to output channel ``2*(gb*2K + i*K + k) + ga``, which is a plain
strided view of the output: ``out.reshape(B, G/2, 2, K, 2, P).transpose(0, 4, 1, 2, 3, 5)``.
So both branches write their result straight into its shuffled place. With G odd, the
result is written in group order and shuffled with one copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .channel_gate import ChannelGateCache, channel_gate_backward, channel_gate_forward
from .functional import quiet_nonfinite, sigmoid, sigmoid_
from .grouping import GroupCache, group_merge_backward, group_merge_forward
from .grouping import group_split_backward, group_split_forward
from .shuffle import ShuffleCache, _shuffle, channel_shuffle_backward, channel_shuffle_forward
from .spatial_gate import SpatialGateCache, spatial_gate_backward, spatial_gate_forward
from .validate import PARAM_NAMES, check_channels_groups, check_eps, check_input, check_keys, check_params
from .validate import check_same_shape, check_vector

_SUM = (0, 1, 2)   # the (B, ga, gb) axes that every per-channel parameter is shared over


def _param_shapes(params) -> dict[str, tuple]:
    return {n: tuple(getattr(params[n], "shape", np.shape(params[n]))) for n in PARAM_NAMES}


def _grouped(a: np.ndarray, ga: int, k: int) -> np.ndarray:
    """(B, C, H, W) -> view (B, ga, gb, 2, K, P) in group order."""
    b, c = a.shape[:2]
    return a.reshape(b, ga, c // (2 * k * ga), 2, k, -1)


def _shuffled(a: np.ndarray, k: int) -> np.ndarray:
    """(B, C, ...) output-ordered array -> view (B, 2, G/2, 2, K, P) in group order (G even)."""
    b, c = a.shape[:2]
    return a.reshape(b, c // (4 * k), 2, k, 2, -1).transpose(0, 4, 1, 2, 3, 5)


@dataclass
class SACache:
    """What :func:`sa_backward` needs. Arrays of shape (B, ga, gb, K) hold one value per
    (sample, group, channel), with the group index split as g = ga*gb_size + gb."""
    x: np.ndarray = field(repr=False)      # (B, C, H, W) the input (a reference, not a copy)
    groups: int
    params: dict = field(repr=False)       # the six parameters as (K,) arrays
    param_shapes: dict                     # shapes the parameters were given in
    s: np.ndarray = field(repr=False)      # (B, ga, gb, K) pooled means of x0
    gate0: np.ndarray = field(repr=False)  # (B, ga, gb, K) channel gate
    mu: np.ndarray = field(repr=False)     # (B, ga, gb, K) mean of x1 per channel
    rstd: np.ndarray = field(repr=False)   # (B, ga, gb, K) 1/sqrt(var + eps) of x1
    gate1: np.ndarray = field(repr=False)  # (B, ga, gb, K, P) spatial gate

    @property
    def shape(self) -> tuple:
        return self.x.shape


@quiet_nonfinite
def sa_forward(x: np.ndarray, params: dict, groups: int, eps: float = 1e-5):
    """Shuffle Attention forward, fused.

    x: (B, C, H, W) float32 or float64. params: the six official names, each (K,) or the
    official (1, K, 1, 1). Returns (out (B, C, H, W) of x's dtype, cache).

    Every pass over the data writes into one of two new arrays: ``out``, and the spatial
    gate kept for the backward (half of x's size). Odd G adds one copy for the shuffle.
    """
    b, c, h, w = check_input(x)
    k = check_channels_groups(c, groups)
    eps = check_eps(eps)
    p = check_params(params, k, x.dtype)
    shapes = _param_shapes(params)
    x = np.ascontiguousarray(x)                               # so that the views below are free
    ga = 2 if groups % 2 == 0 else 1
    x6 = _grouped(x, ga, k)
    x0, x1 = x6[:, :, :, 0], x6[:, :, :, 1]                  # (B, ga, gb, K, P) each
    out = np.empty_like(x)
    y6 = _shuffled(out, k) if ga == 2 else _grouped(out, ga, k)

    # channel branch: one gate value per channel
    s = x0.mean(axis=-1)
    gate0 = sigmoid(p["cweight"] * s + p["cbias"])
    np.multiply(x0, gate0[..., None], out=y6[:, :, :, 0])

    # spatial branch: instance norm, GroupNorm affine and gate affine folded into one
    # per-channel affine sweight * (gw * (x1 - mu) * rstd + gb) + sbias, then the sigmoid
    mu = x1.mean(axis=-1)
    gate1 = np.subtract(x1, mu[..., None])                    # x1 - mu, becomes the gate in place
    rstd = 1.0 / np.sqrt(np.einsum("...p,...p->...", gate1, gate1) / gate1.shape[-1] + eps)
    gate1 *= (p["sweight"] * p["gn.weight"] * rstd)[..., None]
    gate1 += (p["sweight"] * p["gn.bias"] + p["sbias"])[..., None]
    sigmoid_(gate1)
    np.multiply(x1, gate1, out=y6[:, :, :, 1])
    if ga == 1:                                               # odd G: shuffle with one copy
        out = _shuffle(out, 2)
    return out, SACache(x, groups, p, shapes, s, gate0, mu, rstd, gate1)


@quiet_nonfinite
def sa_backward(dout: np.ndarray, cache: SACache):
    """dout (B, C, H, W) -> (dx (B, C, H, W), grads), grads keyed by the official names
    and shaped like the parameters given to :func:`sa_forward`.

    Passes over the data write into contiguous temporaries of half x's size; measured
    faster than working in place in the interleaved halves of dx (docs/benchmarks.md).
    """
    if not isinstance(cache, SACache):
        raise TypeError(f"cache must be the SACache returned by sa_forward, got {type(cache).__name__}")
    x, p = cache.x, cache.params
    check_same_shape(dout, x.shape, "dout", "the layer's output", x.dtype)
    k = p["cweight"].shape[0]
    ga = 2 if cache.groups % 2 == 0 else 1
    npix = x.shape[2] * x.shape[3]
    x6 = _grouped(x, ga, k)
    x0, x1 = x6[:, :, :, 0], x6[:, :, :, 1]
    d6 = _shuffled(dout, k) if ga == 2 else _grouped(_shuffle(dout, x.shape[1] // 2), ga, k)
    dy0, dy1 = d6[:, :, :, 0], d6[:, :, :, 1]
    dx = np.empty_like(x)
    dx6 = _grouped(dx, ga, k)
    grads = {}

    # channel branch: y0 = x0 * sigmoid(cweight * mean(x0) + cbias)
    gate0 = cache.gate0
    dz0 = np.einsum("...p,...p->...", dy0, x0) * gate0 * (1 - gate0)
    grads["cweight"] = (dz0 * cache.s).sum(axis=_SUM)
    grads["cbias"] = dz0.sum(axis=_SUM)
    np.multiply(dy0, gate0[..., None], out=dx6[:, :, :, 0])
    dx6[:, :, :, 0] += (dz0 * p["cweight"] / npix)[..., None]

    # spatial branch: y1 = x1 * sigmoid(sweight * (gw * n + gb) + sbias), n = (x1 - mu) * rstd
    gate1 = cache.gate1
    direct = dy1 * gate1                      # gradient through the gated value
    dz1 = direct * x1                         # ... and through the gate:
    tmp = dz1 * gate1
    dz1 -= tmp                                # dz1 = dy1 * x1 * sigma * (1 - sigma)
    np.subtract(x1, cache.mu[..., None], out=tmp)            # tmp = x1 - mu
    sum_dz = dz1.sum(axis=-1)
    sum_dz_n = np.einsum("...p,...p->...", dz1, tmp) * cache.rstd
    sw, gw, gb = p["sweight"], p["gn.weight"], p["gn.bias"]
    grads["sweight"] = (gw * sum_dz_n + gb * sum_dz).sum(axis=_SUM)
    grads["sbias"] = sum_dz.sum(axis=_SUM)
    grads["gn.weight"] = (sw * sum_dz_n).sum(axis=_SUM)
    grads["gn.bias"] = (sw * sum_dz).sum(axis=_SUM)
    # GroupNorm backward: dx1 += a * (dz1 - mean(dz1) - n * mean(dz1 * n)), a = sw*gw*rstd
    a = sw * gw * cache.rstd
    tmp *= (-a * cache.rstd * sum_dz_n / npix)[..., None]
    dz1 *= a[..., None]
    dz1 += tmp
    dz1 += (-a * sum_dz / npix)[..., None]
    np.add(direct, dz1, out=dx6[:, :, :, 1])

    grads = {n: grads[n].reshape(cache.param_shapes[n]) for n in PARAM_NAMES}
    return dx, grads


@dataclass
class SAPartsCache:
    """Every intermediate of the parts version, by the name the lessons use."""
    groups: int
    x0: np.ndarray = field(repr=False)     # (B*G, K, H, W) channel-branch input
    x1: np.ndarray = field(repr=False)     # (B*G, K, H, W) spatial-branch input
    y: np.ndarray = field(repr=False)      # (B, C, H, W) merged, before the shuffle
    split: GroupCache = field(repr=False)
    channel: ChannelGateCache = field(repr=False)
    spatial: SpatialGateCache = field(repr=False)
    merge: GroupCache = field(repr=False)
    shuffle: ShuffleCache = field(repr=False)
    param_shapes: dict = field(default_factory=dict)


def sa_forward_parts(x: np.ndarray, params: dict, groups: int, eps: float = 1e-5):
    """The same layer as :func:`sa_forward`, composed from the parts. Returns (out, cache)."""
    b, c, h, w = check_input(x)
    k = check_channels_groups(c, groups)
    p = check_params(params, k, x.dtype)
    shapes = _param_shapes(params)
    (x0, x1), split = group_split_forward(x, groups)
    y0, channel = channel_gate_forward(x0, p["cweight"], p["cbias"])
    y1, spatial = spatial_gate_forward(x1, p["sweight"], p["sbias"], p["gn.weight"], p["gn.bias"], eps)
    y, merge = group_merge_forward(y0, y1, b)
    out, shuffle = channel_shuffle_forward(y, 2)
    return out, SAPartsCache(groups, x0, x1, y, split, channel, spatial, merge, shuffle, shapes)


def sa_backward_parts(dout: np.ndarray, cache: SAPartsCache):
    """Backward of :func:`sa_forward_parts`: the parts' backwards in reverse order."""
    if not isinstance(cache, SAPartsCache):
        raise TypeError(f"cache must be the SAPartsCache returned by sa_forward_parts, got {type(cache).__name__}")
    dy = channel_shuffle_backward(dout, cache.shuffle)
    dy0, dy1 = group_merge_backward(dy, cache.merge)
    dx1, dsw, dsb, dgw, dgb = spatial_gate_backward(dy1, cache.spatial)
    dx0, dcw, dcb = channel_gate_backward(dy0, cache.channel)
    dx = group_split_backward((dx0, dx1), cache.split)
    grads = dict(zip(PARAM_NAMES, (dcw, dcb, dsw, dsb, dgw, dgb)))
    return dx, {n: g.reshape(cache.param_shapes[n]) for n, g in grads.items()}


def init_params(channels: int, groups: int = 64, dtype=np.float32) -> dict[str, np.ndarray]:
    """The official initialisation, in the official shapes:
    cweight = sweight = 0, cbias = sbias = 1 (1, K, 1, 1); gn.weight = 1, gn.bias = 0 (K,)."""
    k = check_channels_groups(channels, groups)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype={dtype} must be a floating-point type, float32 or float64")
    four = lambda v: np.full((1, k, 1, 1), v, dtype)
    return {"cweight": four(0), "cbias": four(1), "sweight": four(0), "sbias": four(1),
            "gn.weight": np.ones(k, dtype), "gn.bias": np.zeros(k, dtype)}


def random_params(channels: int, groups: int, dtype=np.float64, seed=0) -> dict[str, np.ndarray]:
    """Random parameters in the official shapes. Use these, not the official init, to test
    a backward: cweight = sweight = 0 cuts the gradient paths through pooling and GroupNorm."""
    params = init_params(channels, groups, dtype)
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0.0, 1.0, v.shape).astype(dtype) for n, v in params.items()}


class SALayer:
    """A Shuffle Attention layer with parameters, in the official names and shapes.

    >>> layer = SALayer(64, groups=8, dtype=np.float64)
    >>> out = layer.forward(x)          # x (B, 64, H, W)
    >>> dx = layer.backward(dout)       # fills layer.grads
    """

    def __init__(self, channels: int, groups: int = 64, dtype=np.float32, eps: float = 1e-5):
        self.params = init_params(channels, groups, dtype)
        self.channels, self.groups, self.eps = channels, groups, check_eps(eps)
        self.dtype = np.dtype(dtype)
        self.grads = {n: np.zeros_like(v) for n, v in self.params.items()}
        self._cache: SACache | None = None

    @property
    def K(self) -> int:
        return self.channels // (2 * self.groups)

    @property
    def num_parameters(self) -> int:
        """3C/G: six vectors of K = C/(2G) values."""
        return sum(v.size for v in self.params.values())

    def __repr__(self) -> str:
        return (f"SALayer(channels={self.channels}, groups={self.groups}, K={self.K}, "
                f"dtype={self.dtype.name}, num_parameters={self.num_parameters})")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (B, C, H, W) -> out (B, C, H, W), computed in x's dtype."""
        check_input(x, self.channels)
        out, self._cache = sa_forward(x, self.params, self.groups, self.eps)
        return out

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (B, C, H, W) -> dx; the parameter gradients land in ``self.grads``."""
        if self._cache is None:
            raise ValueError("backward() called before forward(): run forward(x) first, "
                             "it stores what the backward needs")
        dx, grads = sa_backward(dout, self._cache)
        self.grads = {n: g.astype(self.dtype, copy=False) for n, g in grads.items()}
        return dx

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, in the official names and shapes."""
        return {n: v.copy() for n, v in self.params.items()}

    def load_state_dict(self, mapping) -> None:
        """Load the six parameters from a NumPy or torch state dict (official (1, K, 1, 1)
        and (K,) shapes, or flat (K,) arrays). Keys must match exactly."""
        check_keys(mapping, "state dict")
        loaded = {n: check_vector(mapping[n], n, self.K, self.dtype).reshape(self.params[n].shape).copy()
                  for n in PARAM_NAMES}
        self.params = loaded
