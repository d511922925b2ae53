"""The exercise checks: the reference passes, and a catalogue of planted wrong solutions,
each written the way a learner would write it, is caught with its own hint."""
import numpy as np
import pytest

import sa_numpy as ref
from sa_course import checks
from sa_course.checks import LearnerError, NotAttempted
from sa_numpy.functional import sigmoid

GROUPING = (ref.group_split_forward, ref.group_split_backward, ref.group_merge_forward, ref.group_merge_backward)


def test_the_reference_passes_every_check_with_one_line_of_praise(capsys):
    checks.check_grouping(*GROUPING)
    checks.check_channel_gate(ref.channel_gate_forward, ref.channel_gate_backward)
    checks.check_groupnorm(ref.groupnorm_forward, ref.groupnorm_backward)
    checks.check_spatial_gate(ref.spatial_gate_forward, ref.spatial_gate_backward)
    checks.check_shuffle(ref.channel_shuffle_forward, ref.channel_shuffle_backward)
    checks.check_sa_layer(ref.sa_forward_fused, ref.sa_backward_fused)
    checks.check_sa_layer(ref.sa_forward, ref.sa_backward)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and all(line.startswith("Correct: ") for line in lines)
    assert all("vs numerical gradients" in line for line in lines)


# ---------------------------------------------------------------- planted mistakes, learner style

def split_swapped(x, groups):
    (x0, x1), cache = ref.group_split_forward(x, groups)
    return (x1, x0), cache


def split_halves_first(x, groups):
    b, c, h, w = x.shape
    halves = x.reshape(b, 2, c // 2, h, w)
    k = c // (2 * groups)
    return (halves[:, 0].reshape(b * groups, k, h, w), halves[:, 1].reshape(b * groups, k, h, w)), \
        ref.group_split_forward(x, groups)[1]


def merge_backward_views(dout, cache):
    dg = dout.reshape(cache.batch * cache.groups, -1, cache.height, cache.width)
    k = dg.shape[1] // 2
    return dg[:, :k], dg[:, k:]


def cg_forward(pool=lambda x0: x0.mean(axis=(2, 3), keepdims=True), act=sigmoid, affine=None):
    def forward(x0, cweight, cbias):
        s = pool(x0)
        z = affine(s, cweight, cbias) if affine else cweight * s + cbias
        return x0 * act(z), None
    return forward


def cg_backward(dsig=True, per_pixel=True, sum_rows=True):
    def backward(dout, cache):
        x0, s, gate = cache.x0, cache.s[:, :, None, None], cache.gate[:, :, None, None]
        dz = (dout * x0).sum(axis=(2, 3), keepdims=True) * (gate * (1 - gate) if dsig else 1)
        cw = cache.cweight.reshape(1, -1, 1, 1)
        dx0 = dout * gate + dz * cw / (x0.shape[2] * x0.shape[3] if per_pixel else 1)
        dcw = (dz * s).sum(axis=0, keepdims=True) if sum_rows else dz * s
        return dx0, dcw, dz.sum(axis=0, keepdims=True)
    return backward


def cg_forward_float32(x0, cweight, cbias):
    y0, cache = ref.channel_gate_forward(x0, cweight, cbias)
    return y0.astype(np.float32), cache


def cg_forward_in_place(x0, cweight, cbias):
    gate = sigmoid(cweight * x0.mean(axis=(2, 3), keepdims=True) + cbias)
    x0 *= gate
    return x0, None


def cg_forward_float64_buffer(x0, cweight, cbias):
    y0 = np.zeros(x0.shape)
    y0[...], cache = ref.channel_gate_forward(x0, cweight, cbias)
    return y0, cache


def gn_forward(ddof=0, eps_inside=True, groups_of=lambda num_groups, c: num_groups, fixed_eps=None):
    def forward(x, gamma, beta, num_groups, eps=1e-5):
        eps = fixed_eps if fixed_eps is not None else eps
        n, c, h, w = x.shape
        xg = x.reshape(n, groups_of(num_groups, c), -1)
        var = xg.var(axis=2, ddof=ddof, keepdims=True)
        std = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
        xhat = ((xg - xg.mean(axis=2, keepdims=True)) / std).reshape(x.shape)
        return gamma[:, None, None] * xhat + beta[:, None, None], None
    return forward


def gn_backward_no_mean_terms(dout, cache):
    dx, dgamma, dbeta = ref.groupnorm_backward(dout, cache)
    n, c = dout.shape[:2]
    rstd = np.repeat(cache.rstd, c // cache.num_groups, axis=1)[:, :, None, None]
    return dout * cache.gamma[:, None, None] * rstd, dgamma, dbeta


def gn_forward_caching_x(x, gamma, beta, num_groups, eps=1e-5):
    out, cache = ref.groupnorm_forward(x, gamma, beta, num_groups, eps)
    return out, (x, cache)


def gn_backward_dgamma_raw_x(dout, cache):
    x, gn_cache = cache
    dx, dgamma, dbeta = ref.groupnorm_backward(dout, gn_cache)
    return dx, (dout * x).sum(axis=(0, 2, 3)), dbeta


def sg_forward_gates_normalised(x1, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    n, _ = ref.groupnorm_forward(x1, gn_weight, gn_bias, x1.shape[1], eps)
    return n * sigmoid(sweight * n + sbias), None


def sg_backward_no_direct(dout, cache):
    dx1, *grads = ref.spatial_gate_backward(dout, cache)
    return (dx1 - dout * cache.gate, *grads)


def shuffle_forgotten(x, groups=2):
    return x.copy(), ref.channel_shuffle_forward(x, groups)[1]


def unshuffle_forward_again(dout, cache):
    return ref.channel_shuffle_forward(dout, cache.groups)[0]


def shuffle_view(x, groups=2):
    b, c, h, w = x.shape
    out = x.reshape(b, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w)
    return out, ref.channel_shuffle_forward(x, groups)[1]


def shuffle_always_two(x, groups=2):
    return ref.channel_shuffle_forward(x, 2)[0], ref.channel_shuffle_forward(x, groups)[1]


def layer(shuffle_groups=lambda g, c: 2, swap=False):
    def forward(x, params, groups, eps=1e-5):
        (x0, x1), _ = ref.group_split_forward(x, groups)
        if swap:
            x0, x1 = x1, x0
        y0, _ = ref.channel_gate_forward(x0, params["cweight"], params["cbias"])
        y1, _ = ref.spatial_gate_forward(x1, params["sweight"], params["sbias"], params["gn.weight"],
                                         params["gn.bias"], eps)
        y, _ = ref.group_merge_forward(y0, y1, x.shape[0])
        sg = shuffle_groups(groups, x.shape[1])
        return (ref.channel_shuffle_forward(y, sg)[0] if sg else y), None
    return forward


def layer_backward_no_unshuffle(dout, cache):
    dy0, dy1 = ref.group_merge_backward(dout, cache.merge)
    dx1, dsw, dsb, dgw, dgb = ref.spatial_gate_backward(dy1, cache.spatial)
    dx0, dcw, dcb = ref.channel_gate_backward(dy0, cache.channel)
    grads = dict(zip(ref.PARAM_NAMES, (dcw, dcb, dsw, dsb, dgw, dgb)))
    return ref.group_split_backward((dx0, dx1), cache.split), grads


def layer_backward_flat_grads(dout, cache):
    dx, grads = ref.sa_backward(dout, cache)
    return dx, {n: g.reshape(-1) for n, g in grads.items()}


def layer_backward_missing_key(dout, cache):
    dx, grads = ref.sa_backward(dout, cache)
    del grads["gn.bias"]
    return dx, grads


def returns_nan(x0, cweight, cbias):
    y0, cache = ref.channel_gate_forward(x0, cweight, cbias)
    y0[0, 0, 0, 0] = np.nan
    return y0, cache


def raises_value_error(x0, cweight, cbias):
    raise ValueError("learner bug")


def not_written(x0, cweight, cbias):
    raise NotImplementedError("channel_gate_forward is yours to write")


def returns_only_output(x0, cweight, cbias):
    return ref.channel_gate_forward(x0, cweight, cbias)[0]


def forgets_to_return_dcbias(dout, cache):
    dx0, dcw, dcb = ref.channel_gate_backward(dout, cache)
    return dx0, dcw, None


CG_B = ref.channel_gate_backward
GN_B = ref.groupnorm_backward
CATALOGUE = {
    # name: (check, learner functions, exception type, text the message must contain)
    "split_swaps_the_halves": (checks.check_grouping, (split_swapped, *GROUPING[1:]),
                               AssertionError, "x0 and x1 are swapped"),
    "split_halves_before_grouping": (checks.check_grouping, (split_halves_first, *GROUPING[1:]),
                                     AssertionError, "You split all C channels in half first"),
    "merge_backward_returns_views": (checks.check_grouping, (*GROUPING[:3], merge_backward_views),
                                     AssertionError, "shares memory with the input dout"),
    "channel_gate_without_sigmoid": (checks.check_channel_gate, (cg_forward(act=lambda z: z), CG_B),
                                     AssertionError, "apply the sigmoid"),
    "channel_gate_mean_over_wrong_axes": (
        checks.check_channel_gate, (cg_forward(pool=lambda x0: x0.mean(axis=(1, 2, 3), keepdims=True)), CG_B),
        AssertionError, "you also averaged over the channels"),
    "channel_gate_affine_shared_per_group": (
        checks.check_channel_gate, (cg_forward(affine=lambda s, w, b: (w * s).sum(axis=1, keepdims=True) + b), CG_B),
        AssertionError, "you shared one gate across the group's channels"),
    "channel_gate_missing_sigmoid_derivative": (
        checks.check_channel_gate, (ref.channel_gate_forward, cg_backward(dsig=False)),
        AssertionError, "you dropped the sigmoid's derivative"),
    "channel_gate_backward_forgets_division_by_hw": (
        checks.check_channel_gate, (ref.channel_gate_forward, cg_backward(per_pixel=False)),
        AssertionError, "you forgot the / (H*W)"),
    "channel_gate_dcweight_not_summed_over_rows": (
        checks.check_channel_gate, (ref.channel_gate_forward, cg_backward(sum_rows=False)),
        AssertionError, "sum its gradient over all of them"),
    "channel_gate_float32_output_for_float64_input": (
        checks.check_channel_gate, (cg_forward_float32, CG_B), AssertionError, "compute in the input's dtype"),
    "channel_gate_float64_output_for_float32_input": (
        checks.check_channel_gate, (cg_forward_float64_buffer, CG_B), AssertionError, "dtype float64 for float32 input"),
    "channel_gate_mutates_its_input": (checks.check_channel_gate, (cg_forward_in_place, CG_B),
                                       AssertionError, "changed its input x0 in place"),
    "groupnorm_unbiased_variance": (checks.check_groupnorm, (gn_forward(ddof=1), GN_B),
                                    AssertionError, "BIASED variance"),
    "groupnorm_eps_outside_sqrt": (checks.check_groupnorm, (gn_forward(eps_inside=False), GN_B),
                                   AssertionError, "eps goes INSIDE the square root"),
    "groupnorm_variance_over_c_h_w": (checks.check_groupnorm, (gn_forward(groups_of=lambda g, c: 1), GN_B),
                                      AssertionError, "i.e. layer norm"),
    "groupnorm_per_channel_statistics": (checks.check_groupnorm, (gn_forward(groups_of=lambda g, c: c), GN_B),
                                         AssertionError, "instance norm"),
    "groupnorm_hard_coded_eps": (checks.check_groupnorm, (gn_forward(fixed_eps=1e-5), GN_B),
                                 AssertionError, "use the eps argument"),
    "groupnorm_backward_without_mean_terms": (checks.check_groupnorm, (ref.groupnorm_forward, gn_backward_no_mean_terms),
                                              AssertionError, "you dropped both mean-subtraction terms"),
    "groupnorm_dgamma_from_raw_x": (checks.check_groupnorm, (gn_forward_caching_x, gn_backward_dgamma_raw_x),
                                    AssertionError, "the NORMALISED input"),
    "spatial_gate_gates_the_normalised_input": (
        checks.check_spatial_gate, (sg_forward_gates_normalised, ref.spatial_gate_backward),
        AssertionError, "gate the input x1, not its normalised version"),
    "spatial_gate_backward_without_direct_term": (
        checks.check_spatial_gate, (ref.spatial_gate_forward, sg_backward_no_direct),
        AssertionError, "add the direct term"),
    "shuffle_forgotten": (checks.check_shuffle, (shuffle_forgotten, ref.channel_shuffle_backward),
                          AssertionError, "original order"),
    "unshuffle_with_the_forward_permutation": (checks.check_shuffle, (ref.channel_shuffle_forward, unshuffle_forward_again),
                                               AssertionError, "its INVERSE"),
    "shuffle_returns_a_view_for_one_group": (checks.check_shuffle, (shuffle_view, ref.channel_shuffle_backward),
                                             AssertionError, "shares memory with the input x"),
    "shuffle_ignores_groups": (checks.check_shuffle, (shuffle_always_two, ref.channel_shuffle_backward),
                               AssertionError, "use the groups argument"),
    "layer_forgets_the_shuffle": (checks.check_sa_layer, (layer(shuffle_groups=lambda g, c: None), ref.sa_backward_fused),
                                  AssertionError, "you forgot the channel shuffle"),
    "layer_shuffles_with_g_groups": (checks.check_sa_layer, (layer(shuffle_groups=lambda g, c: g), ref.sa_backward_fused),
                                     AssertionError, "uses 2 groups (the two branches), not G"),
    "layer_swaps_the_branches": (checks.check_sa_layer, (layer(swap=True), ref.sa_backward_fused),
                                 AssertionError, "you swapped the branches"),
    "layer_backward_skips_the_unshuffle": (checks.check_sa_layer, (ref.sa_forward, layer_backward_no_unshuffle),
                                           AssertionError, "you skipped it"),
    "layer_grads_in_flat_shape": (checks.check_sa_layer, (ref.sa_forward, layer_backward_flat_grads),
                                  AssertionError, "right values, wrong shape"),
    "layer_grads_missing_a_key": (checks.check_sa_layer, (ref.sa_forward, layer_backward_missing_key),
                                  AssertionError, "expected a dict with exactly the keys"),
    "nan_in_the_output": (checks.check_channel_gate, (returns_nan, CG_B), AssertionError, "NaN where the expected has none"),
    "learner_function_raises": (checks.check_channel_gate, (raises_value_error, CG_B), LearnerError,
                                "channel_gate_forward raised ValueError: learner bug"),
    "not_attempted": (checks.check_channel_gate, (not_written, CG_B), NotAttempted, "is not written yet"),
    "forward_returns_no_cache": (checks.check_channel_gate, (returns_only_output, CG_B), AssertionError,
                                 "should return a tuple (y0, cache); yours returned an ndarray"),
    "backward_returns_none": (checks.check_channel_gate, (ref.channel_gate_forward, forgets_to_return_dcbias),
                              AssertionError, "dcbias: yours is None"),
}


@pytest.mark.parametrize("name", CATALOGUE)
def test_planted_mistake_is_caught_with_its_hint(name):
    check, functions, error, text = CATALOGUE[name]
    with pytest.raises(error) as info:
        check(*functions)
    assert text in str(info.value), str(info.value)


def test_a_learner_error_quotes_the_line_of_the_learners_code():
    with pytest.raises(LearnerError) as info:
        checks.check_channel_gate(raises_value_error, CG_B)
    assert 'raise ValueError("learner bug")' in str(info.value)


def test_values_are_checked_only_after_the_shape():
    def wrong_shape(x0, cweight, cbias):
        return ref.channel_gate_forward(x0, cweight, cbias)[0][:, :, :-1], None
    with pytest.raises(AssertionError, match=r"y0: shape \(6, 4, 4, 7\) differs from the expected \(6, 4, 5, 7\)"):
        checks.check_channel_gate(wrong_shape, CG_B)


def test_a_wrong_value_reports_max_errors_and_the_first_index():
    def off_by_a_bit(x0, cweight, cbias):
        y0, cache = ref.channel_gate_forward(x0, cweight, cbias)
        y0 = y0.copy()
        y0[1, 2, 0, 3] += 1e-3
        return y0, cache
    with pytest.raises(AssertionError) as info:
        checks.check_channel_gate(off_by_a_bit, CG_B)
    message = str(info.value)
    assert "max abs diff 1.000e-03" in message and "first at index (1, 2, 0, 3)" in message
    assert "hint" not in message      # no known mistake matches a random perturbation


def test_run_exercise_names_a_missing_function():
    with pytest.raises(AssertionError, match="channel_gate_backward not defined"):
        checks.run_exercise("02_channel_gate", {"channel_gate_forward": ref.channel_gate_forward})



def test_a_backward_that_writes_into_the_forwards_input_is_caught():
    def forward(x0, cweight, cbias):
        y0, cache = ref.channel_gate_forward(x0, cweight, cbias)
        return y0, (x0, cache)

    def backward(dout, cache):
        x0, gate_cache = cache
        grads = ref.channel_gate_backward(dout, gate_cache)
        x0 *= 0          # scratch space taken from the cache: the caller's x0
        return grads
    with pytest.raises(AssertionError, match="channel_gate_backward changed its input x0 in place"):
        checks.check_channel_gate(forward, backward)


# ---------------------------------------------------------------- how a notebook shows a failure

def test_a_failure_renders_as_its_message_and_hint_without_the_checks_frames():
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_shuffle(ref.channel_shuffle_forward, unshuffle_forward_again)
    shown = info.value._render_traceback_()
    text = "\n".join(shown)
    assert shown[0].startswith("CheckFailure: dx (groups=2)") and "harness.py" not in text and "File " not in text
    assert any(line.lstrip().startswith("hint: you shuffled dout forward again") for line in shown[:6]), text
    assert "full_traceback()" in shown[-1] and len(shown) <= 8
    assert all(len(line) <= checks.harness.WIDTH for line in shown[:-1])
    assert info.value.mistake == "shuffle.dx.forward_again"     # what the grader and the tests read
    assert str(info.value).startswith("dx (groups=2) (vs numerical gradient): values differ")


def test_ipython_shows_the_short_box_and_full_traceback_shows_the_frames(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns.update(checks=checks, ref=ref, raises_value_error=raises_value_error, CG_B=CG_B)
    shell.run_cell("checks.check_channel_gate(raises_value_error, CG_B)")
    shown = capsys.readouterr().out
    assert shown.startswith("LearnerError: channel_gate_forward raised ValueError: learner bug"), shown
    assert "harness.py" not in shown and "Traceback" not in shown
    assert 'raise ValueError("learner bug")' in shown            # the line of the learner's code
    shell.run_cell("checks.full_traceback()")
    full = capsys.readouterr().out
    assert "harness.py" in full and "test_checks.py" in full and "ValueError: learner bug" in full


def test_a_stub_renders_as_its_message_alone():
    with pytest.raises(NotAttempted) as info:
        checks.check_channel_gate(not_written, CG_B)
    shown = info.value._render_traceback_()
    assert " ".join(line.strip() for line in shown) == f"NotAttempted: {info.value}"


# ---------------------------------------------------------------- hints name the mistake, not the answer

def test_the_split_hint_names_the_mistake_and_the_lesson_not_the_reshape():
    with pytest.raises(AssertionError) as info:
        checks.check_grouping(split_halves_first, *GROUPING[1:])
    hint = str(info.value).split("hint: ", 1)[1]
    assert "You split all C channels in half first" in hint and "lesson 01" in hint
    assert "reshape" not in hint.replace("grouping is a reshape", "") and "[:, :K]" not in hint


@pytest.mark.parametrize("check, lesson", [("grouping", "lesson 01"), ("shuffle", "lesson 04")])
def test_every_hint_of_exercises_01_and_04_points_to_its_lesson(check, lesson):
    from sa_course.checks.mistakes import TABLE
    own = [m for m in TABLE if m.check == check]
    assert own and all(lesson in m.hint for m in own), [m.id for m in own if lesson not in m.hint]


def test_the_c_over_2_rule_names_the_groups_it_needed():
    with pytest.raises(AssertionError) as info:
        checks.check_shuffle(ref.channel_shuffle_forward, lambda dout, cache: ref.channel_shuffle_forward(
            dout, dout.shape[1] // 2)[0])
    assert info.value.mistake == "shuffle.dx.inverse_with_half_c"
    assert "with groups=3 the inverse needs C/groups=4, you used C/2=6" in str(info.value)
    assert "wrong order" not in str(info.value)


def test_a_wrong_type_or_shape_is_not_labelled_vs_numerical_gradient():
    def dcweight_per_row(dout, cache):
        dx0, dcw, dcb = ref.channel_gate_backward(dout, cache)
        return dx0, np.repeat(dcw, 2, axis=0), dcb
    for backward, text in ((forgets_to_return_dcbias, "dcbias: yours is None"),
                           (dcweight_per_row, "dcweight: shape (2, 4, 1, 1) differs")):
        with pytest.raises(AssertionError) as info:
            checks.check_channel_gate(ref.channel_gate_forward, backward)
        assert str(info.value).startswith(text) and "numerical" not in str(info.value), str(info.value)
