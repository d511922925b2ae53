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
#: Fill colour of group g, ``GROUP_COLOURS[g % 16]``, in every figure that shows groups: light, so
#: that black numbers read on them, distinct for the 16 groups the explorer allows, and without
#: the branches' blue and red (matplotlib's Pastel2, then eight more from Set3 and Pastel1).
GROUP_COLOURS = ("#b3e2cd", "#fdcdac", "#cbd5e8", "#f4cae4", "#e6f5c9", "#fff2ae", "#f1e2cc", "#cccccc",
                 "#8dd3c7", "#bebada", "#fdb462", "#b3de69", "#bc80bd", "#ffed6f", "#decbe4", "#e5d8bd")
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
    for pos, c in enumerate(order):
        g = int(route.group[c])
        branch = ("channel", "spatial")[int(route.branch[c])]
        ax.add_patch(Rectangle((pos + 0.1, 0), 0.8, 1, facecolor=GROUP_COLOURS[g % len(GROUP_COLOURS)],
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


#: Width of a figure that JupyterLab shows at its own size: the output area of a notebook in a
#: window about 1100 px wide (file browser open) is about 900 px, and 9 in at 100 dpi is 900 px.
NOTEBOOK_WIDTH_IN = 9.0
#: Font size of the diagram's words, in points: 15 px at 100 dpi, like the notebook's own text.
DIAGRAM_FONT_PT = 11


def _box(ax, xy, text, colour, width, height):
    x, y = xy
    ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, facecolor=colour,
                           edgecolor="black", alpha=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=DIAGRAM_FONT_PT)


def _arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="black",
                                 shrinkA=0, shrinkB=0))


def sa_diagram():
    """The Shuffle Attention module as a block diagram (the paper's Fig. 2, redrawn), read from
    top to bottom with the two branches side by side, so that it fits a notebook's width
    (:data:`NOTEBOOK_WIDTH_IN`) with words of :data:`DIAGRAM_FONT_PT` points."""
    fig, axes = figure(width=NOTEBOOK_WIDTH_IN, height=7.0)
    ax = axes[0, 0]
    grey, light = "#dddddd", {"channel": "#c6dbef", "spatial": "#fcbba1"}
    height, gap = 0.56, 0.8                        # box height and row spacing, in inches (axis units)
    columns = {"channel": 2.45, "spatial": 6.55}
    steps = {"channel": ["x0: (B·G, K, H, W)", "average pool: (B·G, K, 1, 1)", "cweight · s + cbias",
                         "sigmoid = gate", "x0 · gate"],
             "spatial": ["x1: (B·G, K, H, W)", "GroupNorm(K, K) = instance norm", "sweight · n + sbias",
                         "sigmoid = gate", "x1 · gate"]}
    top = 6.4
    rows = [top - gap * (i + 1.45) for i in range(5)]           # the branch steps
    merge, last = rows[-1] - gap, rows[-1] - 2 * gap
    _box(ax, (2.45, top), "x: (B, C, H, W)", grey, width=2.4, height=height)
    _box(ax, (6.55, top), "group: (B·G, C/G, H, W)", grey, width=3.0, height=height)
    _arrow(ax, (2.45 + 1.2, top), (6.55 - 1.5, top))
    for name, x in columns.items():
        ax.text(x, rows[0] + height / 2 + 0.04, f"{name} branch: K channels of every group",
                color=BRANCH_COLOURS[name], ha="center", va="bottom", fontsize=DIAGRAM_FONT_PT)
        _arrow(ax, (6.55, top - height / 2), (x, rows[0] + height / 2 + 0.3))
        for y, text in zip(rows, steps[name]):
            _box(ax, (x, y), text, light[name], width=3.7, height=height)
        for a, b in zip(rows + [merge], rows[1:] + [merge]):
            _arrow(ax, (x, a - height / 2), (x, b + height / 2))
    _box(ax, (4.5, merge), "concat the two halves of every group: (B·G, C/G, H, W)", grey,
         width=7.8, height=height)
    tail = [(1.6, "reshape: (B, C, H, W)"), (4.5, "channel shuffle (2 groups)"), (7.4, "out: (B, C, H, W)")]
    _arrow(ax, (1.6, merge - height / 2), (1.6, last + height / 2))
    for x, text in tail:
        _box(ax, (x, last), text, grey, width=2.6, height=height)
    for (a, _), (b, _) in zip(tail[:-1], tail[1:]):
        _arrow(ax, (a + 1.3, last), (b - 1.3, last))
    ax.set_xlim(0, NOTEBOOK_WIDTH_IN)
    ax.set_ylim(last - height / 2 - 0.05, top + height / 2 + 0.05)
    ax.set_title("Shuffle Attention: G groups, each split into a channel half and a spatial half\n"
                 "of K = C / 2G channels; 3C/G parameters in all", fontsize=DIAGRAM_FONT_PT + 1)
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


def boxes(ax, samples, labels, colours, whis=(5, 95)):
    """One box per sample (whiskers at the ``whis`` percentiles, no outliers), filled with its
    colour, with a black median line that shows on every fill."""
    drawn = ax.boxplot(samples, whis=whis, showfliers=False, patch_artist=True, tick_labels=labels,
                       medianprops={"color": "black", "linewidth": 1.5})
    for patch, colour in zip(drawn["boxes"], colours):
        patch.set_facecolor(colour)
    return drawn


def small_multiples(profiles: dict, classes, xlabel: str, ylabel: str, colours=None):
    """One row of small panels per entry of ``profiles`` (name -> array (len(classes), X)), one
    column per class: each panel draws its class's profile in colour over all the others in grey,
    so that ten lines never tangle. Axes are shared; returns the figure."""
    n_rows, n_cols = len(profiles), len(classes)
    colours = colours or [f"C{c}" for c in range(n_cols)]
    fig, axes = figure(n_rows, n_cols, width=NOTEBOOK_WIDTH_IN / n_cols, height=1.35, sharex=True, sharey=True)
    for r, (name, rows) in enumerate(profiles.items()):
        rows = np.asarray(rows)
        steps = np.arange(rows.shape[1])
        for c, ax in enumerate(axes[r]):
            for other in rows:
                ax.plot(steps, other, color="0.82", linewidth=0.8)
            ax.plot(steps, rows[c], color=colours[c], marker="o", markersize=3, linewidth=1.6)
            ax.tick_params(labelsize=8)
            if r == 0:
                ax.set_title(classes[c], fontsize=9)
        axes[r, 0].set_ylabel(f"{name}\n{ylabel}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xticks(steps)
        ax.set_xlabel(xlabel, fontsize=9)
    return fig
