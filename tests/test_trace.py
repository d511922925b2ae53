"""The tracer finds the first intermediate where a NumPy layer departs from PyTorch."""
import linecache
import subprocess
import sys

import numpy as np
import pytest

from sa_numpy.channel_gate import channel_gate_backward, channel_gate_forward
from sa_numpy.groupnorm import GroupNormCache
from sa_numpy.grouping import group_split_forward
from sa_numpy.spatial_gate import SpatialGateCache
from sa_numpy.functional import sigmoid
from sa_course.trace import HINTS, trace_layer

B, C, H, W, G = 2, 16, 5, 4, 2        # K = 4; H != W so that a transposed map cannot pass


@pytest.fixture
def x():
    return np.random.default_rng(1).standard_normal((B, C, H, W))


def test_import_does_not_load_torch():
    code = "import sys, sa_course.trace; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reference_parts_match_torch_everywhere(x):
    report = trace_layer(x, None, G)
    assert report.first_divergence is None and report.ok
    names = [row.tensor for row in report.rows]
    assert names == ["x0", "x1", "s", "channel_gate", "y0", "n", "spatial_gate", "y1", "y", "out",
                     "dy", "dy0", "dy1", "dx1", "dsweight", "dsbias", "dgn.weight", "dgn.bias",
                     "dx0", "dcweight", "dcbias", "dx"]
    assert all(row.status == "ok" and row.max_rel < 1e-12 for row in report.rows)
    assert "All 22 intermediates match" in str(report)


def unbiased_spatial_gate_forward(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    """A classic mistake: GroupNorm with the unbiased variance (divide by H*W - 1)."""
    mean = x1.mean(axis=(2, 3), keepdims=True)
    rstd = 1 / np.sqrt(x1.var(axis=(2, 3), ddof=1, keepdims=True) + eps)
    xhat = (x1 - mean) * rstd
    n = xhat * gn_weight[:, None, None] + gn_bias[:, None, None]
    gate = sigmoid(n * sweight + sbias)                        # sweight, sbias: (1, K, 1, 1)
    gn = GroupNormCache(xhat, rstd.reshape(len(x1), -1), gn_weight, x1.shape[1], gn_weight.shape)
    return x1 * gate, SpatialGateCache(x1, n, gate, sweight.reshape(-1), gn, sweight.shape)


def test_unbiased_groupnorm_is_found_at_n(x):
    report = trace_layer(x, None, G, parts={"spatial_gate_forward": unbiased_spatial_gate_forward})
    first = report.first_divergence
    assert (first.step, first.tensor, first.status) == ("spatial_gate_forward", "n", "DIFFERS")
    status = {row.tensor: row.status for row in report.rows}
    assert status["s"] == status["y0"] == "ok"                 # the channel branch is untouched
    assert status["spatial_gate"] == status["out"] == "DIFFERS"
    assert HINTS["n"] in str(report) and "biased variance" in HINTS["n"]


def wrong_shuffle(y, groups=2):
    """Shuffles with C/2 groups instead of 2: the inverse permutation."""
    b, c, h, w = y.shape
    return y.reshape(b, c // groups, groups, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w), (groups, y.shape)


def test_wrong_shuffle_is_found_at_out(x):
    report = trace_layer(x, None, G, parts={"channel_shuffle_forward": wrong_shuffle})
    first = report.first_divergence
    assert (first.step, first.tensor) == ("channel_shuffle_forward", "out")
    assert all(row.ok for row in report.rows[:9])               # x0 ... y agree


def test_backward_without_the_mean_term_is_found_at_dx0(x):
    def forgetful_backward(dout, cache):
        dx0 = dout * cache.gate[:, :, None, None]                # misses cweight * dz / (H*W)
        dz = np.einsum("nkhw,nkhw->nk", dout, cache.x0) * cache.gate * (1 - cache.gate)
        return dx0, (dz * cache.s).sum(0), dz.sum(0)

    report = trace_layer(x, None, G, parts={"channel_gate_backward": forgetful_backward})
    first = report.first_divergence
    assert (first.step, first.tensor) == ("channel_gate_backward", "dx0")
    assert all(row.ok for row in report.rows if row.tensor in ("out", "dx1", "dcweight", "dcbias"))


def test_a_part_that_raises_is_reported_and_the_rest_still_checked(x):
    def broken(*args):
        raise ZeroDivisionError("oops")

    report = trace_layer(x, None, G, parts={"group_merge_forward": broken})
    first = report.first_divergence
    assert (first.tensor, first.status) == ("y", "raised") and "ZeroDivisionError: oops" in first.detail
    status = {row.tensor: row.status for row in report.rows}
    assert status["out"] == "ok"                                  # ran on PyTorch's y
    assert status["dy0"] == status["dy1"] == "skipped"            # no cache for the backward
    assert status["dx"] == "ok"


def test_a_cache_without_the_named_fields_says_why_it_is_not_compared(x):
    def opaque_forward(x0, cweight, cbias):
        y0, cache = channel_gate_forward(x0, cweight, cbias)
        return y0, (cache,)                       # a tuple: no field named s or gate

    def opaque_backward(dout, cache):
        return channel_gate_backward(dout, cache[0])

    report = trace_layer(x, None, G, parts={"channel_gate_forward": opaque_forward,
                                            "channel_gate_backward": opaque_backward})
    status = {row.tensor: row.status for row in report.rows}
    assert status["s"] == status["channel_gate"] == "not seen"
    assert report.ok and "n/a" not in str(report)
    assert "s, channel_gate: the cache channel_gate_forward returned does not name it" in report.uncompared()


def test_float32_output_is_a_dtype_divergence(x):
    def float32_split(x, groups):
        (x0, x1), cache = group_split_forward(x.astype(np.float32), groups)
        return (x0, x1), cache

    first = trace_layer(x, None, G, parts={"group_split_forward": float32_split}).first_divergence
    assert first.tensor == "x0" and "dtype float32" in first.detail


def test_bad_arguments_name_the_value():
    x = np.zeros((1, 12, 3, 3))
    with pytest.raises(ValueError, match="channels=12 is not divisible by 2\\*groups=8"):
        trace_layer(x, None, 4)
    with pytest.raises(ValueError, match="unknown names \\['channel_gate'\\]"):
        trace_layer(x, None, 2, parts={"channel_gate": lambda *a: None})
    with pytest.raises(TypeError, match="must be a function"):
        trace_layer(x, None, 2, parts={"channel_gate_forward": 3})
    with pytest.raises(ValueError, match="dout has shape"):
        trace_layer(x, None, 2, dout=np.zeros((1, 12, 3, 4)))


def test_the_exercise_solutions_trace_clean(x):
    """The tracer hands parts the official parameter shapes, as the exercises do, so a
    correct exercise answer (here the shipped solutions of 02 and 03) traces all-ok."""
    import nbformat
    from pathlib import Path

    namespace = {}
    for name in ("02_channel_gate", "03_spatial_gate"):
        nb = nbformat.read(Path(__file__).parents[1] / "solutions" / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and "check" not in cell.metadata.get("tags", []):
                exec(cell.source, namespace)
    parts = {n: namespace[n] for n in ("channel_gate_forward", "channel_gate_backward",
                                       "spatial_gate_forward", "spatial_gate_backward")}
    report = trace_layer(x, None, G, parts=parts)
    assert report.ok, str(report)


def test_default_dout_is_drawn_apart_from_the_default_parameters(x):
    """With params=None and dout=None both used to come from one seeded stream, so dout's
    first K values equalled cweight: a backward that mixed the two up could pass."""
    from sa_numpy.layer import random_params
    from sa_numpy.shuffle import channel_shuffle_backward

    seen = {}

    def spy(dout, cache):
        seen["dout"] = dout.copy()
        return channel_shuffle_backward(dout, cache)

    report = trace_layer(x, None, G, parts={"channel_shuffle_backward": spy})
    assert report.ok
    dout, params = seen["dout"], random_params(C, G, seed=0)
    assert dout.shape == x.shape and dout.dtype == np.float64
    stream = np.concatenate([v.ravel() for v in params.values()])       # the parameters, in draw order
    flat = dout.ravel()
    assert not np.isin(flat, stream).any(), "dout repeats values of the parameters' stream"
    assert abs(flat.mean()) < 0.25 and 0.75 < flat.std() < 1.25     # still a standard normal draw


# ---------------------------------------------------------------- your own chain: sa_forward and sa_backward

def _learner_source() -> str:
    """Exercise 05's cells as the learner runs them: the imports and sa_forward/sa_backward (the solution)."""
    import nbformat
    from pathlib import Path

    nb = nbformat.read(Path(__file__).parents[1] / "solutions" / "05_sa_layer.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    return "\n\n".join(cells[:next(i for i, c in enumerate(cells) if "def sa_backward" in c) + 1])


LEARNER = _learner_source()

OWN_CHANNEL_GATE = """
from sa_numpy.functional import sigmoid

def channel_gate_forward(x0, cweight, cbias):           # exercise 02, written by the learner
    s = x0.mean(axis=(2, 3), keepdims=True)
    gate = 1 - sigmoid(cweight * s + cbias)
    return x0 * gate, (x0, s, gate, cweight)
"""


def notebook(*patches, extra=""):
    """The learner's exercise-05 cells run in a namespace of their own, as in a notebook; each
    patch (old, new) plants a mistake in the source."""
    source = LEARNER
    for old, new in patches:
        assert old in source
        source = source.replace(old, new)
    source += extra
    name = f"<notebook cell {len(linecache.cache)}>"            # IPython keeps a cell's lines the same way
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)
    namespace = {}
    exec(compile(source, name, "exec"), namespace)
    return namespace


def trace_own(x, namespace, backward=True):
    return trace_layer(x, None, G, forward=namespace["sa_forward"],
                       backward=namespace["sa_backward"] if backward else None)


def rows_of(report):
    return {(row.step, row.tensor): row for row in report.rows}


def test_a_right_chain_traces_every_intermediate_and_puts_the_names_back(x):
    namespace = notebook()
    before = dict(namespace)
    report = trace_own(x, namespace)
    assert report.ok and [row.tensor for row in report.rows] == [
        "x0", "x1", "s", "channel_gate", "y0", "n", "spatial_gate", "y1", "y", "out",
        "dy", "dy0", "dy1", "dx1", "dsweight", "dsbias", "dgn.weight", "dgn.bias", "dx0", "dcweight", "dcbias", "dx"]
    assert all(row.max_rel < 1e-12 for row in report.rows)
    assert namespace.keys() == before.keys() and all(namespace[k] is v for k, v in before.items())


def test_swapped_branches_are_found_at_s_and_the_part_is_cleared(x):
    namespace = notebook(("channel_gate_forward(x0,", "channel_gate_forward(x1,"),
                         ("spatial_gate_forward(x1,", "spatial_gate_forward(x0,"))
    first = trace_own(x, namespace).first_divergence
    assert (first.step, first.tensor) == ("channel_gate_forward", "s")
    assert "channel_gate_forward itself is right" in first.detail and "What your function passed it" in first.detail


def test_a_wrong_part_of_your_own_is_named_with_why_its_cache_cannot_be_read(x):
    report = trace_own(x, notebook(extra=OWN_CHANNEL_GATE))
    first, rows = report.first_divergence, rows_of(report)
    assert (first.step, first.tensor) == ("channel_gate_forward", "y0")
    assert "channel_gate_forward itself is wrong" in first.detail
    assert rows["channel_gate_forward", "s"].status == "not seen" and "a tuple has no names" in str(report)
    assert rows["group_split_forward", "x1"].ok and rows["spatial_gate_forward", "y1"].ok


def test_a_shuffle_applied_twice_shows_at_what_sa_forward_returns(x):
    namespace = notebook(("    return out, (split,", "    out = channel_shuffle_forward(out, 2)[0]\n    return out, (split,"))
    report = trace_own(x, namespace, backward=False)
    first = report.first_divergence
    assert (first.step, first.tensor) == ("sa_forward returns", "out")
    assert rows_of(report)["channel_shuffle_forward", "out"].ok


def test_the_backward_is_traced_against_autograd_part_by_part(x):
    first = trace_own(x, notebook(("    dx0, dcweight", "    dy0, dy1 = dy1, dy0\n    dx0, dcweight"))).first_divergence
    assert (first.step, first.tensor) == ("spatial_gate_backward", "dx1")
    assert "spatial_gate_backward itself is right" in first.detail
    report = trace_own(x, notebook(('"cweight": dcweight, "cbias": dcbias', '"cweight": dcbias, "cbias": dcweight')))
    assert report.first_divergence.tensor == "grads['cweight']"
    assert rows_of(report)["channel_gate_backward", "dcweight"].ok


def test_a_forward_that_raises_names_your_line_and_says_why_the_rest_is_missing(x):
    broken = OWN_CHANNEL_GATE.replace("    s = x0.mean", "    x0 = x0 * cweight.reshape(-1, 1)\n    s = x0.mean")
    report = trace_own(x, notebook(extra=broken))
    first, rows = report.first_divergence, rows_of(report)
    assert (first.step, first.tensor, first.status) == ("channel_gate_forward", "s", "raised")
    assert "ValueError" in first.detail and "x0 * cweight.reshape(-1, 1)" in first.detail
    assert rows["group_split_forward", "x0"].ok and rows["group_merge_forward", "y"].status == "skipped"
    assert rows["channel_gate_backward", "dx0"].status == "skipped" and ("sa_forward returns", "out") not in rows
    assert "your sa_forward raised, so there is no cache" in str(report)


def test_a_chain_written_inline_says_in_words_why_nothing_else_is_compared(x):
    import sa_numpy

    def inline_forward(x, params, groups, eps=1e-5):
        out, cache = sa_numpy.sa_forward(x, params, groups, eps)
        return out, {"x0": cache.x0, "s": cache.channel.s}

    report = trace_layer(x, None, G, forward=inline_forward)
    rows = rows_of(report)
    assert rows["group_split_forward", "x0"].ok and rows["channel_gate_forward", "s"].ok
    assert rows["sa_forward returns", "out"].ok and report.ok
    assert rows["group_merge_forward", "y"].status == "not seen"
    assert "did not call group_merge_forward by that name" in report.uncompared() and "n/a" not in str(report)


def test_forward_and_backward_arguments_are_checked():
    x, namespace = np.zeros((1, 8, 3, 4)), notebook()
    with pytest.raises(ValueError, match="not both"):
        trace_layer(x, None, 2, parts={}, forward=namespace["sa_forward"])
    with pytest.raises(ValueError, match="backward= needs forward="):
        trace_layer(x, None, 2, backward=namespace["sa_backward"])
    with pytest.raises(TypeError, match="forward must be a function"):
        trace_layer(x, None, 2, forward=3)


def test_an_error_in_your_own_lines_between_the_parts_gets_its_own_row(x):
    report = trace_own(x, notebook(('params["cbias"])', 'params["bias"])')), backward=False)
    first = report.first_divergence
    assert (first.step, first.status) == ("sa_forward", "raised") and "KeyError" in first.detail
    assert 'params["bias"]' in first.detail and "what this step does" not in report.summary()
