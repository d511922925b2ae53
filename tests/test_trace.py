"""The tracer finds the first intermediate where a NumPy layer departs from PyTorch."""
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


def test_a_cache_without_the_named_fields_shows_na_not_a_divergence(x):
    def opaque_forward(x0, cweight, cbias):
        y0, cache = channel_gate_forward(x0, cweight, cbias)
        return y0, (cache,)                       # a tuple: no field named s or gate

    def opaque_backward(dout, cache):
        return channel_gate_backward(dout, cache[0])

    report = trace_layer(x, None, G, parts={"channel_gate_forward": opaque_forward,
                                            "channel_gate_backward": opaque_backward})
    status = {row.tensor: row.status for row in report.rows}
    assert status["s"] == status["channel_gate"] == "n/a"
    assert report.ok


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
