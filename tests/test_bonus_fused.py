"""The bonus of exercise 05: check_fused passes the exercise's own solution and catches a wrong
fused layer (planted mistakes a learner makes), naming the mistake."""
from pathlib import Path

import numpy as np
import pytest

import sa_numpy as san
from sa_course import build_exercises
from sa_course.bonus_fused import check_fused
from sa_numpy.functional import sigmoid

SOURCE = Path(__file__).resolve().parents[1] / "course" / "exercises" / "05_sa_layer.py"
SMALL = dict(timing_shape=(2, 16, 4, 4), timing_groups=2)


def solution_namespace() -> dict:
    """The exercise's solution cells (markers removed), executed: sa_forward, sa_forward_fused."""
    namespace = {}
    for cell in build_exercises.parse(SOURCE):
        if cell["cell_type"] == "code" and "check" not in cell["tags"]:
            exec(build_exercises.keep_solution(cell["source"]), namespace)
    return namespace


SOLUTION = solution_namespace()


def fused(x, params, groups, eps=1e-5, *, shuffle="2", scale="right", shift="right", swap=False):
    """A learner's fused forward, written independently of the check, with a planted mistake."""
    b, c, h, w = x.shape
    k = c // (2 * groups)
    p = {n: np.reshape(v, (1, 1, k, 1)) for n, v in params.items()}
    xg = x.reshape(b, groups, 2, k, h * w)
    x0, x1 = (xg[:, :, 1], xg[:, :, 0]) if swap else (xg[:, :, 0], xg[:, :, 1])
    y = np.empty((b, groups, 2, k, h * w), dtype=x.dtype)
    y[:, :, 0] = x0 * sigmoid(p["cweight"] * x0.mean(axis=-1, keepdims=True) + p["cbias"])
    centred = x1 - x1.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(centred.var(axis=-1, keepdims=True) + eps)
    a = {"right": p["sweight"] * p["gn.weight"] * rstd, "no sweight": p["gn.weight"] * rstd}[scale]
    bias = {"right": p["sweight"] * p["gn.bias"] + p["sbias"], "no sweight": p["gn.bias"] + p["sbias"],
            "no sbias": p["sweight"] * p["gn.bias"]}[shift]
    y[:, :, 1] = x1 * sigmoid(a * centred + bias)
    y = y.reshape(b, c, h * w)
    if shuffle == "none":
        return y.reshape(b, c, h, w)
    table = {"2": 2, "G": groups, "inverse": c // 2}[shuffle]
    return y.reshape(b, table, c // table, h * w).transpose(0, 2, 1, 3).reshape(b, c, h, w)


def test_the_exercise_solution_passes_and_the_check_prints_both_times(capsys):
    check_fused(SOLUTION["sa_forward_fused"], SOLUTION["sa_forward"], **SMALL)
    out = capsys.readouterr().out
    assert out.startswith("Correct: your fused forward equals your sa_forward")
    assert "your sa_forward " in out and "your sa_forward_fused " in out and "ms" in out


def test_a_right_fused_forward_written_another_way_passes(capsys):
    check_fused(fused, san.sa_forward, **SMALL)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [
    (dict(shuffle="none"), "the shuffle is missing"),
    (dict(shuffle="G"), "uses 2 groups"),
    (dict(shuffle="inverse"), "inverse shuffle"),
    (dict(swap=True), "you swapped them"),
    (dict(shift="no sweight"), "GroupNorm's shift passes through the gate's weight"),
    (dict(shift="no sbias"), "you left out sbias"),
    (dict(scale="no sweight"), "the folded scale is sweight \\* gn.weight \\* r: you left out sweight"),
], ids=lambda v: str(v))
def test_a_planted_mistake_fails_with_its_hint(mistake, hint):
    wrong = lambda x, params, groups, eps=1e-5: fused(x, params, groups, eps, **mistake)
    with pytest.raises(AssertionError, match=f"(?s)sa_forward_fused out.*values differ.*hint: .*{hint}"):
        check_fused(wrong, san.sa_forward, **SMALL)


def test_a_dropped_eps_is_named():
    wrong = lambda x, params, groups, eps=1e-5: fused(x, params, groups)
    with pytest.raises(AssertionError, match="pass eps on"):
        check_fused(wrong, san.sa_forward, **SMALL)


def test_a_wrong_chain_is_reported_before_the_fused_forward_is_judged():
    def chain_without_shuffle(x, params, groups, eps=1e-5):
        out, cache = san.sa_forward(x, params, groups, eps)
        return san.channel_shuffle_backward(out, cache.shuffle), cache
    with pytest.raises(AssertionError, match="(?s)your sa_forward.*make check_sa_layer"):
        check_fused(fused, chain_without_shuffle, **SMALL)


def test_a_fused_forward_that_loses_float32_is_caught():
    widened = lambda x, params, groups, eps=1e-5: fused(x.astype(np.float64), params, groups, eps)
    with pytest.raises(AssertionError, match="float32"):
        check_fused(widened, san.sa_forward, **SMALL)


def test_the_untouched_stub_is_optional_not_attempted_and_does_not_raise(capsys):
    def sa_forward_fused(x, params, groups, eps=1e-5):
        raise NotImplementedError("sa_forward_fused is yours to write")
    check_fused(sa_forward_fused, san.sa_forward, **SMALL)
    assert capsys.readouterr().out.startswith("Optional, not attempted: sa_forward_fused is still the stub.")


def test_an_unwritten_chain_is_still_an_error_even_with_the_bonus_untouched():
    def unwritten(x, params, groups, eps=1e-5):
        raise NotImplementedError("yours to write")
    with pytest.raises(NotImplementedError, match="your sa_forward is not written yet"):
        check_fused(unwritten, unwritten, **SMALL)
