"""Trace your own ``sa_forward`` and ``sa_backward`` against PyTorch, intermediate by intermediate.

:func:`trace_layer` with ``forward=`` (and ``backward=``) comes here::

    >>> from sa_course.trace import trace_layer
    >>> print(trace_layer(x, None, groups=4, forward=sa_forward, backward=sa_backward))

Your functions run as you wrote them, on x, random parameters and a random dout, in
float64, next to :class:`sa_torch.SALayer` and its autograd. While they run, every part they
call by its name (``group_split_forward``, ``channel_gate_forward``, ... as the notebook's
global names) is watched: what it was given and what it returned are copied as they pass,
and the names are put back afterwards. The pooled ``s``, the gates and ``n`` come from the
cache each gate returns (fields named ``s``, ``gate``, ``n``), or from fields of the cache
your ``sa_forward`` returns (``x0``, ``s``, ``channel.gate``, ...). What your functions return
(``out``, ``dx``, every ``grads[...]``) is compared too, where it is not the very value of a
watched part.

A row that cannot be compared says why in words: a part called in another way (through a
module, or written inline) cannot be watched, a cache without names cannot be read, a step
after an exception never ran. Every watched call is also run through the reference part on
the same arguments, so the first divergence says whether the part itself is wrong or what
it was given.
"""
from __future__ import annotations

import functools

import numpy as np

from sa_numpy.layer import PARTS
from sa_numpy.validate import PARAM_NAMES

from .checks.facts import a_kind, matches
from .checks.harness import where
from .trace_rows import (BACKWARD_STEPS, CACHED, FORWARD_OF, FORWARD_STEPS, TraceReport, TraceRow, Tracer, from_cache,
                         unnamed)

#: Where a forward intermediate may sit in the cache your sa_forward returns (attribute or key paths).
CACHE_PATHS = {"x0": ("x0", "channel.x0"), "x1": ("x1", "spatial.x1"), "s": ("s", "channel.s"),
               "channel_gate": ("channel_gate", "channel.gate"), "y0": ("y0",), "n": ("n", "spatial.n"),
               "spatial_gate": ("spatial_gate", "spatial.gate"), "y1": ("y1",), "y": ("y",)}
_GRAD_OF = {n: "d" + n for n in PARAM_NAMES}       # grads['cweight'] is the part's dcweight


def _copied(value):
    """A copy of every array in a value (tuples, lists and dicts of them); anything else as is."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(_copied(v) for v in value)
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return value


def _named(part: str, result) -> dict:
    """The tracer's tensors in what a part returned (copies): None for a value its cache does not name."""
    if part.endswith("_backward"):
        tensors = dict(BACKWARD_STEPS)[part]
        values = (result,) if len(tensors) == 1 else tuple(result)
        if len(values) != len(tensors):
            raise ValueError(f"{part} returned {len(values)} values, not {len(tensors)} {tensors}")
        return dict(zip(tensors, _copied(values)))
    main, cache = result
    found = {"group_split_forward": lambda: {"x0": main[0], "x1": main[1]},
             "channel_gate_forward": lambda: {"s": from_cache(cache, "s"), "y0": main,
                                              "channel_gate": from_cache(cache, "gate", "channel_gate")},
             "spatial_gate_forward": lambda: {"n": from_cache(cache, "n"), "y1": main,
                                              "spatial_gate": from_cache(cache, "gate", "spatial_gate")},
             "group_merge_forward": lambda: {"y": main},
             "channel_shuffle_forward": lambda: {"out": main}}[part]()
    return _copied(found)


class _Call:
    """One watched call of a part: copies of its arguments and of its tensors (or why not)."""

    def __init__(self, args, kwargs):
        self.args, self.kwargs, self.values, self.error, self.raised = args, kwargs, {}, "", None


class _Watch:
    """Records the first top-level call of every part while the learner's functions run
    (a part called from inside another part, as a backward that shuffles, is not recorded)."""

    def __init__(self):
        self.calls: dict[str, _Call] = {}
        self.depth = 0

    def spy(self, part: str, fn):
        @functools.wraps(fn)
        def watched(*args, **kwargs):
            top = self.depth == 0 and part not in self.calls
            call = _Call(_copied(args), _copied(kwargs)) if top else None
            self.depth += 1
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if call is not None:
                    call.raised = exc
                    self.calls[part] = call
                raise
            finally:
                self.depth -= 1
            if call is not None:
                try:
                    call.values = _named(part, result)
                except Exception:
                    call.error = f"{part} returned {a_kind(result)}, not what the reference {part} returns"
                self.calls[part] = call
            return result
        watched.__traced_part__ = part
        return watched

    def run(self, functions, fn, *args, **kwargs):
        """fn(*args, **kwargs) with the parts in the namespaces of ``functions`` watched; the names
        are put back afterwards, whatever happens. Returns (result, exception)."""
        swapped = []
        for namespace in {id(g): g for g in (getattr(f, "__globals__", None) for f in functions) if g}.values():
            for part in PARTS:
                original = namespace.get(part)
                if callable(original) and not hasattr(original, "__traced_part__"):
                    namespace[part] = self.spy(part, original)
                    swapped.append((namespace, part, original))
        try:
            return fn(*args, **kwargs), None
        except Exception as exc:      # the learner's code: reported on its row, never raised
            return None, exc
        finally:
            for namespace, part, original in swapped:
                if getattr(namespace.get(part), "__traced_part__", None) == part:
                    namespace[part] = original


def _lookup(cache, path: str):
    """A value at an attribute/key path ("channel.gate") of a cache, or None."""
    value = cache
    for name in path.split("."):
        value = from_cache(value, name)
        if value is None:
            return None
    return value


def _raised(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}{where(exc.__traceback__)}"


def _itself(part: str, tensor: str, call: _Call, forward_call: _Call | None) -> str:
    """Whether the reference part, given what the learner's part was given, returns the same tensor."""
    try:
        if part.endswith("_backward"):
            if forward_call is None:
                return ""
            fw = FORWARD_OF[part]
            cache = PARTS[fw](*forward_call.args, **forward_call.kwargs)[1]
            reference = _named(part, PARTS[part](call.args[0], cache))[tensor]
        else:
            reference = _named(part, PARTS[part](*call.args, **call.kwargs))[tensor]
        yours = call.values[tensor]
        same = matches(np.asarray(yours).reshape(-1), np.asarray(reference).reshape(-1))
    except Exception:          # the reference part cannot run on these arguments: no verdict
        return ""
    if same:
        return (f"\n  {part} itself is right: the reference {part}, given the same arguments, returns the same "
                f"{tensor}. What your function passed it is wrong (which half, which parameters, in which order?)")
    return (f"\n  the reference {part}, given the same arguments, returns another {tensor}: {part} itself is "
            f"wrong, or its cache")


class _Chain:
    """The rows of one traced chain."""

    def __init__(self, tracer: Tracer):
        self.t = tracer

    def compare(self, step: str, tensor: str, value, ref_name: str | None = None, why_wrong: str = ""):
        ref_name = ref_name or tensor
        before = len(self.t.rows)
        self.t.compare(step, ref_name, value, ref_name in CACHED)
        row = self.t.rows[before]
        if tensor != ref_name or (why_wrong and row.diverged):
            self.t.rows[before] = TraceRow(row.step, tensor, row.shape, row.max_abs, row.max_rel, row.status,
                                           row.detail + (why_wrong if row.diverged else ""))

    def unseen(self, step: str, tensor: str, why: str, ref_name: str | None = None, status: str = "not seen"):
        ref = self.t.ref[ref_name or tensor]
        self.t.rows.append(TraceRow(step, tensor, ref.shape, np.nan, np.nan, status, why))

    def parts(self, steps, calls, who: str, error, cache=None, forwards=None, returned=()):
        """A row per tensor of every part in ``steps``: watched, found in the cache, or why not.
        A tensor in ``returned`` that was not watched gets no row here: the function returns it."""
        for part, tensors in steps:
            call = calls.get(part)
            for tensor in tensors:
                if call is None and error is None and tensor in returned:
                    continue
                if call is not None and call.raised is not None:
                    self.unseen(part, tensor, _raised(call.raised), status="raised")
                    continue
                value = call.values.get(tensor) if call is not None else None
                if value is None and cache is not None and tensor in CACHE_PATHS:
                    value = next((v for v in map(lambda p: _lookup(cache, p), CACHE_PATHS[tensor])
                                  if v is not None), None)
                if value is not None:
                    forward_call = (forwards or {}).get(FORWARD_OF.get(part, ""))
                    verdict = _itself(part, tensor, call, forward_call) if call is not None and \
                        tensor in call.values else ""
                    self.compare(part, tensor, value, why_wrong=verdict)
                elif call is not None and call.error:
                    self.unseen(part, tensor, call.error)
                elif call is not None:
                    self.unseen(part, tensor, unnamed(part))
                elif error is not None:
                    self.unseen(part, tensor, f"your {who} stopped before this step (it raised)", status="skipped")
                else:
                    nor = "; nor does the cache it returned name it" if cache is not None else ""
                    self.unseen(part, tensor, f"your {who} did not call {part} by that name (it called it through a "
                                f"module, or wrote it inline), so what it returns could not be seen{nor}")


def trace_chain(forward, backward, x: np.ndarray, official: dict, groups: int, dout: np.ndarray, eps: float,
                tracer: Tracer) -> TraceReport:
    """Run the learner's ``forward`` (and ``backward``, when given) watched, and compare every
    intermediate with ``tracer.ref`` (PyTorch's). x, official parameters and dout as
    :func:`sa_course.trace.trace_layer` prepared them."""
    chain, watch = _Chain(tracer), _Watch()
    functions = [f for f in (forward, backward) if f is not None]
    params = {n: v.copy() for n, v in official.items()}
    result, error = watch.run(functions, forward, x.copy(), params, groups, eps=eps)
    forwards, watch.calls = watch.calls, {}
    out = cache = None
    if error is None and not (isinstance(result, (tuple, list)) and len(result) == 2):
        error = TypeError(f"sa_forward should return (out, cache); yours returned {a_kind(result)}")
    elif error is None:
        out, cache = result
    chain.parts(FORWARD_STEPS, forwards, "sa_forward", error, cache, returned=("out",))
    if error is not None:
        if not any(call.raised is error for call in forwards.values()):
            chain.unseen("sa_forward", "out", _raised(error), status="raised")
    elif "channel_shuffle_forward" not in forwards or not _same(out, forwards["channel_shuffle_forward"], "out"):
        chain.compare("sa_forward returns", "out", out)
    if backward is None:
        return TraceReport(tracer.rows, tracer.rtol)
    if error is not None:
        for part, tensors in BACKWARD_STEPS:
            for tensor in tensors:
                chain.unseen(part, tensor, "your sa_forward raised, so there is no cache to run sa_backward with",
                             status="skipped")
        return TraceReport(tracer.rows, tracer.rtol)
    result, error = watch.run(functions, backward, dout.copy(), cache)
    backwards = watch.calls
    if error is None and not (isinstance(result, (tuple, list)) and len(result) == 2):
        error = TypeError(f"sa_backward should return (dx, grads); yours returned {a_kind(result)}")
    chain.parts(BACKWARD_STEPS, backwards, "sa_backward", error, forwards=forwards, returned=("dx",))
    if error is not None:
        if not any(call.raised is error for call in backwards.values()):
            chain.unseen("sa_backward", "dx", _raised(error), status="raised")
        return TraceReport(tracer.rows, tracer.rtol)
    dx, grads = result
    if "group_split_backward" not in backwards or not _same(dx, backwards["group_split_backward"], "dx"):
        chain.compare("sa_backward returns", "dx", dx)
    for name in PARAM_NAMES:
        label, part = f"grads[{name!r}]", next(p for p, ts in BACKWARD_STEPS if _GRAD_OF[name] in ts)
        mine = grads.get(name) if isinstance(grads, dict) else None
        if mine is None:
            chain.unseen("sa_backward returns", label, f"grads has no key {name!r} (it is {a_kind(grads)}"
                         + (f" with the keys {sorted(map(str, grads))})" if isinstance(grads, dict) else ")"),
                         ref_name=_GRAD_OF[name], status="DIFFERS")
        elif part not in backwards or not _same(mine, backwards[part], _GRAD_OF[name]):
            chain.compare("sa_backward returns", label, mine, ref_name=_GRAD_OF[name])
    return TraceReport(tracer.rows, tracer.rtol)


def _same(value, call: _Call, tensor: str) -> bool:
    """Whether a returned value is exactly what a watched part produced (then its row says it all)."""
    seen = call.values.get(tensor)
    return isinstance(value, np.ndarray) and isinstance(seen, np.ndarray) and value.size == seen.size and \
        np.array_equal(value.reshape(-1), seen.reshape(-1))
