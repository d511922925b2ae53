"""Where does each channel go? A picture of the layer's routing, and sliders to explore it.

The routing itself is :func:`sa_course.routing.channel_routing` (re-exported here):
the layer's own split, merge and shuffle applied to the channel numbers.

Imported by lesson 04: matplotlib and ipywidgets are
imported inside the functions that draw. Where stored outputs are compared (the
environment variable ``SA_COURSE_STATIC=1``, set by the tests and the notebook runner),
:func:`channel_routing_explorer` draws one static figure instead of sliders.
"""
from __future__ import annotations

import os

import numpy as np

from .routing import BRANCHES, ChannelRouting, channel_routing

__all__ = ["ChannelRouting", "channel_routing", "plot_channel_routing", "channel_routing_explorer"]


def plot_channel_routing(channels: int, groups: int, ax=None):
    """Draw every channel's route: input position, group and branch, output position.

    Top row: the input channels, coloured by the branch they are sent to, with a bracket
    per group. Bottom row: the output after the shuffle, each box labelled with the input
    channel it holds. A line joins each channel's two places. Returns the Axes.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Patch

    from .viz import BRANCH_COLOURS, figure

    route = channel_routing(channels, groups)
    k = channels // (2 * groups)
    if ax is None:
        _, axes = figure(width=min(12.0, max(6.0, 0.35 * channels)), height=3.2)
        ax = axes[0, 0]
    colours = np.array([BRANCH_COLOURS[b] for b in BRANCHES])[route.branch]   # (C,)
    source = np.arange(channels)
    top, bottom, half_height, box = 1.0, 0.0, 0.12, 0.7
    text_size = 8 if channels <= 32 else 5
    for row, position in ((top, source), (bottom, route.destination)):
        ax.bar(position, 2 * half_height, bottom=row - half_height, width=box,
               color=colours, alpha=0.85)
        for x, c in zip(position, source):
            ax.text(x, row, str(c), ha="center", va="center", color="white", fontsize=text_size)
    routes = np.stack([np.stack([source, np.full(channels, top - half_height)], axis=1),
                       np.stack([route.destination, np.full(channels, bottom + half_height)], axis=1)],
                      axis=1)                                                  # (C, 2 points, xy)
    ax.add_collection(LineCollection(routes, colors=colours, linewidths=0.8, alpha=0.6))
    left = np.arange(groups) * 2 * k - box / 2
    right = left + 2 * k - 1 + box
    brackets = np.stack([np.stack([left, left, right, right], axis=1),
                         np.broadcast_to([1.2, 1.26, 1.26, 1.2], (groups, 4))], axis=2)
    ax.add_collection(LineCollection(brackets, colors="0.3", linewidths=1))
    for g, centre in enumerate((left + right) / 2):
        ax.text(centre, 1.3, f"group {g}" if groups <= 8 else str(g),
                ha="center", va="bottom", fontsize=text_size + 1)
    ax.set_xlim(-1, channels)
    ax.set_ylim(-0.3, 1.55)
    ax.set_yticks([bottom, top], ["after shuffle", "input x"])
    ax.set_xticks([])
    ax.spines[["left", "bottom"]].set_visible(False)
    ax.set_title(f"C={channels}, G={groups}, K={k}: each box shows its input channel number")
    ax.legend(handles=[Patch(color=BRANCH_COLOURS[b], label=f"{b} branch (x{i})")
                       for i, b in enumerate(BRANCHES)],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    return ax


def static_mode() -> bool:
    """True where stored outputs are compared (``SA_COURSE_STATIC`` set and not "0")."""
    return os.environ.get("SA_COURSE_STATIC", "") not in ("", "0")


def _routing_figure_or_message(channels: int, groups: int):
    """The routing figure (closed, so that it is shown once), or print why there is none."""
    import matplotlib.pyplot as plt

    try:
        ax = plot_channel_routing(channels, groups)
    except ValueError as err:
        print(err)
        return None
    plt.close(ax.figure)
    return ax.figure


def channel_routing_explorer(channels: int = 16, groups: int = 2):
    """Sliders for C and G that redraw :func:`plot_channel_routing`.

    Returns the widget to display. In static mode (``SA_COURSE_STATIC=1``) returns the
    figure for the starting values instead (or None, after printing the layer's error
    message, if they are invalid).
    """
    if static_mode():
        return _routing_figure_or_message(channels, groups)
    import ipywidgets as widgets
    from IPython.display import display

    c_slider = widgets.IntSlider(value=channels, min=2, max=64, step=2, description="C (channels)",
                                 style={"description_width": "initial"}, continuous_update=False)
    g_slider = widgets.IntSlider(value=groups, min=1, max=16, description="G (groups)",
                                 style={"description_width": "initial"}, continuous_update=False)
    out = widgets.Output()

    def redraw(change=None):
        with out:
            out.clear_output(wait=True)
            fig = _routing_figure_or_message(c_slider.value, g_slider.value)
            if fig is not None:
                display(fig)

    c_slider.observe(redraw, names="value")
    g_slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([c_slider, g_slider]), out])
