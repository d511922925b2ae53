"""sa_numpy.SALayer: official names, shapes and init; state dicts in every accepted form."""
import numpy as np
import pytest
import torch

import sa_torch
from sa_numpy import PARAM_NAMES, SALayer, compare, random_params

OFFICIAL_INIT = {"cweight": 0.0, "cbias": 1.0, "sweight": 0.0, "sbias": 1.0, "gn.weight": 1.0, "gn.bias": 0.0}


def official_shape(name, k):
    return (k,) if name.startswith("gn.") else (1, k, 1, 1)


@pytest.mark.parametrize("channels,groups", [(64, 8), (256, 64), (6, 3), (2, 1)])
def test_parameters_have_the_official_names_shapes_and_init(channels, groups):
    layer = SALayer(channels, groups)
    k = channels // (2 * groups)
    assert layer.K == k
    assert list(layer.params) == list(PARAM_NAMES)
    for name, value in layer.params.items():
        assert value.shape == official_shape(name, k)
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, OFFICIAL_INIT[name])
    assert layer.num_parameters == 3 * channels // groups


def test_default_groups_is_64_as_in_the_paper():
    assert SALayer(512).K == 4


def test_official_init_matches_a_fresh_torch_layer():
    theirs = sa_torch.SALayer(32, 4).state_dict()
    ours = SALayer(32, 4).state_dict()
    assert list(ours) == list(theirs)
    for name in PARAM_NAMES:
        compare(name, ours[name], theirs[name])


def test_state_dict_round_trip_gives_copies_with_the_same_values():
    layer = SALayer(16, 4, dtype=np.float64)
    layer.load_state_dict(random_params(16, 4, seed=1))
    state = layer.state_dict()
    other = SALayer(16, 4, dtype=np.float64)
    other.load_state_dict(state)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(other.params[name], layer.params[name])
    state["cweight"][...] = 123.0            # the state dict is a copy, not a view
    assert not np.any(layer.params["cweight"] == 123.0)
    assert not np.any(other.params["cweight"] == 123.0)


def random_torch_layer(channels, groups, seed):
    layer = sa_torch.SALayer(channels, groups).double()
    r = np.random.default_rng(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.from_numpy(r.normal(size=tuple(p.shape))))
    return layer


@pytest.mark.parametrize("form", ["torch tensors", "numpy official shapes", "numpy flat (K,)"])
@pytest.mark.parametrize("channels,groups", [(16, 4), (12, 3)])
def test_loading_a_torch_state_dict_gives_torch_outputs_and_gradients(form, channels, groups):
    theirs = random_torch_layer(channels, groups, seed=2)
    state = theirs.state_dict()
    if form != "torch tensors":
        state = {n: v.numpy() for n, v in state.items()}
    if form == "numpy flat (K,)":
        state = {n: v.reshape(-1) for n, v in state.items()}
    ours = SALayer(channels, groups, dtype=np.float64)
    ours.load_state_dict(state)
    for name, value in ours.params.items():         # stored in the official shapes whatever came in
        assert value.shape == official_shape(name, ours.K)

    r = np.random.default_rng(3)
    x, dout = r.normal(size=(2, channels, 4, 3)), r.normal(size=(2, channels, 4, 3))
    out = ours.forward(x)
    dx = ours.backward(dout)
    xt = torch.from_numpy(x).requires_grad_(True)
    ref = theirs(xt)
    ref.backward(torch.from_numpy(dout))
    compare("out", out, ref.detach())
    compare("dx", dx, xt.grad)
    for name, p in theirs.named_parameters():
        compare(f"d{name}", ours.grads[name], p.grad)


def test_grads_have_the_official_names_and_the_parameters_shapes():
    layer = SALayer(24, 3, dtype=np.float64)
    assert set(layer.grads) == set(PARAM_NAMES)
    layer.load_state_dict(random_params(24, 3, seed=4))
    x = np.random.default_rng(4).normal(size=(2, 24, 3, 3))
    layer.backward(np.ones_like(layer.forward(x)))
    assert list(layer.grads) == list(PARAM_NAMES)
    for name in PARAM_NAMES:
        assert layer.grads[name].shape == layer.params[name].shape
        assert np.all(np.isfinite(layer.grads[name])) and np.any(layer.grads[name] != 0)


def test_a_state_dict_goes_to_torch_unchanged():
    ours = SALayer(16, 4, dtype=np.float32)
    ours.load_state_dict(random_params(16, 4, np.float32, seed=5))
    theirs = sa_torch.SALayer(16, 4)
    theirs.load_state_dict({n: torch.from_numpy(v) for n, v in ours.state_dict().items()})   # strict
    x = np.random.default_rng(5).normal(size=(2, 16, 3, 3)).astype(np.float32)
    compare("out", ours.forward(x), theirs(torch.from_numpy(x)).detach())


def test_call_is_forward_and_repr_names_the_sizes():
    layer = SALayer(16, 4)
    x = np.random.default_rng(6).normal(size=(1, 16, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), layer.forward(x))
    assert repr(layer) == "SALayer(channels=16, groups=4, K=2, dtype=float32, num_parameters=12)"
