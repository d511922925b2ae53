"""One figure and table style for every lesson: a few helpers instead of copy-pasted code.

Imported by the lessons; matplotlib and IPython are needed here, never in ``sa_numpy``.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown
from matplotlib.patches import FancyArrowPatch, Rectangle

from .routing import channel_routing

#: Colours of the two branches, used in every figure that shows them.
BRANCH_COLOURS = {"channel": "#1f77b4", "spatial": "#d62728"}
#: Colour maps: sequential for gates in [0, 1], diverging for signed values.
GATE_CMAP = "viridis"
SIGNED_CMAP = "RdBu_r"


def apply_style() -> None:
    """Small, clean, readable defaults; called by :func:`figure`."""
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
        "image.interpolation": "nearest",
    })


def figure(nrows: int = 1, ncols: int = 1, width: float = 4.0, height: float = 3.0, **kwargs):
    """``plt.subplots`` with the course style and a size per panel. Returns (fig, axes)."""
    apply_style()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                        constrained_layout=True, squeeze=False, **kwargs)


def show_map(ax, image: np.ndarray, title: str, label: str = "", cmap: str = GATE_CMAP,
             vmin=None, vmax=None, colorbar: bool = True):
    """An image or a map with a title, no ticks, and a labelled colour bar."""
    im = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=label, shrink=0.8)
    return im


def label_axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    """Title and axis labels in one call, so that no figure goes without them."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def show_matrix(ax, matrix: np.ndarray, title: str, xlabel: str, ylabel: str, label: str = "",
                cmap: str = "Greys", ticklabels=None, colorbar: bool = True, vmin=None, vmax=None):
    """A square-celled matrix (permutation, dependency, ...) whose rows and columns count the
    same things (channels), every one ticked; ``ticklabels`` default to 0, 1, 2, ..."""
    rows, cols = np.shape(matrix)
    ticklabels = list(range(max(rows, cols)) if ticklabels is None else ticklabels)
    return heatmap(ax, matrix, title, xlabel, ylabel, ticklabels[:cols], ticklabels[:rows], label=label,
                   cmap=cmap, vmin=vmin, vmax=vmax, colorbar=colorbar, aspect="equal")


def channel_strip(ax, channels: int, groups: int, title: str, order=None) -> None:
    """Draw C channels as a row of boxes: fill colour = group, edge colour and letter = branch.

    ``order`` (length C) lists which input channel sits at each position (default: in order,
    with each group labelled), so the same picture shows a tensor before and after a
    permutation such as the shuffle."""
    route = channel_routing(channels, groups)       # checks C and G; the layer's own split
    k = channels // (2 * groups)
    in_order = order is None
    order = np.arange(channels) if in_order else np.asarray(order)
    palette = plt.get_cmap("Pastel2" if groups <= 8 else "Set3")   # no blue or red: those mark branches
    for pos, c in enumerate(order):
        g = int(route.group[c])
        branch = ("channel", "spatial")[int(route.branch[c])]
        ax.add_patch(Rectangle((pos + 0.1, 0), 0.8, 1, facecolor=palette(g % palette.N),
                               edgecolor=BRANCH_COLOURS[branch], linewidth=1.8))
        ax.text(pos + 0.5, 0.5, str(c), ha="center", va="center", fontsize=8)
        ax.text(pos + 0.5, -0.3, branch[0], ha="center", va="center", fontsize=8,
                color=BRANCH_COLOURS[branch])
    if in_order:
        for g in range(groups):
            ax.text((g + 0.5) * 2 * k, 1.3, f"group {g}", ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.2, len(order) + 0.2)
    ax.set_ylim(-0.6, 1.6)
    ax.set_title(title)
    ax.axis("off")


def _box(ax, xy, text, colour, width=1.9, height=0.8):
    x, y = xy
    ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, facecolor=colour,
                           edgecolor="black", alpha=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="black"))


def sa_diagram():
    """The Shuffle Attention module as a block diagram (the paper's Fig. 2, redrawn)."""
    fig, axes = figure(width=14, height=4.2)
    ax = axes[0, 0]
    grey, half = "#dddddd", 0.95
    light = {"channel": "#c6dbef", "spatial": "#fcbba1"}
    steps = {"channel": ["x0\n(B·G, K, H, W)", "average pool\n(B·G, K, 1, 1)", "cweight · s\n+ cbias",
                         "sigmoid\n= gate", "x0 · gate"],
             "spatial": ["x1\n(B·G, K, H, W)", "GroupNorm(K, K)\n= instance norm", "sweight · n\n+ sbias",
                         "sigmoid\n= gate", "x1 · gate"]}
    xs = [4.8, 7.0, 9.2, 11.4, 13.6]
    for y, name in ((3.2, "channel"), (0.8, "spatial")):
        for x, text in zip(xs, steps[name]):
            _box(ax, (x, y), text, light[name])
        for a, b in zip(xs[:-1], xs[1:]):
            _arrow(ax, (a + half, y), (b - half, y))
        _arrow(ax, (2.4 + half, 2), (xs[0] - half, y))
        _arrow(ax, (xs[-1] + half, y), (16.0 - half, 2))
        ax.text(xs[0] - half, y + 0.55, f"{name} branch: K channels of every group",
                color=BRANCH_COLOURS[name], ha="left", fontsize=9)
    chain = [(0.0, "x\n(B, C, H, W)"), (2.4, "group\n(B·G, C/G, H, W)")]
    tail = [(16.0, "concat\n(B·G, C/G, H, W)"), (18.2, "reshape\n(B, C, H, W)"),
            (20.4, "channel shuffle\n(2 groups)")]
    for x, text in chain + tail:
        _box(ax, (x, 2), text, grey)
    for (a, _), (b, _) in zip(chain[:-1] + tail[:-1], chain[1:] + tail[1:]):
        _arrow(ax, (a + half, 2), (b - half, 2))
    ax.set_xlim(-1.1, 21.5)
    ax.set_ylim(0.2, 3.9)
    ax.set_title("Shuffle Attention: G groups, each split into a channel half and a spatial half "
                 "of K = C / 2G channels; 3C/G parameters in all")
    ax.axis("off")
    return fig


def upper_bound(value: float) -> str:
    """A non-negative number as the next power of ten above it: ``3.2e-16`` -> ``< 1e-15``.

    Stored notebook outputs then stay the same on every machine, where the last bits of a
    float64 rounding error differ with the CPU and the BLAS."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"< 1e{math.floor(math.log10(value)) + 1}"


def table(header, rows) -> Markdown:
    """A Markdown table (rendered by Jupyter): ``header`` is a list of column titles and
    ``rows`` a list of lists; numbers should already be formatted as strings."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return Markdown("\n".join(lines))


def cmp_table(comparisons) -> Markdown:
    """One row per passing :func:`sa_numpy.compare` result: tensor | max abs diff | max rel diff | ok.

    ``compare`` raises on a failure, so every row that reaches this table is ``ok``; the
    differences are shown as upper bounds (see :func:`upper_bound`)."""
    return table(["tensor", "max abs diff", "max rel diff", "ok"],
                 [[c.name, upper_bound(c.max_abs), upper_bound(c.max_rel), "ok"] for c in comparisons])


def overlay(ax, image: np.ndarray, heat: np.ndarray, title: str, label: str = "",
            cmap: str = GATE_CMAP, vmin=None, vmax=None, alpha: float = 0.6, colorbar: bool = True):
    """An RGB image (H, W, 3) in [0, 1], shown in grey, under a map (H, W) of the same size
    drawn in colour with transparency ``alpha``; title, no ticks, labelled colour bar."""
    ax.imshow(np.asarray(image).mean(axis=-1), cmap="gray", vmin=0, vmax=1)
    im = show_map(ax, heat, title, label, cmap=cmap, vmin=vmin, vmax=vmax, colorbar=colorbar)
    im.set_alpha(alpha)      # after the colour bar, which keeps the opaque colours
    return im


def heatmap(ax, matrix: np.ndarray, title: str, xlabel: str, ylabel: str, xticklabels, yticklabels,
            label: str = "", cmap: str = GATE_CMAP, vmin=None, vmax=None, colorbar: bool = True,
            aspect: str = "auto"):
    """A (rows, cols) matrix whose rows and columns are different things (classes x groups,
    ...), each axis ticked with its own labels; labelled colour bar."""
    im = ax.imshow(np.asarray(matrix), cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect)
    label_axes(ax, title, xlabel, ylabel)
    ax.set_xticks(range(len(xticklabels)), xticklabels, fontsize=8)
    ax.set_yticks(range(len(yticklabels)), yticklabels, fontsize=8)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=label, shrink=0.8)
    return im
