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


#: The sliders' ranges: every (C, G) they allow is drawn with readable labels.
CHANNELS_MAX, GROUPS_MAX = 64, 16
#: The figure's size in inches (900 x 340 px at 100 dpi): the same for every C, and kept by the
#: explorer's output while it shows an error instead.
FIGURE_SIZE_IN = (9.0, 3.4)
#: Channel numbers, group labels: in points, at least 12 px high at 100 dpi.
NUMBER_PT, LABEL_PT = 9, 9
#: Up to this many channels a number fits across its box; above it, its digits are stacked.
ACROSS_MAX = 32


def plot_channel_routing(channels: int, groups: int, ax=None):
    """Draw every channel's route: input position, group and branch, output position.

    Both rows use the colours of lesson 04's channel strips: fill colour = group of this
    layer (:data:`sa_course.viz.GROUP_COLOURS`), edge colour = branch. Top row: the input
    channels, a bracket and a label per group. Bottom row: the output after the shuffle, each
    box labelled with the input channel it holds, and a bracket per block of 2K channels, the
    groups of the next SA layer. A line joins each channel's two places. Returns the Axes.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Patch, Rectangle

    from .viz import BRANCH_COLOURS, GROUP_COLOURS, figure

    route = channel_routing(channels, groups)
    k = channels // (2 * groups)
    if ax is None:
        _, axes = figure(width=FIGURE_SIZE_IN[0], height=FIGURE_SIZE_IN[1])
        ax = axes[0, 0]
    edges = np.array([BRANCH_COLOURS[b] for b in BRANCHES])[route.branch]           # (C,)
    fills = np.array(GROUP_COLOURS)[route.group % len(GROUP_COLOURS)]               # (C,)
    source = np.arange(channels)
    top, bottom, half_height, box = 1.0, 0.0, 0.2, 0.8
    for row, position in ((top, source), (bottom, route.destination)):
        for x, c in zip(position, source):
            ax.add_patch(Rectangle((x - box / 2, row - half_height), box, 2 * half_height, facecolor=fills[c],
                                   edgecolor=edges[c], linewidth=1.5))
            ax.text(x, row, str(c) if channels <= ACROSS_MAX else "\n".join(str(c)), ha="center",
                    va="center", fontsize=NUMBER_PT, linespacing=0.9)
    routes = np.stack([np.stack([source, np.full(channels, top - half_height)], axis=1),
                       np.stack([route.destination, np.full(channels, bottom + half_height)], axis=1)],
                      axis=1)                                                  # (C, 2 points, xy)
    ax.add_collection(LineCollection(routes, colors=edges, linewidths=0.8, alpha=0.5))
    left = np.arange(groups) * 2 * k - box / 2
    right = left + 2 * k - 1 + box
    wide = 2 * k * FIGURE_SIZE_IN[0] * 100 / (channels + 1) > 60      # px per group: room for "group 15"
    for row, sign, name in ((top, 1, "group"), (bottom, -1, "next layer's group")):
        y0, y1 = row + sign * (half_height + 0.06), row + sign * (half_height + 0.12)
        brackets = np.stack([np.stack([left, left, right, right], axis=1),
                             np.broadcast_to([y0, y1, y1, y0], (groups, 4))], axis=2)
        ax.add_collection(LineCollection(brackets, colors="0.3", linewidths=1))
        for g, centre in enumerate((left + right) / 2):
            label = f"{'group' if row == top else 'next'} {g}" if wide else str(g)
            ax.text(centre, y1 + sign * 0.03, label, ha="center", va="bottom" if sign > 0 else "top",
                    fontsize=LABEL_PT)
    ax.set_xlim(-1, channels)
    ax.set_ylim(-0.62, 1.62)
    ax.set_yticks([bottom, top], ["out", "x"])
    ax.set_xticks([])
    ax.spines[["left", "bottom"]].set_visible(False)
    ax.set_title(f"C={channels}, G={groups}, K={k}. Top: the input x, its groups bracketed. Bottom: the output after "
                 f"the shuffle,\nbracketed in blocks of 2K = {2 * k}, the next layer's groups. Each box shows its "
                 "input channel's number.", fontsize=LABEL_PT + 1)
    ax.legend(handles=[Patch(facecolor="white", edgecolor=BRANCH_COLOURS[b], linewidth=1.5,
                             label=f"edge: {b} branch (x{i})") for i, b in enumerate(BRANCHES)]
              + [Patch(facecolor=GROUP_COLOURS[0], label="fill: group of this layer")],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False, fontsize=LABEL_PT)
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
    out = widgets.Output(layout=widgets.Layout(min_height=f"{FIGURE_SIZE_IN[1] * 100:.0f}px"))   # an error keeps it

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
