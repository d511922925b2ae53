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


def aligned_factor(factor, names: tuple[str, ...], shape) -> np.ndarray | None:
    """A named factor in a shape that broadcasts against a tensor, or None where it does not apply."""
    if isinstance(factor, tuple):
        vector, axis = factor
        vector = np.ravel(vector)
        hits = [i for i, n in enumerate(names) if n == axis and shape[i] == vector.size]
        if len(hits) != 1:
            return None
        return vector.reshape([-1 if i == hits[0] else 1 for i in range(len(shape))])
    try:
        return factor if np.broadcast_shapes(np.shape(factor), shape) == tuple(shape) else None
    except ValueError:
        return None


# ---------------------------------------------------------------- what a check tells the diagnoses

@dataclass(frozen=True)
class Gated:
    """An output that is ``input * gate`` (the gate broadcast against the input), and the
    parts of it that separate gates produce (``{"channel gate": mask, ...}``, masks of the
    output's shape), so that a diagnosis can name the gate that went wrong."""
    input: np.ndarray
    gate: np.ndarray
    parts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Upstream:
    """The upstream gradient a backward was given, and the reference gradients for an
    upstream gradient of ones (``ones()``, by output label; computed on demand)."""
    dout: np.ndarray
    ones: Callable[[], dict]


@dataclass
class Facts:
    """What one check knows about its tensors, for the generic diagnoses.

    ``numbers`` names the shape-derived numbers ({"H·W": 35, "N": 6, ...}) a constant
    factor is named after; ``axes`` gives each tensor's axis names (("N", "K", "H", "W"));
    ``factors`` the named arrays a chain rule multiplies by: ``(vector, axis name)`` for a
    per-channel parameter, or an array that broadcasts against the tensors it applies to.
    :meth:`returned` records each call of a learner's function (what it returned and what
    was expected), so that outputs can be compared with their siblings.

    For the relations of :mod:`sa_course.checks.relations`: ``gated`` the outputs that are an
    input times a gate (:class:`Gated`); ``twice`` per output, what its last step is and that
    step applied to a value (``("the shuffle", f)``: yours == f(expected) means the step ran
    twice); ``upstream`` the backward's dout (:class:`Upstream`); ``splits`` an axis that
    falls into groups (``{"C": G}``), so that a factor can vary per group; ``offsets`` an
    output's additive term (``{"out": ("beta", beta)}``), removed before looking for a
    factor; ``inverses`` what a factor's inverse is called (``{"rstd": "the standard
    deviation"}``).
    """
    numbers: dict[str, float] = field(default_factory=dict)
    axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    factors: dict[str, object] = field(default_factory=dict)
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    yours: dict[str, object] = field(default_factory=dict)
    calls: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fixes: dict[str, str] = field(default_factory=dict)
    gated: dict[str, Gated] = field(default_factory=dict)
    twice: dict[str, tuple[str, Callable]] = field(default_factory=dict)
    upstream: Upstream | None = None
    splits: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    inverses: dict[str, str] = field(default_factory=dict)

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
