"""sa_course.plots.LivePlot: one figure per redraw, none while stored outputs are being made."""
from __future__ import annotations

import pytest

from sa_course import plots


def metrics(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 1.8 / e, "train_acc": 0.1 * e, "test_acc": 0.12 * e}
            for e in range(1, epochs + 1)]


class Screen:
    """Stands in for IPython's display: records each figure shown and each in-place update."""

    def __init__(self):
        self.shown, self.updates = [], []

    def display(self, fig, display_id=False):
        self.shown.append(fig)
        return self

    def update(self, fig):
        self.updates.append(fig)


@pytest.fixture
def screen(monkeypatch):
    screen = Screen()
    monkeypatch.setattr(plots, "display", screen.display)
    return screen


def test_static_liveplot_draws_once_at_the_end(screen, monkeypatch):
    monkeypatch.setenv("SA_COURSE_STATIC", "1")
    plot = plots.LivePlot(["plain", "SA"])
    assert not plot.live
    for epochs in (1, 2, 3):
        plot.update("plain", metrics(epochs))
        plot.update("SA", metrics(epochs))
    assert screen.shown == []
    plot.draw()
    (fig,) = screen.shown
    loss, accuracy = fig.axes[:2]
    assert [line.get_label() for line in loss.lines] == ["plain train", "plain test", "SA train", "SA test"]
    assert list(accuracy.lines[0].get_ydata()) == pytest.approx([10, 20, 30])   # accuracy in %
    assert list(loss.lines[1].get_ydata()) == pytest.approx([1.8, 0.9, 0.6])


def test_live_liveplot_redraws_in_place_after_every_epoch(screen):
    plot = plots.LivePlot(["plain"], live=True)
    for epochs in (1, 2, 3):
        plot.update("plain", metrics(epochs))
    assert len(screen.shown) == 1 and len(screen.updates) == 2
    assert len(screen.updates[-1].axes[0].lines[0].get_xdata()) == 3


def test_liveplot_names_an_unknown_run():
    plot = plots.LivePlot(["plain"], live=False)
    with pytest.raises(KeyError, match="unknown run 'SA'"):
        plot.update("SA", metrics(1))
