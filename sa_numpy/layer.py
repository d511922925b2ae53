"""The whole Shuffle Attention layer: forward, backward and a small stateful class.

- :func:`sa_forward` / :func:`sa_backward` chain the five parts (grouping, channel
  gate, spatial gate, merge, shuffle) exactly as the paper's figure draws them; the
  cache keeps every intermediate by name. Read these first.
- :class:`SALayer` holds the parameters in the official names and shapes and runs the
  fused fast path of :mod:`sa_numpy.fused` (the same maths, fewer passes over memory).

Letters: B batch, C channels, H, W, G groups, K = C // (2G).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .channel_gate import ChannelGateCache, channel_gate_backward, channel_gate_forward
from .fused import FusedCache, sa_backward_fused, sa_forward_fused
from .grouping import GroupCache, group_merge_backward, group_merge_forward
from .grouping import group_split_backward, group_split_forward
from .shuffle import ShuffleCache, channel_shuffle_backward, channel_shuffle_forward
from .spatial_gate import SpatialGateCache, spatial_gate_backward, spatial_gate_forward
from .validate import PARAM_NAMES, check_channels_groups, check_eps, check_input, check_keys, check_params
from .validate import check_vector, param_shapes


#: The ten parts that :func:`sa_forward` and :func:`sa_backward` chain, by name, in the
#: order they run. ``parts=`` plugs other functions with the same signatures in: the tracer
#: (:mod:`sa_course.trace`) runs a learner's parts this way, the checks their known mistakes.
PARTS = {
    "group_split_forward": group_split_forward,
    "channel_gate_forward": channel_gate_forward,
    "spatial_gate_forward": spatial_gate_forward,
    "group_merge_forward": group_merge_forward,
    "channel_shuffle_forward": channel_shuffle_forward,
    "channel_shuffle_backward": channel_shuffle_backward,
    "group_merge_backward": group_merge_backward,
    "spatial_gate_backward": spatial_gate_backward,
    "channel_gate_backward": channel_gate_backward,
    "group_split_backward": group_split_backward,
}


def resolve_parts(parts=None) -> dict:
    """The ten part functions: the reference ones, with the given ones plugged in."""
    if parts is None:
        return dict(PARTS)
    if not isinstance(parts, Mapping):
        raise TypeError(f"parts must be a dict of functions keyed by part name, got {type(parts).__name__}")
    unknown = [name for name in parts if name not in PARTS]
    if unknown:
        raise ValueError(f"parts has unknown names {unknown}; the parts are {list(PARTS)}")
    for name, fn in parts.items():
        if not callable(fn):
            raise TypeError(f"parts[{name!r}] must be a function, got {type(fn).__name__}")
    return {**PARTS, **parts}


@dataclass
class SACache:
    """Every intermediate of :func:`sa_forward`, by the name the lessons use."""
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
    parts: dict = field(default_factory=lambda: dict(PARTS), repr=False)   # what the backward chains


def sa_forward(x: np.ndarray, params: dict, groups: int, eps: float = 1e-5, parts=None):
    """Shuffle Attention forward, the parts chained as the paper's figure draws them.

    x: (B, C, H, W) float32 or float64. params: the six official names, each (K,) or the
    official (1, K, 1, 1); the parts get them in the shapes given, in x's dtype. Returns
    (out (B, C, H, W) of x's dtype, cache): split into groups and branches, gate each
    branch, merge, shuffle with 2 groups. ``parts``: see :data:`PARTS`.
    """
    b, c, h, w = check_input(x)
    k = check_channels_groups(c, groups)
    shapes = param_shapes(params)
    p = {n: v.reshape(shapes[n]) for n, v in check_params(params, k, x.dtype).items()}
    f = resolve_parts(parts)
    (x0, x1), split = f["group_split_forward"](x, groups)
    y0, channel = f["channel_gate_forward"](x0, p["cweight"], p["cbias"])
    y1, spatial = f["spatial_gate_forward"](x1, p["sweight"], p["sbias"], p["gn.weight"], p["gn.bias"], eps)
    y, merge = f["group_merge_forward"](y0, y1, b)
    out, shuffle = f["channel_shuffle_forward"](y, 2)
    return out, SACache(groups, x0, x1, y, split, channel, spatial, merge, shuffle, shapes, f)


def sa_backward(dout: np.ndarray, cache: SACache):
    """dout (B, C, H, W) -> (dx, grads): the parts' backwards in reverse order; grads keyed
    by the official names and shaped like the parameters given to :func:`sa_forward`."""
    if not isinstance(cache, SACache):
        raise TypeError(f"cache must be the SACache returned by sa_forward, got {type(cache).__name__}")
    f = cache.parts
    dy = f["channel_shuffle_backward"](dout, cache.shuffle)
    dy0, dy1 = f["group_merge_backward"](dy, cache.merge)
    dx1, dsw, dsb, dgw, dgb = f["spatial_gate_backward"](dy1, cache.spatial)
    dx0, dcw, dcb = f["channel_gate_backward"](dy0, cache.channel)
    dx = f["group_split_backward"]((dx0, dx1), cache.split)
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
        self._cache: FusedCache | None = None

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
        out, self._cache = sa_forward_fused(x, self.params, self.groups, self.eps)
        return out

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (B, C, H, W) -> dx; the parameter gradients land in ``self.grads``."""
        if self._cache is None:
            raise ValueError("backward() called before forward(): run forward(x) first, "
                             "it stores what the backward needs")
        dx, grads = sa_backward_fused(dout, self._cache)
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
