"""One figure style for every lesson: a few helpers instead of copy-pasted plotting code.

Imported by the notebooks, never by ``sa_numpy`` itself (matplotlib is only needed here).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

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
