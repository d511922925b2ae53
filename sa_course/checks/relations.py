"""Relations a wrong result holds with the expected one, to rounding, beyond a reordering or
a factor: the generic diagnoses that need to know the step (its gate, its last operation,
its upstream gradient, its groups), which the check tells :class:`~.facts.Facts`.

- :func:`applied_twice`: yours is the expected with the step's last operation applied once
  more (a shuffle run twice, a cell re-run on its own output);
- :func:`gate_flipped`: an output ``input * gate`` where yours is ``input * (1 - gate)`` (a
  sign flipped inside the sigmoid) or ``input * sigmoid(gate)`` (the sigmoid applied twice),
  for the whole gate or one of its parts (the channel gate of a layer);
- :func:`upstream_forgotten`: a gradient without the upstream ``dout``: yours times dout is
  the expected, or yours is the gradient for dout = 1;
- :func:`factor_per_group`: yours (less an additive term such as beta) is the expected times
  a factor that is constant along some axes and varies along the others, groups of an axis
  included: a standard deviation where its inverse belongs varies per sample and group;
- :func:`axes_mixed`: yours holds exactly the expected values, in an order that mixes
  several axes (not one axis reordered), with an entry that shows where a value went.

Each returns a :class:`~.facts.Diagnosis` only when the relation holds for every entry.
"""
from __future__ import annotations

import itertools

import numpy as np

from sa_numpy.functional import sigmoid

from .facts import Diagnosis, Facts, aligned_factor, matches, numeric_array


def _expected(tensor: str, yours, facts: Facts) -> np.ndarray | None:
    """The expected value of a tensor when yours is a numeric array of its shape, else None."""
    expected = facts.expected.get(tensor)
    if expected is None or not numeric_array(yours) or yours.shape != expected.shape:
        return None
    return expected


def applied_twice(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """Yours is the step's last operation applied to the expected: it ran twice."""
    expected = _expected(tensor, yours, facts)
    if expected is None or tensor not in facts.twice:
        return None
    what, again = facts.twice[tensor]
    if matches(yours, again(expected)):
        return Diagnosis("generic.applied_twice", f"yours is the expected with {what} applied once more: {what} "
                         f"ran twice (called twice, or a cell re-run on its own output?)")
    return None


_GATE_MISTAKES = (
    ("generic.one_minus_gate", lambda g: 1 - g,
     "1 - sigmoid(z), or sigmoid(-z) (a sign flipped inside the sigmoid), where sigmoid(z) belongs: the gate "
     "is one minus the right one"),
    ("generic.applied_twice", sigmoid,
     "sigmoid(sigmoid(z)) where sigmoid(z) belongs: the sigmoid is applied twice (the gate passed through the "
     "sigmoid again?)"),
)


def gate_flipped(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """An output input * gate where yours has one minus the gate, or the sigmoid of the gate,
    in the whole output or in one part of it (the other parts right)."""
    expected = _expected(tensor, yours, facts)
    gated = facts.gated.get(tensor)
    if expected is None or gated is None:
        return None
    with np.errstate(all="ignore"):
        for id_, wrong, text in _GATE_MISTAKES:
            candidate = np.broadcast_to(gated.input * wrong(gated.gate), expected.shape)
            whole = "your gates (all of them)" if gated.parts else "your gate"
            for subject, mask in ((whole, None), *((f"your {name}", m) for name, m in gated.parts.items())):
                if matches(yours, candidate if mask is None else np.where(mask, candidate, expected)):
                    return Diagnosis(id_, f"{subject} computes {text}")
    return None


def upstream_forgotten(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """A gradient without the upstream gradient dout: yours * dout is the expected (a local
    derivative), or yours is the reference gradient for dout = 1 everywhere."""
    expected = _expected(tensor, yours, facts)
    upstream = facts.upstream
    if expected is None or upstream is None:
        return None
    ones = upstream.ones()
    if tensor not in ones:
        return None
    chain = "the chain rule multiplies each local derivative by the gradient that arrives from above"
    with np.errstate(all="ignore"):
        if yours.shape == upstream.dout.shape and matches(yours * upstream.dout, expected):
            return Diagnosis("generic.upstream_forgotten", f"yours times dout is the expected: the upstream "
                             f"gradient dout is missing ({chain})")
    if matches(yours, ones[tensor]):
        return Diagnosis("generic.upstream_forgotten", f"yours is the gradient for dout = 1 everywhere: the "
                         f"upstream gradient dout is missing from every term ({chain})")
    return None


# ---------------------------------------------------------------- a factor that varies per group

def _view(names: tuple[str, ...], shape, facts: Facts) -> tuple[list[int], list[str]]:
    """The tensor's shape with every axis of ``facts.splits`` split into (groups, size per group)."""
    view, labels = [], []
    for name, size in zip(names, shape):
        groups = facts.splits.get(name)
        if groups and 1 < groups < size and size % groups == 0:
            view += [groups, size // groups]
            labels += [f"group of {name}", f"{name} within a group"]
        else:
            view.append(size)
            labels.append(name)
    return view, labels


def _name_factor(factor: np.ndarray, names, shape, facts: Facts) -> str:
    """What a factor is, when it is a power of one of the check's named factors."""
    for name, value in facts.factors.items():
        aligned = aligned_factor(value, names, shape)
        if aligned is None:
            continue
        short = name.split(" = ")[0]
        inverse = facts.inverses.get(short, f"1/{short}")
        texts = {-2: f"the factor is 1/{short}²: {inverse} stands where {short} belongs (divided by {short} "
                     f"where the formula multiplies by it?)",
                 2: f"the factor is {short}²: {short} where 1/{short} belongs (multiplied by {short} where the "
                    f"formula divides by it?)",
                 -1: f"the factor is 1/{short}: the factor {short} is missing",
                 1: f"the factor is {short}: an extra factor {short}"}
        with np.errstate(all="ignore"):
            for power, text in texts.items():
                if matches(factor, np.broadcast_to(np.asarray(aligned, dtype=np.float64) ** power, shape)):
                    return text
    return ""


def factor_per_group(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """Yours (less the tensor's additive term) is the expected times a factor that is the same
    along some axes and varies along the others; the axes may be groups of an axis."""
    expected = _expected(tensor, yours, facts)
    if expected is None or expected.size < 4:
        return None
    r, y = expected.astype(np.float64), yours.astype(np.float64)
    less = ""
    if tensor in facts.offsets:
        name, offset = facts.offsets[tensor]
        r, y, less = r - offset, y - offset, f" (less {name})"
    names = facts.axes_of(tensor, expected.shape)
    view, labels = _view(names, expected.shape, facts)
    rv, yv = r.reshape(view), y.reshape(view)
    varying = [a for a in range(len(view)) if view[a] > 1]
    with np.errstate(all="ignore"):
        for size in range(1, len(varying)):
            for keep in itertools.combinations(varying, size):
                other = tuple(a for a in range(len(view)) if a not in keep)
                norms = np.sum(rv * rv, axis=other, keepdims=True)
                if np.any(norms == 0):
                    continue
                factor = np.sum(yv * rv, axis=other, keepdims=True) / norms
                if np.ptp(factor) <= 1e-6 * np.max(np.abs(factor)) or not matches(yv, rv * factor):
                    continue
                per = " and ".join(labels[a] for a in keep)
                full = np.broadcast_to(factor, view).reshape(expected.shape)
                named = _name_factor(full, names, expected.shape, facts)
                return Diagnosis("generic.factor_per_group", f"yours{less} is the expected{less} times one factor "
                                 f"per {per}, the same along the other axes: "
                                 + (named or f"a factor that depends on {per} is missing or extra"))
    return None


# ---------------------------------------------------------------- the right values, axes mixed

def axes_mixed(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """Yours is a permutation of the expected's entries in which some axis of the expected takes
    its index from other axes of yours: say which, with one entry as an example. Only for
    expected values that are all distinct, so that every entry's origin is known."""
    expected = _expected(tensor, yours, facts)
    if expected is None or np.unique(expected).size != expected.size:
        return None
    source = np.empty(expected.size, dtype=np.int64)
    source[np.argsort(yours, axis=None, kind="stable")] = np.argsort(expected, axis=None, kind="stable")
    if not matches(yours, expected.reshape(-1)[source].reshape(expected.shape)):
        return None
    names = facts.axes_of(tensor, expected.shape)
    came_from = np.unravel_index(source, expected.shape)       # per axis of the expected, yours' entries' index
    sources = []
    for axis in range(expected.ndim):
        index = came_from[axis].reshape(expected.shape)
        sources.append([a for a in range(expected.ndim) if np.any(np.diff(index, axis=a) != 0)])
    mixed = [axis for axis, src in enumerate(sources) if src and src != [axis]]
    if not mixed:
        return None
    by_source = {}
    for axis in mixed:
        by_source.setdefault(tuple(sources[axis]), []).append(names[axis])
    listed = lambda axes: " and ".join(axes) if len(axes) < 3 else ", ".join(axes[:-1]) + " and " + axes[-1]
    where = "; ".join(f"the expected's {listed(axes)} {'comes' if len(axes) == 1 else 'each come'} from your "
                      f"{listed([names[a] for a in src])}" for src, axes in by_source.items())
    first = int(np.flatnonzero(source != np.arange(expected.size))[0])
    mine = tuple(int(i) for i in np.unravel_index(first, expected.shape))
    theirs = tuple(int(i[first]) for i in came_from)
    return Diagnosis("generic.axes_mixed", f"yours holds exactly the expected values, in an order that mixes "
                     f"axes: {where} (yours at {mine} is the expected at {theirs}). A reshape that splits or "
                     f"merges axes in another order than the data's: a transpose missing before a reshape, "
                     f"or one too many?")
