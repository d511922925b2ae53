"""Figures that follow training runs: loss and accuracy per epoch, redrawn as the runs go.

Imported by lesson 06, which trains two networks and watches them learn. Like d2l's
``Animator``, the plotting class lives in the course package and the lesson imports it.
"""
from __future__ import annotations

from IPython.display import display
from matplotlib.ticker import MaxNLocator

from . import viz
from .explorer import static_mode

#: Line colour of each run, in the order the runs are named: plain grey, then SA in the colour
#: of the spatial branch, then matplotlib's cycle.
RUN_COLOURS = ("#7f7f7f", viz.BRANCH_COLOURS["spatial"], "C2", "C4", "C1", "C8")
#: The two panels: (title, y label, metric name without its split, scale).
PANELS = (("loss", "cross-entropy", "loss", 1), ("accuracy", "%", "acc", 100))
#: Line style per split: dashed for the training set, solid for the test set.
SPLITS = (("train", "--"), ("test", "-"))


class LivePlot:
    """Loss and accuracy per epoch of several runs, in one figure that is redrawn in place.

    ``names`` are the runs, in the order they get colours (:data:`RUN_COLOURS`).
    :meth:`update` takes a run's metrics so far: the list of per-epoch dicts that
    :func:`sa_torch.train.train` hands to its ``on_epoch`` callback (keys ``epoch``,
    ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``), and redraws the figure.

    ``live=False`` only records the metrics and :meth:`draw` shows the figure once, at the
    end: that is the default where stored outputs are compared (``SA_COURSE_STATIC=1``, see
    :func:`sa_course.explorer.static_mode`), so a stored lesson holds one figure, not one per epoch.

        plot = LivePlot(["plain", "SA"])
        train(config, data=data, on_epoch=lambda metrics: plot.update("plain", metrics))
        plot.draw()
    """

    def __init__(self, names, live: bool | None = None):
        self.names = list(names)
        if len(self.names) > len(RUN_COLOURS):
            raise ValueError(f"{len(self.names)} runs, but LivePlot has colours for {len(RUN_COLOURS)}")
        self.history: dict[str, list[dict]] = {name: [] for name in self.names}
        self.live = not static_mode() if live is None else live
        self._handle = None      # the displayed figure, replaced in place by each redraw

    def update(self, name: str, metrics: list[dict]) -> None:
        """Record run ``name``'s metrics so far; redraw if live."""
        if name not in self.history:
            raise KeyError(f"unknown run {name!r}; LivePlot was made for {self.names}")
        self.history[name] = list(metrics)
        if self.live:
            self.draw()

    def draw(self) -> None:
        """Draw both panels for every run recorded so far, in place of the previous figure."""
        fig, axes = viz.figure(1, len(PANELS), width=4.2, height=3.0)
        for ax, (title, ylabel, metric, scale) in zip(axes[0], PANELS):
            for name, colour in zip(self.names, RUN_COLOURS):
                epochs = [row["epoch"] for row in self.history[name]]
                for split, style in SPLITS:
                    values = [scale * row[f"{split}_{metric}"] for row in self.history[name]]
                    ax.plot(epochs, values, style, color=colour, label=f"{name} {split}")
            viz.label_axes(ax, title, "epoch", ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))      # whole epochs only
        axes[0, -1].legend(fontsize=8)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        viz.plt.close(fig)   # shown through the display handle only, not a second time by the backend
