"""What is wrong with a learner's array: the failure message, and a hint only when one is so.

When a check finds that an array the learner returned differs from the expected one,
:func:`failure` writes the message: the facts first, in the learner's terms ("yours",
"expected": the type, the shape, the dtype, NaN, then the largest errors and the first
index that differs), then at most one ``hint:``. The hint comes from the first diagnosis
that the learner's array *matches to rounding error*; a diagnosis that does not match says
nothing, so a hint is never a guess. Tried in this order:

1. the dtype: float32 where float64 was expected (or the reverse);
2. the known mistakes of :mod:`sa_course.checks.mistakes`, each recomputed from the
   check's inputs (:func:`recomputed`), in table order;
3. the generic diagnoses below, from what the check told :class:`Facts` about its tensors:

   - :func:`swapped`: yours is the expected value of a sibling (another output of the same
     call): two results returned or unpacked in swapped order, the cache included (when
     each of the two is the other's expected value, this comes first, before the table);
   - :func:`reordered`: the right values in the wrong order or shape: a reshape, axes
     transposed (H and W swapped), one axis permuted (channels interleaved across groups,
     halves swapped, ...); else which axes each slice of the right values still lies along;
   - :func:`scaled`: yours is the expected times a constant (H·W, N, -1, ... named from the
     shapes, else printed), or times or divided by a named array (a chain rule's missing
     ``sweight``, or any other input of the forward), or by one factor per channel;
   - the relations of :mod:`sa_course.checks.relations`, where the check told the facts
     what they need: the last step applied twice, a gate that is one minus the right one or
     has the sigmoid twice, the upstream gradient forgotten (tried before the reordering,
     which a step applied twice also is), a factor that varies per group (after the
     factors), the right values in an order that mixes axes (inside :func:`reordered`).

A candidate is a function of the learner's value that returns a :class:`Diagnosis` or None.
"""
from __future__ import annotations

import itertools

import numpy as np

from sa_numpy.gradcheck import default_rtol

from .facts import RTOL, Candidate, Diagnosis, Facts, a_kind, aligned_factor, matches, numeric_array, recomputed
from .relations import applied_twice, axes_mixed, factor_per_group, gate_flipped, upstream_forgotten

__all__ = ["RTOL", "Candidate", "Diagnosis", "Facts", "a_kind", "matches", "numeric_array", "recomputed",
           "first", "generic", "swapped", "reordered", "scaled", "describe", "failure", "hinted"]

def first(tensor: str, facts: Facts | None) -> list[Candidate]:
    """The generic diagnoses tried before the known mistakes: two outputs that are each the
    other's expected value are swapped, whatever else either one also matches."""
    return [] if facts is None else [lambda yours: swapped(tensor, yours, facts, both=True)]


def generic(tensor: str, facts: Facts | None) -> list[Candidate]:
    """The generic diagnoses tried after the known mistakes, in this order."""
    if facts is None:
        return []
    return [lambda yours, f=f: f(tensor, yours, facts) for f in (swapped, applied_twice, gate_flipped,
                                                                 upstream_forgotten, reordered, scaled,
                                                                 factor_per_group)]


# ---------------------------------------------------------------- swapped with a sibling

def swapped(tensor: str, yours, facts: Facts, both: bool = False) -> Diagnosis | None:
    """Yours is the expected value of another output of the same call (or another output of
    yours is the expected value of this one): results returned or unpacked in swapped order.
    ``both``: only when each of the two is the other's expected value."""
    labels = facts.calls.get(tensor, ())
    expected = facts.expected.get(tensor)
    fix = facts.fixes.get(tensor, "")
    for other in labels:
        if other == tensor:
            continue
        theirs = facts.yours.get(other)
        mine_is_other = matches(yours, facts.expected.get(other))
        other_is_mine = matches(theirs, expected)
        if mine_is_other and other_is_mine:
            return Diagnosis("generic.swapped", f"{tensor} and {other} are swapped: yours for {tensor} is the "
                             f"expected {other}, and yours for {other} the expected {tensor}: {fix}")
        if both:
            continue
        if mine_is_other:
            return Diagnosis("generic.swapped", f"yours for {tensor} is the expected {other}: {tensor} and "
                             f"{other} look swapped (returned or unpacked in the wrong order): {fix}")
        if other_is_mine:
            return Diagnosis("generic.swapped", f"what you returned as {other} is the expected {tensor}: "
                             f"{tensor} and {other} are swapped: {fix}")
    return None


# ---------------------------------------------------------------- the right values in the wrong order

def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return matches(np.sort(a, axis=None), np.sort(b, axis=None))


def _axis_permutation(yours: np.ndarray, expected: np.ndarray, axis: int) -> list[int] | None:
    """p with yours.take(i, axis) == expected.take(p[i], axis) for every i, if there is one."""
    n = expected.shape[axis]
    if n < 2:
        return None
    a = np.moveaxis(yours.astype(np.float64), axis, 0).reshape(n, -1)
    b = np.moveaxis(expected.astype(np.float64), axis, 0).reshape(n, -1)
    tol = RTOL * float(np.max(np.abs(b), initial=0.0)) + 1e-12
    close = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2) <= tol
    p, used = [], set()
    for i in range(n):
        j = next((int(j) for j in np.flatnonzero(close[i]) if j not in used), None)
        if j is None:
            return None
        p.append(j)
        used.add(j)
    return None if p == list(range(n)) else p


def _interleave(n: int, rows: int) -> list[int]:
    """The order of n items viewed as a (rows, n // rows) grid and read column by column."""
    return [int(i) for i in np.arange(n).reshape(rows, n // rows).T.reshape(-1)]


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n) if n % d == 0]


def describe_order(p: list[int], facts: Facts) -> str | None:
    """A name for a permutation p (yours[i] = expected[p[i]]), or None for one without a name."""
    n = len(p)
    name = lambda v: f"{facts.name_of(v)}={v}" if facts.name_of(v) and v != 2 else str(v)   # 2 means too much
    if p == list(range(n))[::-1]:
        return "reversed"
    for s in range(1, n):
        if p == [(i + s) % n for i in range(n)]:
            return "its two halves swapped" if 2 * s == n else f"rolled by {s}"
    for rows in _divisors(n):
        if p == _interleave(n, rows):
            across = ": channels interleaved across groups?" if "G" in (facts.name_of(rows) or "") else ""
            return (f"the expected's {n} entries laid out as a ({name(rows)}, {name(n // rows)}) grid and read "
                    f"column by column{across}")
    for size in reversed(_divisors(n)):
        blocks = [p[b * size] for b in range(n // size)]
        if all(q % size == 0 for q in blocks) and \
                all(p[b * size + i] == blocks[b] + i for b in range(n // size) for i in range(size)):
            inner = describe_order([q // size for q in blocks], facts)
            return f"its blocks of {size} in another order: {inner}" if inner else None
        if all(p[b * size + i] == b * size + p[i] for b in range(n // size) for i in range(size)):
            inner = describe_order(p[:size], facts)
            return f"inside each block of {size}: {inner}" if inner else None
    return None


def _axes_text(names) -> str:
    return ", ".join(names)


def reordered(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """Yours holds exactly the expected values, in another order or shape: say how, when a
    specific rearrangement reproduces yours; otherwise along which axes the values stayed."""
    expected = facts.expected.get(tensor)
    if expected is None or not numeric_array(yours) or yours.size != expected.size or yours.size < 2 \
            or not _same_values(yours, expected):
        return None
    names = facts.axes_of(tensor, expected.shape)
    transposes = [perm for perm in itertools.permutations(range(expected.ndim)) if perm != tuple(range(expected.ndim))]

    def swap_text(perm) -> str:
        moved = [i for i in range(len(perm)) if perm[i] != i]
        if len(moved) == 2:
            return f"{names[moved[0]]} and {names[moved[1]]} swapped"
        return f"its axes in the order ({_axes_text(names[i] for i in perm)})"

    if yours.shape != expected.shape:
        if matches(yours, expected.reshape(yours.shape)):
            return Diagnosis("generic.reshaped", f"right values, wrong shape: yours is the expected reshaped to "
                             f"{yours.shape}; return it in the shape {expected.shape}")
        for perm in transposes:
            if expected.transpose(perm).shape == yours.shape and matches(yours, expected.transpose(perm)):
                return Diagnosis("generic.transposed", f"right values, axes in the wrong order: yours is the "
                                 f"expected with {swap_text(perm)} (axes ({_axes_text(names)}) expected); "
                                 f"a transpose, swapaxes or einsum with the wrong axes?")
        return Diagnosis("generic.permuted", f"yours holds exactly the expected values, but in the shape "
                         f"{yours.shape} and another order; the expected shape is {expected.shape} "
                         f"({_axes_text(names)})")
    for axis in range(expected.ndim):
        p = _axis_permutation(yours, expected, axis)
        if p is not None:
            what = describe_order(p, facts)
            if what:
                return Diagnosis("generic.reordered", f"the right values in the wrong order: axis {names[axis]} "
                                 f"looks reordered ({what})")
            return Diagnosis("generic.reordered", f"the right values in the wrong order: the slices along axis "
                             f"{names[axis]} are reordered, yours at {names[axis]}=i is the expected at "
                             f"{names[axis]}=p[i] with p = {tuple(p)}")
    for perm in transposes:
        if matches(yours, expected.transpose(perm).reshape(expected.shape)):
            return Diagnosis("generic.transposed", f"the right values in the wrong order: yours is the expected "
                             f"with {swap_text(perm)} and then reshaped back to {expected.shape}; a transpose, "
                             f"swapaxes or reshape with the wrong axes?")
    for axis in range(expected.ndim - 1):           # two neighbouring axes read as one
        merged = expected.shape[:axis] + (-1,) + expected.shape[axis + 2:]
        p = _axis_permutation(yours.reshape(merged), expected.reshape(merged), axis)
        what = describe_order(p, facts) if p is not None else None
        if what:
            return Diagnosis("generic.reordered", f"the right values in the wrong order: axes {names[axis]} and "
                             f"{names[axis + 1]}, read as one axis of {expected.shape[axis] * expected.shape[axis + 1]}"
                             f" entries, look reordered ({what})")
    mixed = axes_mixed(tensor, yours, facts)
    if mixed is not None:
        return mixed
    kept = [names[a] for a in range(expected.ndim) if expected.shape[a] > 1 and all(
        _same_values(yours.take(i, axis=a), expected.take(i, axis=a)) for i in range(expected.shape[a]))]
    moved = [n for a, n in enumerate(names) if n not in kept and expected.shape[a] > 1]
    where = (f"each slice at a fixed {'/'.join(kept)} holds its right values, so they were moved along "
             f"{_axes_text(moved)} only" if kept else "they were moved across every axis")
    return Diagnosis("generic.permuted", f"yours holds exactly the expected values but in another order: {where}")


# ---------------------------------------------------------------- off by a factor

def _factor_names(facts: Facts) -> list[tuple[float, str]]:
    """(value, what it means) for the constants a result is commonly off by."""
    two = facts.name_of(2)
    also = f", or a factor {two} = 2" if two else ""
    named = [(-1.0, "minus the expected, everywhere: a sign is flipped"),
             (2.0, f"twice the expected, everywhere: a term counted twice{also} too many?"),
             (0.5, f"half the expected, everywhere: a factor 1/2{also} too few?")]
    for name, v in facts.numbers.items():
        if v in (0, 1, 2):
            continue
        n = f"({name})" if "·" in name or "/" in name else name
        named += [(float(v), f"the expected times {name} = {v:g}, everywhere: a factor {name} too many "
                             f"(a sum where the formula has a mean, or a missing / {n}?)"),
                  (1.0 / v, f"the expected divided by {name} = {v:g}, everywhere: a factor {name} too few "
                            f"(a mean where the formula has a sum, or an extra / {n}?)"),
                  (-float(v), f"the expected times -{name} = -{v:g}, everywhere: a factor {name} too many, "
                              f"and a flipped sign"),
                  (-1.0 / v, f"the expected divided by -{name} = -{v:g}, everywhere: a factor {name} too few, "
                             f"and a flipped sign")]
    return named


def scaled(tensor: str, yours, facts: Facts) -> Diagnosis | None:
    """Yours is the expected times a constant, times or divided by a named factor, or times
    one factor per slice along an axis."""
    expected = facts.expected.get(tensor)
    if expected is None or not numeric_array(yours) or yours.shape != expected.shape:
        return None
    r, y = expected.astype(np.float64), yours.astype(np.float64)
    rr = float(np.sum(r * r))
    if r.size >= 2 and rr > 0:
        f = float(np.sum(y * r)) / rr
        if np.isfinite(f) and abs(f - 1) > 1e-9 and matches(yours, f * r):
            named = next((text for v, text in _factor_names(facts) if abs(f - v) <= 1e-6 * abs(v)), None)
            return Diagnosis("generic.constant_factor", f"yours is {named}" if named else
                             f"yours is the expected times {f:.6g}, everywhere: a constant factor")
    names = facts.axes_of(tensor, expected.shape)
    with np.errstate(all="ignore"):
        for name, factor in facts.factors.items():
            aligned = aligned_factor(factor, names, expected.shape)
            if aligned is None:
                continue
            if matches(yours, r / aligned):
                return Diagnosis("generic.missing_factor", f"yours is the expected divided by {name}: the "
                                 f"chain rule's factor {name} is missing")
            if matches(yours, r * aligned):
                return Diagnosis("generic.extra_factor", f"yours is the expected times {name}: an extra factor "
                                 f"{name}")
    for axis in range(expected.ndim):
        n = expected.shape[axis]
        if n < 2 or expected.size // n < 2:
            continue
        ra, ya = np.moveaxis(r, axis, 0).reshape(n, -1), np.moveaxis(y, axis, 0).reshape(n, -1)
        norms = np.sum(ra * ra, axis=1)
        if np.any(norms == 0):
            continue
        per = np.sum(ya * ra, axis=1) / norms
        if np.ptp(per) > 1e-6 * np.max(np.abs(per)) and \
                matches(yours, r * per.reshape([-1 if i == axis else 1 for i in range(r.ndim)])):
            return Diagnosis("generic.factor_per_slice", f"yours is the expected times one factor per "
                             f"{names[axis]} ({', '.join(f'{v:.4g}' for v in per)}): a factor that depends on "
                             f"{names[axis]} is missing or extra")
    return None


# ---------------------------------------------------------------- the message

def _first_match(yours, expected: np.ndarray, candidates) -> Diagnosis | None:
    if numeric_array(yours) and yours.dtype != expected.dtype:
        return Diagnosis("generic.dtype", f"compute in the input's dtype ({expected.dtype}): look for "
                         f".astype(...), np.float32 or an array created without dtype=x.dtype")
    for candidate in candidates:
        try:
            found = candidate(yours)
        except Exception:     # a diagnosis that cannot be computed for this value does not apply
            found = None
        if found is not None:
            return found
    return None


def describe(yours, expected: np.ndarray, rtol: float | None = None) -> str:
    """How yours differs from the expected, in the order the checks look: type, shape, dtype,
    NaN, values. The tolerance is sa_numpy.compare's."""
    if yours is None:
        return "yours is None: did the function forget to return it?"
    if isinstance(yours, tuple):
        return f"yours is a tuple of {len(yours)} items, expected one array"
    if not isinstance(yours, np.ndarray):
        return f"yours is {a_kind(yours)}, expected a numpy.ndarray"
    if yours.shape != expected.shape:
        return f"shape {yours.shape} differs from the expected {expected.shape}"
    if yours.dtype != expected.dtype:
        return f"dtype {yours.dtype} differs from the expected {expected.dtype}"
    if yours.dtype.kind not in "fiu":
        return f"dtype {yours.dtype} is not numeric"
    rtol = default_rtol(expected.dtype) if rtol is None else rtol
    a, b = yours.astype(np.float64), expected.astype(np.float64)
    bad_nan = np.isnan(a) != np.isnan(b)
    if bad_nan.any():
        idx = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        return (f"NaN where the expected has none (or the reverse) at index {idx}: yours {float(a[idx])}, "
                f"expected {float(b[idx])}; {int(bad_nan.sum())} such entries")
    with np.errstate(all="ignore"):
        finite = np.isfinite(a) & np.isfinite(b)
        diff = np.where(finite, np.abs(a - b), np.where(a == b, 0.0, np.inf))
        scale = float(np.max(np.abs(np.where(np.isfinite(b), b, 0.0)), initial=0.0))
        atol = rtol * scale + 100 * float(np.finfo(expected.dtype if expected.dtype.kind == "f" else np.float64).eps)
        rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(b), atol if atol > 0 else np.finfo(np.float64).tiny))
        bad = diff > atol + rtol * np.abs(np.where(np.isfinite(b), b, 0.0))
    worst = np.argwhere(bad)[0] if bad.any() else np.unravel_index(np.argmax(diff), diff.shape)
    idx = tuple(int(i) for i in worst)
    return (f"values differ: max abs diff {float(np.max(diff, initial=0.0)):.3e}, max rel diff "
            f"{float(np.max(rel, initial=0.0)):.3e} (tolerance rtol={rtol:g}, atol={atol:.1e}); "
            f"{int(bad.sum())} of {bad.size} entries off; first at index {idx}: yours {a[idx]:.10g}, "
            f"expected {b[idx]:.10g}")


def failure(name: str, yours, expected: np.ndarray, candidates=(), rtol: float | None = None) -> AssertionError:
    """The AssertionError for a failed comparison: the facts, then the first hint that matches.
    Its ``mistake`` attribute is the id of what the hint diagnoses (None without a hint)."""
    diagnosis = _first_match(yours, expected, candidates)
    error = AssertionError(f"{name}: {describe(yours, expected, rtol)}"
                           + (f"\n  hint: {diagnosis.text}" if diagnosis else ""))
    error.mistake = diagnosis.id if diagnosis else None
    return error


def hinted(message: str, id_: str, hint: str) -> AssertionError:
    """An AssertionError with a hint that the check established itself (a swapped return, a dtype)."""
    error = AssertionError(f"{message}\n  hint: {hint}")
    error.mistake = id_
    return error
