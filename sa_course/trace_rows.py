"""The tracer's rows and report: what each intermediate is, how one is compared with PyTorch's,
and how the table prints. :mod:`sa_course.trace` (the reference chain with your parts) and
:mod:`sa_course.trace_chain` (your own chain) both fill a :class:`Tracer`'s rows.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sa_numpy.gradcheck import compare
from sa_numpy.validate import PARAM_NAMES

#: What each intermediate is, shown next to the first one that differs.
HINTS = {
    "x0": "group_split_forward: view x (B, C, H, W) as (B*G, C/G, H, W); the first K "
          "channels of every group are x0 (channel branch), the last K are x1",
    "x1": "group_split_forward: x1 is the second half, channels K..2K-1 of every group",
    "s": "channel gate: s = mean of x0 over H and W (global average pooling), one value "
         "per row and channel, shape (B*G, K)",
    "channel_gate": "channel gate: sigmoid(cweight * s + cbias), the same K parameters "
                    "for every group",
    "y0": "channel gate: y0 = x0 * gate, the gate broadcast over H and W",
    "n": "spatial gate: GroupNorm with num_groups = K, i.e. every channel of every row "
         "normalised over its own H*W pixels with the biased variance (divide by H*W, "
         "not H*W - 1), eps inside the sqrt, then gn.weight * xhat + gn.bias",
    "spatial_gate": "spatial gate: sigmoid(sweight * n + sbias), one value per pixel",
    "y1": "spatial gate: y1 = x1 * gate",
    "y": "group_merge_forward: concatenate y0 and y1 along the channels of each row, "
         "then reshape (B*G, 2K, H, W) back to (B, C, H, W)",
    "out": "channel_shuffle_forward with 2 groups: output channel 2j + i is input "
           "channel i*C/2 + j (channels 1..8 become 1,5,2,6,3,7,4,8)",
    "dy": "channel_shuffle_backward: the inverse permutation, itself a shuffle with C/2 groups",
    "dy0": "group_merge_backward: reshape dout to (B*G, 2K, H, W); dy0 is the first K channels",
    "dy1": "group_merge_backward: dy1 is the last K channels of each row",
    "dx1": "spatial_gate_backward: x1 is used twice, so dx1 = dy1 * gate + the path through "
           "the gate and the GroupNorm (its mean and variance terms)",
    "dsweight": "spatial_gate_backward: sum over rows and pixels of dz * n, "
                "dz = dy1 * x1 * gate * (1 - gate)",
    "dsbias": "spatial_gate_backward: sum over rows and pixels of dz",
    "dgn.weight": "spatial_gate_backward: sum of (dz * sweight) * xhat",
    "dgn.bias": "spatial_gate_backward: sum of dz * sweight",
    "dx0": "channel_gate_backward: dx0 = dy0 * gate + cweight * dz / (H*W), the second "
           "term flows back through the mean; dz = sum_hw(dy0 * x0) * gate * (1 - gate)",
    "dcweight": "channel_gate_backward: sum over rows of dz * s",
    "dcbias": "channel_gate_backward: sum over rows of dz",
    "dx": "group_split_backward: concatenate dx0 and dx1 along the channels of each row "
          "and reshape back to (B, C, H, W)",
}

def unnamed(part: str) -> str:
    """Why a value that a part keeps in its cache could not be read from that cache."""
    return (f"the cache {part} returned does not name it (the tracer reads the fields s, gate and n; a tuple has "
            f"no names): give the cache named fields, a dataclass or a dict, to see it here")


def hint_for(tensor: str) -> str:
    """What the step that makes ``tensor`` does; ``grads['cweight']`` is ``dcweight``'s."""
    return HINTS.get(tensor) or HINTS.get("d" + tensor.removeprefix("grads[").strip("'\"]"), "")


#: The parts in the order they run, each with the tensors it produces.
FORWARD_STEPS = (
    ("group_split_forward", ("x0", "x1")),
    ("channel_gate_forward", ("s", "channel_gate", "y0")),
    ("spatial_gate_forward", ("n", "spatial_gate", "y1")),
    ("group_merge_forward", ("y",)),
    ("channel_shuffle_forward", ("out",)),
)
BACKWARD_STEPS = (
    ("channel_shuffle_backward", ("dy",)),
    ("group_merge_backward", ("dy0", "dy1")),
    ("spatial_gate_backward", ("dx1", "dsweight", "dsbias", "dgn.weight", "dgn.bias")),
    ("channel_gate_backward", ("dx0", "dcweight", "dcbias")),
    ("group_split_backward", ("dx",)),
)
PART_NAMES = tuple(name for name, _ in FORWARD_STEPS + BACKWARD_STEPS)
FORWARD_OF = {bw: fw for (fw, _), (bw, _) in zip(FORWARD_STEPS, reversed(BACKWARD_STEPS))}
CACHED = ("s", "channel_gate", "n", "spatial_gate")   # read from a forward part's cache
_SMALL = 1e-12      # diffs below this (0 included) print as "<1e-12", the same on every machine
RAISED = object()  # the cache of a part that raised


@dataclass(frozen=True)
class TraceRow:
    """One compared tensor. status: "ok", "DIFFERS", "raised", or one of :data:`UNCOMPARED`
    ("not seen": the value could not be read, "skipped": its step could not run), with
    ``detail`` saying why in words."""
    step: str
    tensor: str
    shape: tuple
    max_abs: float
    max_rel: float
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def diverged(self) -> bool:
        return self.status in ("DIFFERS", "raised")

    def cells(self) -> tuple[str, ...]:
        return (self.step, self.tensor, str(self.shape), _fmt(self.max_abs), _fmt(self.max_rel), self.status)


def _fmt(value: float) -> str:
    if np.isnan(value):
        return "-"
    return f"<{_SMALL:.0e}" if value < _SMALL else f"{value:.1e}"      # exact 0 too: stable across CPUs


_HEADER = ("step", "tensor", "shape", "max abs diff", "max rel diff", "ok")
UNCOMPARED = ("not seen", "skipped")


@dataclass(repr=False)
class TraceReport:
    """Every compared intermediate (``rows``, forward then backward order) and the first
    one that differs (``first_divergence``, None when all agree)."""
    rows: list[TraceRow]
    rtol: float

    @property
    def first_divergence(self) -> TraceRow | None:
        return next((row for row in self.rows if row.diverged), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    def uncompared(self) -> str:
        """Why each row without a comparison has none, rows with the same reason together."""
        reasons = {}
        for row in self.rows:
            if row.status in UNCOMPARED:
                reasons.setdefault(row.detail, []).append(row.tensor)
        return "\n".join(f"  {', '.join(tensors)}: {why}" for why, tensors in reasons.items())

    def summary(self) -> str:
        """The verdict, with the hint for the first divergence."""
        first = self.first_divergence
        note = f"(float64, rtol {self.rtol:g}; max rel diff = max abs diff / max |torch value|)"
        missing = sum(row.status in UNCOMPARED for row in self.rows)
        unseen = f"; {missing} could not be compared (why: above)" if missing else ""
        if first is None:
            return f"All {sum(row.ok for row in self.rows)} intermediates match sa_torch.SALayer{unseen} {note}."
        what = "" if first.step in ("sa_forward", "sa_backward") else \
            f"\n  what this step does: {hint_for(first.tensor)}"
        return f"First divergence: {first.tensor!r} in {first.step} ({first.status}) {note}.\n  {first.detail}{what}"

    def __repr__(self) -> str:
        first = self.first_divergence
        where = "none" if first is None else f"{first.tensor!r} in {first.step} ({first.status})"
        return f"<TraceReport: {len(self.rows)} tensors compared, first divergence: {where}>"

    def __str__(self) -> str:
        table = [_HEADER] + [row.cells() for row in self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(_HEADER))]
        lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        why = self.uncompared()
        return "\n".join(lines + (["", "Not compared:", why] if why else []) + ["", self.summary()])

    def _repr_markdown_(self) -> str:
        rows = [_HEADER] + [row.cells() for row in self.rows]
        md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(_HEADER)]
        for row, cells in zip(self.rows, rows[1:]):
            mark = "**" if row is self.first_divergence else ""
            md.append("| " + " | ".join(f"{mark}{c}{mark}" for c in cells) + " |")
        why = self.uncompared()
        notes = "\n\nNot compared:  \n" + why.replace("\n", "  \n") if why else ""
        return "\n".join(md) + notes + "\n\n" + self.summary().replace("\n", "  \n")


def from_cache(cache, *names):
    """The first of ``names`` found on a part's cache (attribute or key), else None."""
    for name in names:
        if isinstance(cache, Mapping) and name in cache:
            return cache[name]
        if hasattr(cache, name):
            return getattr(cache, name)
    return None


PARAM_GRADS = tuple("d" + name for name in PARAM_NAMES)


class Tracer:
    """Runs the parts one step at a time and keeps a row per tensor."""

    def __init__(self, ref: dict, rtol: float):
        self.ref, self.rtol, self.rows = ref, rtol, []

    def step(self, part: str, tensors: tuple, run, cached=()):
        """Call ``run() -> (values, cache)``; compare each named value with PyTorch.

        Returns (values, cache); when the part raises, PyTorch's values and ``RAISED``.
        ``cached`` names values read from the cache: None there means "not seen", and a
        value of the right size is reshaped (the cache's layout is the learner's choice).
        """
        try:
            values, cache = run()
        except Exception as exc:  # any failure in a learner's part is reported, not raised
            self.fill(part, tensors, "raised", f"{type(exc).__name__}: {exc}")
            return {t: self.ref[t] for t in tensors}, RAISED
        for t in tensors:
            self.compare(part, t, values[t], t in cached)
        return values, cache

    def skip(self, part: str, tensors: tuple, why: str) -> dict:
        self.fill(part, tensors, "skipped", why)
        return {t: self.ref[t] for t in tensors}

    def fill(self, part, tensors, status, detail):
        for t in tensors:
            self.rows.append(TraceRow(part, t, self.ref[t].shape, np.nan, np.nan, status, detail))

    def compare(self, part, name, value, cached: bool):
        ref = self.ref[name]
        if cached and value is None:
            self.rows.append(TraceRow(part, name, ref.shape, np.nan, np.nan, "not seen", unnamed(part)))
            return
        # a cache's layout, and a parameter gradient's (K,) or (1, K, 1, 1), are the learner's choice
        if cached or name in PARAM_GRADS:
            if isinstance(value, np.ndarray) and value.size == ref.size:
                value = value.reshape(ref.shape)
        max_abs = max_rel = np.nan
        try:
            compare(name, value, ref, rtol=self.rtol)
            status, detail = "ok", ""
        except AssertionError as exc:
            status, detail = "DIFFERS", str(exc).splitlines()[0]
        mine = np.asarray(value) if isinstance(value, np.ndarray) else None
        if mine is not None and mine.shape == ref.shape and np.issubdtype(mine.dtype, np.number):
            with np.errstate(invalid="ignore", over="ignore"):
                max_abs = float(np.max(np.abs(mine.astype(np.float64) - ref), initial=0.0))
            scale = float(np.max(np.abs(ref), initial=0.0))
            max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
        self.rows.append(TraceRow(part, name, tuple(ref.shape), max_abs, max_rel, status, detail))
