"""Bad input raises ValueError/TypeError naming the value and the rule, in both packages.

NaN and inf are not bad input: they flow through like in torch, silently.
"""
import re
import warnings

import numpy as np
import pytest
import torch

import sa_torch
from sa_numpy import (SALayer, channel_gate_backward, channel_gate_forward, channel_shuffle_backward,
                      channel_shuffle_forward, group_split_forward, groupnorm_backward, groupnorm_forward,
                      random_params, sa_backward_fused, sa_backward, sa_forward_fused, sa_forward,
                      spatial_gate_backward, spatial_gate_forward)

FORWARDS = {"sa_forward_fused": sa_forward_fused, "sa_forward": sa_forward}
PAIRS = {"sa_forward_fused": (sa_forward_fused, sa_backward_fused), "sa_forward": (sa_forward, sa_backward)}


def rand(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def numpy_layer(channels=16, groups=4):
    layer = SALayer(channels, groups, dtype=np.float64)
    layer.load_state_dict(random_params(channels, groups))
    return layer


# --- input that is not 4-D ---------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 4, 4), (2, 16, 4, 4, 1), (16,)])
def test_input_that_is_not_4d_is_refused_everywhere(shape):
    x = rand(*shape)
    pattern = rf"x must be 4-D \(B, C, H, W\), got {len(shape)}-D with shape {re.escape(str(shape))}"
    for forward in FORWARDS.values():
        with pytest.raises(ValueError, match=pattern):
            forward(x, random_params(16, 4), 4)
    with pytest.raises(ValueError, match=pattern):
        numpy_layer().forward(x)
    with pytest.raises(ValueError, match=rf"x must be 4-D \(B, C, H, W\), got {len(shape)}-D"):
        sa_torch.SALayer(16, 4)(torch.zeros(shape))


def test_input_with_an_empty_axis_is_refused():
    with pytest.raises(ValueError, match=r"x has shape \(2, 16, 0, 4\): every axis must have at least one"):
        sa_forward_fused(rand(2, 16, 0, 4), random_params(16, 4), 4)


def test_input_that_is_not_an_array_is_refused():
    with pytest.raises(TypeError, match="x must be a numpy.ndarray, got list"):
        sa_forward_fused([[[[1.0, 2.0]]]], random_params(2, 1), 1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        sa_torch.SALayer(16, 4)(rand(2, 16, 3, 3))


# --- channels and groups -------------------------------------------------------------------

def test_channels_not_divisible_by_twice_the_groups_names_both_numbers():
    pattern = r"channels=48 is not divisible by 2\*groups=32"
    x = rand(1, 48, 2, 2)
    for forward in FORWARDS.values():
        with pytest.raises(ValueError, match=pattern):
            forward(x, random_params(48, 8), 16)
    with pytest.raises(ValueError, match=pattern):
        group_split_forward(x, 16)
    with pytest.raises(ValueError, match=pattern):
        SALayer(48, 16)
    with pytest.raises(ValueError, match=pattern):
        sa_torch.SALayer(48, 16)


@pytest.mark.parametrize("groups, error, rule", [
    (0, ValueError, "must be at least 1"), (-2, ValueError, "must be at least 1"),
    (2.0, TypeError, "must be an integer"), ("2", TypeError, "must be an integer"),
    (True, TypeError, "must be an integer"), (None, TypeError, "must be an integer")])
def test_groups_that_is_not_a_positive_integer_is_refused_everywhere(groups, error, rule):
    pattern = rf"groups={re.escape(repr(groups))} {rule}"
    with pytest.raises(error, match=pattern):
        sa_forward_fused(rand(1, 8, 2, 2), random_params(8, 2), groups)
    with pytest.raises(error, match=pattern):
        SALayer(8, groups)
    with pytest.raises(error, match=pattern):
        sa_torch.SALayer(8, groups)
    with pytest.raises(error, match=pattern):
        channel_shuffle_forward(rand(1, 8, 2, 2), groups)


def test_numpy_integer_groups_are_accepted():
    out, _ = sa_forward_fused(rand(1, 8, 2, 2), random_params(8, 2), np.int64(2))
    assert out.shape == (1, 8, 2, 2)


def test_shuffle_and_groupnorm_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match=r"channels=6 is not divisible by groups=4"):
        channel_shuffle_forward(rand(1, 6, 2, 2), 4)
    with pytest.raises(ValueError, match=r"channels=6 is not divisible by num_groups=4"):
        groupnorm_forward(rand(1, 6, 2, 2), np.ones(6), np.zeros(6), 4)
    with pytest.raises(ValueError, match=r"num_groups=0 must be at least 1"):
        groupnorm_forward(rand(1, 6, 2, 2), np.ones(6), np.zeros(6), 0)


def test_input_with_another_channel_count_than_the_layer_is_refused():
    pattern = r"x has 8 channels but the layer was built for channels=16"
    with pytest.raises(ValueError, match=pattern):
        numpy_layer(16, 4).forward(rand(2, 8, 3, 3))
    with pytest.raises(ValueError, match=r"x has 8 channels but this module was built for channels=16"):
        sa_torch.SALayer(16, 4)(torch.zeros(2, 8, 3, 3))


# --- dtypes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128, np.float16])
def test_integer_bool_complex_and_half_precision_inputs_are_refused(dtype):
    x = np.ones((1, 8, 2, 2), dtype=dtype)
    pattern = rf"x has dtype {np.dtype(dtype)}; it must be a floating-point array"
    for forward in FORWARDS.values():
        with pytest.raises(TypeError, match=pattern):
            forward(x, random_params(8, 2), 2)
    with pytest.raises(TypeError, match=pattern):
        numpy_layer(8, 2).forward(x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_torch_layer_refuses_integer_and_bool_tensors(dtype):
    with pytest.raises(TypeError, match=rf"x must be a floating-point tensor, got dtype {dtype}"):
        sa_torch.SALayer(8, 2)(torch.ones(1, 8, 2, 2, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "float", None])
def test_layer_with_a_dtype_other_than_float32_or_float64_is_refused(dtype):
    if dtype in (np.int32, np.float16):
        with pytest.raises(TypeError, match=rf"dtype={np.dtype(dtype)} must be a floating-point type, float32 or float64"):
            SALayer(8, 2, dtype=dtype)
    else:     # "float" and None both mean float64 to NumPy: accepted
        assert SALayer(8, 2, dtype=dtype).params["cweight"].dtype == np.float64


def test_bool_parameters_are_refused():
    params = random_params(8, 2)
    params["cbias"] = np.ones((1, 2, 1, 1), dtype=bool)
    with pytest.raises(TypeError, match="cbias has dtype bool; it must be a real number array"):
        sa_forward_fused(rand(1, 8, 2, 2), params, 2)


# --- eps --------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), float("inf")])
def test_eps_that_is_not_positive_and_finite_is_refused(eps):
    pattern = rf"eps={eps} must be a positive finite number"
    for forward in FORWARDS.values():
        with pytest.raises(ValueError, match=pattern):
            forward(rand(1, 8, 2, 2), random_params(8, 2), 2, eps=eps)
    with pytest.raises(ValueError, match=pattern):
        SALayer(8, 2, eps=eps)
    with pytest.raises(ValueError, match=pattern):
        groupnorm_forward(rand(1, 4, 2, 2), np.ones(4), np.zeros(4), 2, eps=eps)


def test_eps_that_is_not_a_number_is_refused():
    with pytest.raises(TypeError, match=r"eps='1e-5' must be a real number"):
        sa_forward_fused(rand(1, 8, 2, 2), random_params(8, 2), 2, eps="1e-5")


# --- parameters ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cweight", "sbias", "gn.weight"])
@pytest.mark.parametrize("bad_shape", [(3,), (1, 3, 1, 1), (2, 1), (1, 1, 2, 1)])
def test_parameters_of_the_wrong_shape_are_refused(name, bad_shape):
    params = random_params(8, 2)        # K = 2
    params[name] = np.ones(bad_shape)
    pattern = rf"{re.escape(name)} has shape {re.escape(str(bad_shape))}; expected \(2,\) or \(1, 2, 1, 1\)"
    for forward in FORWARDS.values():
        with pytest.raises(ValueError, match=pattern):
            forward(rand(1, 8, 2, 2), params, 2)
    with pytest.raises(ValueError, match=pattern):
        numpy_layer(8, 2).load_state_dict(params)


def test_torch_refuses_a_state_dict_with_the_wrong_shapes():
    state = {n: torch.from_numpy(v) for n, v in random_params(8, 2, np.float32).items()}
    state["cweight"] = torch.zeros(1, 3, 1, 1)
    with pytest.raises(RuntimeError, match="size mismatch for cweight"):
        sa_torch.SALayer(8, 2).load_state_dict(state)


def test_part_parameters_of_the_wrong_shape_are_refused():
    x = rand(3, 4, 2, 2)
    with pytest.raises(ValueError, match=r"cbias has shape \(5,\); expected \(4,\)"):
        channel_gate_forward(x, np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\); expected \(4,\)"):
        groupnorm_forward(x, np.ones(2), np.zeros(4), 2)
    with pytest.raises(ValueError, match=r"gn_weight|gamma has shape \(3,\)"):
        spatial_gate_forward(x, np.ones(4), np.ones(4), np.ones(3), np.zeros(4))


def test_state_dict_with_missing_or_unexpected_keys_is_refused():
    layer = numpy_layer(8, 2)
    state = layer.state_dict()
    del state["gn.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['gn.bias'\], unexpected keys \[\]"):
        layer.load_state_dict(state)
    state = layer.state_dict()
    state["gn.running_mean"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['gn.running_mean'\]"):
        layer.load_state_dict(state)
    params = layer.state_dict()
    params.pop("cweight")
    with pytest.raises(ValueError, match=r"params: missing keys \['cweight'\]"):
        sa_forward_fused(rand(1, 8, 2, 2), params, 2)


def test_torch_strict_load_refuses_missing_or_unexpected_keys():
    layer = sa_torch.SALayer(8, 2)
    state = layer.state_dict()
    del state["gn.bias"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "gn.bias"'):
        layer.load_state_dict(state)
    state = layer.state_dict()
    state["extra"] = torch.zeros(2)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "extra"'):
        layer.load_state_dict(state)


def test_a_failed_load_leaves_the_parameters_unchanged():
    layer = numpy_layer(8, 2)
    before = layer.state_dict()
    bad = layer.state_dict()
    bad["sbias"] = np.ones(5)
    with pytest.raises(ValueError):
        layer.load_state_dict(bad)
    for name, value in before.items():
        np.testing.assert_array_equal(layer.params[name], value)


# --- backward ---------------------------------------------------------------------------------

def test_backward_before_forward_is_refused():
    with pytest.raises(ValueError, match=r"backward\(\) called before forward\(\)"):
        numpy_layer().backward(rand(2, 16, 3, 3))


@pytest.mark.parametrize("impl", PAIRS)
def test_dout_of_the_wrong_shape_is_refused(impl):
    forward, backward = PAIRS[impl]
    _, cache = forward(rand(2, 16, 3, 3), random_params(16, 4), 4)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 16, 3, 4\) but the .* has shape \(2, 16, 3, 3\)"):
        backward(rand(2, 16, 3, 4), cache)
    layer = numpy_layer()
    layer.forward(rand(2, 16, 3, 3))
    with pytest.raises(ValueError, match=r"dout has shape \(16, 3, 3\) but the layer's output has shape"):
        layer.backward(rand(16, 3, 3))


def test_torch_autograd_refuses_a_gradient_of_the_wrong_shape():
    out = sa_torch.SALayer(16, 4)(torch.zeros(2, 16, 3, 3, requires_grad=True))
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        out.backward(torch.zeros(2, 16, 3, 4))


@pytest.mark.parametrize("impl", PAIRS)
def test_dout_of_another_dtype_or_not_an_array_is_refused(impl):
    forward, backward = PAIRS[impl]
    _, cache = forward(rand(2, 16, 3, 3, dtype=np.float32), random_params(16, 4, np.float32), 4)
    with pytest.raises(TypeError, match=r"dout has dtype float64 but the .* has dtype float32"):
        backward(rand(2, 16, 3, 3), cache)
    with pytest.raises(TypeError, match=r"dout has dtype int64"):
        backward(np.ones((2, 16, 3, 3), dtype=np.int64), cache)
    with pytest.raises(TypeError, match="dout must be a numpy.ndarray, got list"):
        backward([1.0], cache)


def test_layer_backward_refuses_dout_of_another_dtype():
    layer = SALayer(16, 4, dtype=np.float32)
    layer.forward(rand(2, 16, 3, 3, dtype=np.float32))
    with pytest.raises(TypeError, match=r"dout has dtype float64 but the layer's output has dtype float32"):
        layer.backward(rand(2, 16, 3, 3))


def test_backward_with_a_cache_from_the_other_implementation_is_refused():
    _, parts_cache = sa_forward(rand(1, 8, 2, 2), random_params(8, 2), 2)
    _, fused_cache = sa_forward_fused(rand(1, 8, 2, 2), random_params(8, 2), 2)
    with pytest.raises(TypeError, match="cache must be the FusedCache returned by sa_forward_fused, got SACache"):
        sa_backward_fused(rand(1, 8, 2, 2), parts_cache)
    with pytest.raises(TypeError, match="got FusedCache"):
        sa_backward(rand(1, 8, 2, 2), fused_cache)


def test_part_backwards_refuse_dout_of_the_wrong_shape():
    x = rand(3, 4, 2, 2)
    dout = rand(3, 4, 2, 3)
    _, cache = channel_gate_forward(x, np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"dout has shape \(3, 4, 2, 3\) but y0 has shape \(3, 4, 2, 2\)"):
        channel_gate_backward(dout, cache)
    _, cache = groupnorm_forward(x, np.ones(4), np.zeros(4), 2)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 4, 2, 3\) but the GroupNorm output"):
        groupnorm_backward(dout, cache)
    _, cache = spatial_gate_forward(x, np.ones(4), np.ones(4), np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"dout has shape \(3, 4, 2, 3\) but y1"):
        spatial_gate_backward(dout, cache)
    _, cache = channel_shuffle_forward(x, 2)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 4, 2, 3\) but the shuffled output"):
        channel_shuffle_backward(dout, cache)


# --- NaN and inf -----------------------------------------------------------------------------

def nonfinite_input(dtype):
    x = rand(2, 16, 3, 4, dtype=dtype, seed=3)
    x[0, 0, 1, 1] = np.nan        # channel branch
    x[0, 4, 0, 0] = np.inf        # spatial branch
    x[1, 9, 2, 3] = -np.inf
    x[1, 2, 0, 0] = np.finfo(dtype).max   # overflows the variance
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("impl", PAIRS)
def test_nan_and_inf_propagate_like_torch_without_warnings(impl, dtype):
    forward, backward = PAIRS[impl]
    x = nonfinite_input(dtype)
    params = random_params(16, 2, dtype, seed=4)
    dout = rand(*x.shape, dtype=dtype, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # a RuntimeWarning fails the test
        out, cache = forward(x, params, 2)
        dx, grads = backward(dout, cache)
    layer = sa_torch.SALayer(16, 2).to(torch.float64 if dtype == np.float64 else torch.float32)
    layer.load_state_dict({n: torch.from_numpy(v) for n, v in params.items()})
    xt = torch.from_numpy(x).requires_grad_(True)
    ref = layer(xt)
    ref.backward(torch.from_numpy(dout))
    tensors = [("out", out, ref.detach()), ("dx", dx, xt.grad)]
    tensors += [(f"d{n}", grads[n], p.grad) for n, p in layer.named_parameters()]
    for name, ours, theirs in tensors:
        theirs = theirs.numpy()
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: NaN positions")
        np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(theirs), err_msg=f"{name}: +inf positions")
        np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(theirs), err_msg=f"{name}: -inf positions")
    assert np.isnan(out).any() and np.isfinite(out).any()


def test_torch_channel_shuffle_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match=r"channels=6 is not divisible by groups=4"):
        sa_torch.channel_shuffle(torch.zeros(1, 6, 2, 2), 4)
