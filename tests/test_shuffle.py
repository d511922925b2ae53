"""Channel shuffle: the paper's definition, its inverse, and torch's channel_shuffle."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sa_torch
from sa_numpy import channel_shuffle_backward, channel_shuffle_forward, compare, numerical_gradient


def channels(values, dtype=np.float64):
    """A (1, C, 1, 1) array whose channel c holds values[c]."""
    return np.asarray(values, dtype=dtype).reshape(1, -1, 1, 1)


def test_channels_1_to_8_with_2_groups_interleave_the_two_halves():
    # groups [1 2 3 4] and [5 6 7 8]; take one channel from each group in turn
    out, _ = channel_shuffle_forward(channels(range(1, 9)), 2)
    assert out.reshape(-1).tolist() == [1, 5, 2, 6, 3, 7, 4, 8]


def test_channels_1_to_8_with_4_groups_take_one_from_each_group_in_turn():
    # groups [1 2] [3 4] [5 6] [7 8]
    out, _ = channel_shuffle_forward(channels(range(1, 9)), 4)
    assert out.reshape(-1).tolist() == [1, 3, 5, 7, 2, 4, 6, 8]


def test_channels_1_to_6_with_3_groups():
    # groups [1 2] [3 4] [5 6]
    out, _ = channel_shuffle_forward(channels(range(1, 7)), 3)
    assert out.reshape(-1).tolist() == [1, 3, 5, 2, 4, 6]


@pytest.mark.parametrize("groups", [1, 8])
def test_one_group_or_one_channel_per_group_leaves_the_order_and_returns_a_new_array(groups):
    x = channels(range(1, 9))
    out, _ = channel_shuffle_forward(x, groups)
    assert out.reshape(-1).tolist() == list(range(1, 9))
    assert not np.shares_memory(out, x)


def test_the_shuffle_moves_whole_channels():
    x = np.random.default_rng(0).normal(size=(2, 6, 3, 4))
    out, _ = channel_shuffle_forward(x, 2)
    for c_out, c_in in enumerate([0, 3, 1, 4, 2, 5]):
        np.testing.assert_array_equal(out[:, c_out], x[:, c_in])


@st.composite
def shuffle_cases(draw):
    groups = draw(st.integers(1, 6))
    per_group = draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 3)), groups * per_group, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return shape, groups


@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=shuffle_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_backward_of_forward_is_the_identity(case, dtype):
    shape, groups = case
    x = np.random.default_rng(1).normal(size=shape).astype(dtype)
    out, cache = channel_shuffle_forward(x, groups)
    back = channel_shuffle_backward(out, cache)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, x)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=shuffle_cases())
def test_shuffle_with_g_groups_then_c_over_g_groups_is_the_identity(case):
    shape, groups = case
    x = np.random.default_rng(2).normal(size=shape)
    once, _ = channel_shuffle_forward(x, groups)
    twice, _ = channel_shuffle_forward(once, shape[1] // groups)
    np.testing.assert_array_equal(twice, x)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=shuffle_cases())
def test_forward_matches_torch_channel_shuffle(case):
    shape, groups = case
    x = np.random.default_rng(3).normal(size=shape)
    out, _ = channel_shuffle_forward(x, groups)
    np.testing.assert_array_equal(out, sa_torch.channel_shuffle(torch.from_numpy(x), groups).numpy())


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_backward_matches_numerical_gradient_and_torch_autograd(groups):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 2, 3))
    dout = rng.normal(size=x.shape)
    _, cache = channel_shuffle_forward(x, groups)
    dx = channel_shuffle_backward(dout, cache)
    numeric = numerical_gradient(lambda v: channel_shuffle_forward(v, groups)[0], x, dout)
    compare("dx vs numerical", dx, numeric, rtol=1e-8)
    xt = torch.from_numpy(x).requires_grad_(True)
    sa_torch.channel_shuffle(xt, groups).backward(torch.from_numpy(dout))
    compare("dx vs torch", dx, xt.grad)
