"""Lesson 00's diagram is readable at a notebook's default width: JupyterLab shows an image at
its own size up to the output area's width (about 900 px) and scales a wider one down, so every
word must be large enough after that scaling, and no word may spill out of its box or run into
another."""
import matplotlib

matplotlib.use("Agg")

import pytest

from sa_course import viz

OUTPUT_AREA_PX = 900     # JupyterLab's output area in a window about 1100 px wide
MIN_TEXT_PX = 14         # JupyterLab's own text is 13-14 px


@pytest.fixture(scope="module")
def drawn():
    fig = viz.sa_diagram()
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]                                      # axis("off"): its words are its texts and title
    texts = [t for t in [*ax.texts, ax.title] if t.get_text().strip()]
    yield fig, renderer, texts
    matplotlib.pyplot.close(fig)


def test_every_word_is_at_least_14_px_high_in_a_900_px_output_area(drawn):
    fig, _, texts = drawn
    width_px = fig.get_figwidth() * fig.dpi
    shown = min(1.0, OUTPUT_AREA_PX / width_px)          # what JupyterLab's max-width: 100% leaves
    smallest = min(t.get_fontsize() for t in texts) * fig.dpi / 72 * shown
    assert smallest >= MIN_TEXT_PX, f"the smallest text is {smallest:.1f} px at {OUTPUT_AREA_PX} px wide"
    assert len(texts) >= 15            # every step of both branches is labelled


def test_every_box_holds_its_words_and_no_words_overlap(drawn):
    fig, renderer, texts = drawn
    ax = fig.axes[0]
    boxes = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle)]
    extents = [t.get_window_extent(renderer) for t in texts]
    assert len(boxes) >= 14
    for box in boxes:
        inside = [e for e in extents if box.contains(*e.frozen().get_points().mean(axis=0))]
        assert len(inside) == 1, f"{len(inside)} texts centred in the box at {box.bounds}"
        e = inside[0]
        assert box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1, \
            f"{texts[extents.index(e)].get_text()!r} spills out of its box"
    for i, a in enumerate(extents):
        for b in extents[i + 1:]:
            assert not a.overlaps(b), f"{texts[extents.index(a)].get_text()!r} overlaps {texts[extents.index(b)].get_text()!r}"
