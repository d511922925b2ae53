"""Lesson 07's figures read at a glance: every box's median line shows on its fill, and the group
importance of ten classes is drawn as small multiples, one class in colour per panel over the others
in grey, instead of ten tangled lines with one legend."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from sa_course import viz

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STAGE_COLOURS = ("#66c2a5", "#fc8d62", "#8da0cb")      # lesson 07's colour per stage


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colours: 1 (the same) to 21 (black on white)."""
    def luminance(colour):
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_median_line_shows_on_its_box():
    fills = [*STAGE_COLOURS, "C1", "#ffffff"]              # C1: matplotlib's own median colour as a fill
    _, axes = viz.figure(1, 1)
    drawn = viz.boxes(axes[0, 0], [np.random.default_rng(i).normal(size=50) for i in range(len(fills))],
                      [str(i) for i in range(len(fills))], fills)
    for median, box in zip(drawn["medians"], drawn["boxes"]):
        assert contrast(median.get_color(), box.get_facecolor()) >= 3, (median.get_color(), box.get_facecolor())
    assert contrast("C1", STAGE_COLOURS[1]) < 1.5           # why: the default median vanished on stage 2's boxes
    plt.close("all")


@pytest.fixture(scope="module")
def multiples():
    rng = np.random.default_rng(7)
    profiles = {f"layer{s}.2": rng.uniform(0.05, 0.3, size=(len(CLASSES), 4)) for s in (1, 2, 3)}
    fig = viz.small_multiples(profiles, CLASSES, "group", "score")
    fig.canvas.draw()
    yield fig, profiles
    plt.close(fig)


def test_each_panel_draws_its_class_in_colour_over_the_others_in_grey(multiples):
    fig, profiles = multiples
    axes = np.array(fig.axes).reshape(len(profiles), len(CLASSES))
    for r, rows in enumerate(profiles.values()):
        for c, ax in enumerate(axes[r]):
            *greys, own = ax.lines
            assert len(greys) == len(CLASSES) and {line.get_color() for line in greys} == {"0.82"}
            np.testing.assert_array_equal(own.get_ydata(), rows[c])
            assert own.get_color() == f"C{c}"
    assert [ax.get_title() for ax in axes[0]] == list(CLASSES)
    assert [ax.get_ylabel().split("\n")[0] for ax in axes[:, 0]] == list(profiles)


def test_the_small_multiples_fit_a_notebook_and_their_words_are_readable(multiples):
    fig, _ = multiples
    assert fig.get_figwidth() * fig.dpi <= 900                     # shown unscaled in a 900 px output area
    renderer = fig.canvas.get_renderer()
    words = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label,
                                            *ax.get_xticklabels(), *ax.get_yticklabels())
             if t.get_text() and t.get_visible()]
    assert min(t.get_fontsize() for t in words) * fig.dpi / 72 >= 11
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes[:len(CLASSES)]]
    assert not any(a.overlaps(b) for i, a in enumerate(titles) for b in titles[i + 1:])
