"""The vocabulary of the diagnoses: what a diagnosis is, when a candidate matches, and
the :class:`Facts` a check tells them about its tensors (their siblings, the shapes'
numbers). :mod:`sa_course.checks.diagnose` builds the diagnoses on these.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

RTOL = 1e-8          # a diagnosis matches when every entry is within RTOL * max|candidate| (+ 1e-12)


@dataclass(frozen=True)
class Diagnosis:
    """A hint and the id of what it diagnoses ("channel_gate.y0.no_sigmoid", "generic.swapped", ...)."""
    id: str
    text: str


Candidate = Callable[[object], "Diagnosis | None"]


def a_kind(value) -> str:
    """ "a tuple", "an ndarray": the type of a value, for a message."""
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' or kind == 'ndarray' else 'a'} {kind}"


def numeric_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "fiu"


def matches(yours, candidate) -> bool:
    """Whether the learner's array equals a candidate array to rounding error (same shape)."""
    if not numeric_array(yours) or candidate is None:
        return False
    b = np.asarray(candidate)
    if yours.shape != b.shape or b.dtype.kind not in "fiu":
        return False
    with np.errstate(all="ignore"):
        b = b.astype(np.float64)
        scale = float(np.max(np.abs(b), initial=0.0))
        return bool(np.all(np.abs(yours.astype(np.float64) - b) <= RTOL * scale + 1e-12))


def recomputed(id_: str, text: str, make: Callable) -> Candidate:
    """A known mistake as a candidate: it matches when yours equals ``make()`` (None: does not apply)."""
    def candidate(yours):
        if not numeric_array(yours):
            return None
        with np.errstate(all="ignore"):
            return Diagnosis(id_, text) if matches(yours, make()) else None
    return candidate


# ---------------------------------------------------------------- what a check tells the diagnoses

@dataclass
class Facts:
    """What one check knows about its tensors, for the generic diagnoses.

    ``numbers`` names the shape-derived numbers ({"H·W": 35, "N": 6, ...}) a constant
    factor is named after; ``axes`` gives each tensor's axis names (("N", "K", "H", "W"));
    ``factors`` the named arrays a chain rule multiplies by: ``(vector, axis name)`` for a
    per-channel parameter, or an array that broadcasts against the tensors it applies to.
    :meth:`returned` records each call of a learner's function (what it returned and what
    was expected), so that outputs can be compared with their siblings.
    """
    numbers: dict[str, float] = field(default_factory=dict)
    axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    factors: dict[str, object] = field(default_factory=dict)
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    yours: dict[str, object] = field(default_factory=dict)
    calls: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fixes: dict[str, str] = field(default_factory=dict)

    def returned(self, labels, values, expected: dict, fix: str | None = None) -> None:
        """One call of a learner's function: its outputs' labels in return order, the values it
        returned (a cache included, labelled "cache"), and the expected value of each output.
        ``fix`` says how to put swapped outputs right (default: the order to return them in)."""
        labels = tuple(labels)
        for label, value in zip(labels, values):
            self.yours[label] = value
            self.calls[label] = labels
            self.fixes[label] = fix or f"return (and unpack) them in the order ({', '.join(labels)})"
        self.expected.update(expected)

    def axes_of(self, tensor: str, shape) -> tuple[str, ...]:
        names = self.axes.get(tensor, ())
        return tuple(names) if len(names) == len(shape) else tuple(f"axis {i}" for i in range(len(shape)))

    def name_of(self, value: float) -> str | None:
        """The names of a shape-derived number, "H·W" for 35, or None."""
        names = [n for n, v in self.numbers.items() if v == value]
        return " or ".join(names) if names else None
