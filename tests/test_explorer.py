"""The channel-routing explorer: the routes it draws, its error messages, its static mode."""
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sa_numpy import SALayer
from sa_course.explorer import channel_routing, channel_routing_explorer, plot_channel_routing


@pytest.mark.parametrize("channels, groups, c, expected", [
    # c = g*2K + i*K + k; after the merge it sits at y channel c; the shuffle puts
    # y channel i'*C/2 + j at output 2j + i'.
    (8, 2, 0, (0, 0, 0, 0)),    # K=2: group 0, channel branch, slot 0 -> out 0
    (8, 2, 5, (1, 0, 1, 3)),    # 5 = 1*4 + 0*2 + 1; y5 = 1*4 + 1 -> out 2*1 + 1 = 3
    (8, 2, 3, (0, 1, 1, 6)),    # 3 = 0*4 + 1*2 + 1; y3 = 0*4 + 3 -> out 6
    (8, 2, 6, (1, 1, 0, 5)),    # 6 = 1*4 + 1*2 + 0; y6 = 1*4 + 2 -> out 5
    (12, 3, 7, (1, 1, 1, 3)),   # K=2: 7 = 1*4 + 1*2 + 1; y7 = 1*6 + 1 -> out 3
    (12, 3, 10, (2, 1, 0, 9)),  # 10 = 2*4 + 1*2 + 0; y10 = 1*6 + 4 -> out 9
    (16, 1, 9, (0, 1, 1, 3)),   # K=8: 9 = 0*16 + 1*8 + 1; y9 = 1*8 + 1 -> out 3
])
def test_routing_sends_channel_to_its_group_branch_slot_and_shuffled_place(channels, groups, c, expected):
    route = channel_routing(channels, groups)
    assert (route.group[c], route.branch[c], route.slot[c], route.destination[c]) == expected


def test_routing_matches_the_definition_for_every_channel():
    channels, groups = 24, 3
    k = channels // (2 * groups)
    c = np.arange(channels)
    route = channel_routing(channels, groups)
    np.testing.assert_array_equal(route.group, c // (2 * k))
    np.testing.assert_array_equal(route.branch, (c % (2 * k)) // k)
    np.testing.assert_array_equal(route.slot, c % k)
    half = channels // 2
    np.testing.assert_array_equal(route.destination, 2 * (c % half) + c // half)


def _layer_message(channels, groups):
    """What the layer itself says about this combination."""
    with pytest.raises(ValueError) as err:
        SALayer(channels, groups)
    return str(err.value)


@pytest.mark.parametrize("channels, groups", [(16, 3), (10, 0), (0, 2)])
def test_invalid_combination_gives_the_layers_message(channels, groups, capsys, monkeypatch):
    message = _layer_message(channels, groups)
    with pytest.raises(ValueError) as err:
        channel_routing(channels, groups)
    assert str(err.value) == message
    monkeypatch.setenv("SA_COURSE_STATIC", "1")
    assert channel_routing_explorer(channels, groups) is None
    assert capsys.readouterr().out.strip() == message


def test_plot_draws_two_boxes_and_one_route_per_channel():
    ax = plot_channel_routing(8, 2)
    labels = [t.get_text() for t in ax.texts]
    assert sorted(labels) == sorted([str(c) for c in range(8)] * 2 + ["group 0", "group 1", "next 0", "next 1"])
    assert len(ax.patches) == 16
    routes = ax.collections[0].get_segments()
    assert [tuple(seg[:, 0]) for seg in routes][:2] == [(0, 0), (1, 2)]


def test_boxes_have_the_strips_colours_fill_by_group_edge_by_branch():
    """One colour scheme in lesson 04: the explorer's boxes and viz.channel_strip's agree."""
    from matplotlib.colors import to_hex

    from sa_course import explorer, viz

    channels, groups = 12, 3
    _, axes = viz.figure(1, 1)
    viz.channel_strip(axes[0, 0], channels, groups, "strip")
    strip = {int(t.get_text()): p for t, p in zip(axes[0, 0].texts[::2], axes[0, 0].patches)}
    ax = plot_channel_routing(channels, groups)
    numbers = [t for t in ax.texts if t.get_text().isdigit()][:channels]           # the top row, channels 0..C-1
    for text, box in zip(numbers, ax.patches[:channels]):
        c = int(text.get_text())
        assert to_hex(box.get_facecolor()) == to_hex(strip[c].get_facecolor()) == viz.GROUP_COLOURS[c // 4]
        assert to_hex(box.get_edgecolor()) == to_hex(strip[c].get_edgecolor()) \
            == viz.BRANCH_COLOURS[("channel", "spatial")[(c % 4) // 2]]
    assert len(set(viz.GROUP_COLOURS)) == explorer.GROUPS_MAX and not set(viz.GROUP_COLOURS) & set(viz.BRANCH_COLOURS.values())


def test_both_rows_mark_their_groups():
    ax = plot_channel_routing(16, 4)
    over_x, under_out = ax.collections[1:]
    assert len(over_x.get_segments()) == len(under_out.get_segments()) == 4       # x's groups, the next layer's
    assert min(seg[:, 1].min() for seg in over_x.get_segments()) > 1                # above the row at y = 1
    assert max(seg[:, 1].max() for seg in under_out.get_segments()) < 0             # below the row at y = 0
    labels = [t.get_text() for t in ax.texts if not t.get_text().isdigit()]
    assert labels == [f"group {g}" for g in range(4)] + [f"next {t}" for t in range(4)]


#: The sliders' edges: the fewest and most channels, the widest numbers written across (C = 32) and the
#: first written stacked (C = 34), the most groups for each.
EDGE_SETTINGS = [(2, 1), (12, 3), (30, 15), (32, 1), (32, 16), (34, 1), (48, 12), (62, 1), (64, 1), (64, 16)]


@pytest.mark.parametrize("channels, groups", EDGE_SETTINGS)
def test_every_label_is_readable_and_inside_its_place_up_to_the_sliders_maxima(channels, groups):
    """At 900 px (the figure's own width, shown unscaled), every word is 12 px or more, each channel
    number sits inside its box, and no two labels overlap, up to C = 64 and G = 16."""
    from matplotlib.patches import Rectangle

    from sa_course import explorer

    ax = plot_channel_routing(channels, groups)
    fig = ax.figure
    assert tuple(fig.get_size_inches()) == explorer.FIGURE_SIZE_IN and fig.dpi * fig.get_figwidth() <= 900
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    texts = [t for t in ax.texts + [ax.title] if t.get_text()]
    assert min(t.get_fontsize() for t in texts) * fig.dpi / 72 >= 12
    boxes = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, Rectangle)]
    numbers = [t.get_window_extent(renderer) for t in ax.texts[:2 * channels]]
    for box, number in zip(boxes, numbers):
        assert box.x0 <= number.x0 and number.x1 <= box.x1 and box.y0 <= number.y0 and number.y1 <= box.y1
    labels = [t.get_window_extent(renderer) for t in ax.texts[2 * channels:]]
    assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])
    plt.close(fig)


def test_static_mode_returns_a_closed_figure_and_no_widget(monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    monkeypatch.setenv("SA_COURSE_STATIC", "1")
    result = channel_routing_explorer(16, 2)
    assert isinstance(result, Figure)
    assert result.number not in plt.get_fignums()   # closed: shown once, by the cell's result


def test_sliders_redraw_and_report_an_invalid_choice(monkeypatch, capsys):
    import ipywidgets as widgets

    monkeypatch.setenv("SA_COURSE_STATIC", "0")
    box = channel_routing_explorer(16, 2)
    assert isinstance(box, widgets.VBox)
    c_slider, g_slider = box.children[0].children
    assert (c_slider.value, g_slider.value) == (16, 2)
    capsys.readouterr()
    output = box.children[1]
    assert output.layout.min_height == "340px"          # an error in the figure's place keeps its height
    g_slider.value = 3    # outside a kernel the Output widget passes its text to stdout
    assert capsys.readouterr().out.splitlines()[-1] == _layer_message(16, 3)
    c_slider.value = 24   # 24 = 2*3*4: valid again, a figure instead of the message
    shown = capsys.readouterr().out   # str(fig) "Figure(900x340)", or its repr where an IPython shell exists
    assert ("Figure(" in shown or "<Figure size" in shown) and "divisible" not in shown


def test_importing_sa_numpy_does_not_import_the_explorer_or_plotting():
    code = ("import sys, sa_numpy\n"
            "print('sa_course.explorer' in sys.modules)\n"
            "import sa_course.explorer\n"
            "print(sorted(m for m in ('matplotlib', 'ipywidgets') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "[]"]
