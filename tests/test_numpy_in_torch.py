"""The finale of exercise 05: a NumPy layer inside SA-ResNet-20 trains exactly like the torch layer,
and a wrong backward is caught. Tiny runs (a few steps, batch 4, 8 x 8 images) keep these fast."""
import copy

import pytest
import torch

import sa_numpy as san
from sa_course import numpy_in_torch as nit
from sa_torch import SALayer
from sa_torch.models import build_model

TINY = dict(steps=3, batch_size=4, image_size=8)


def missing_gate_path(dout, cache):
    """A planted mistake: the spatial branch's dx1 without the path through the gate."""
    dx, grads = san.sa_backward(dout, cache)
    dy0, dy1 = san.group_merge_backward(san.channel_shuffle_backward(dout, cache.shuffle), cache.merge)
    dx0 = san.channel_gate_backward(dy0, cache.channel)[0]
    return san.group_split_backward((dx0, dy1 * cache.spatial.gate), cache.split), grads


def test_every_torch_sa_layer_is_swapped_keeping_the_state_dict_bit_for_bit():
    torch.manual_seed(0)
    model = build_model("resnet20", "sa", groups=4, sa_fused=False).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    swapped = copy.deepcopy(model)
    assert nit.use_numpy_layers(swapped, san.sa_forward, san.sa_backward) == 9
    assert not any(isinstance(m, SALayer) for m in swapped.modules())
    before, after = model.state_dict(), swapped.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), model(x), rtol=1e-12, atol=1e-12)


def test_the_numpy_layers_gradients_reach_every_parameter_like_autograd():
    torch.manual_seed(1)
    layer = SALayer(16, groups=2).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    mine = nit.NumpySALayer(16, 2, san.sa_forward, san.sa_backward).double()
    mine.load_state_dict(layer.state_dict())
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    dout = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    layer(x).backward(dout)
    mine(x2).backward(dout)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-12, atol=1e-12)
    for (name, p), q in zip(layer.named_parameters(), mine.parameters()):
        assert q.grad.shape == p.shape, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-12)


def test_with_the_reference_functions_the_loss_curves_agree():
    result = nit.train_side_by_side(san.sa_forward, san.sa_backward, **TINY)
    assert result.layers == 9 and result.identical
    assert result.max_rel_diff < 1e-12
    nit.check_training(san.sa_forward, san.sa_backward, plot=False, **TINY)


def test_a_wrong_backward_trains_differently_and_the_check_says_so():
    result = nit.train_side_by_side(san.sa_forward, missing_gate_path, **TINY)
    assert result.rel_diff[0] < 1e-12            # step 1's loss is the forward alone
    assert result.rel_diff[1] > 100 * nit.RTOL
    with pytest.raises(AssertionError, match="(?s)differently.*first at step 2.*a gradient is wrong"):
        nit.check_training(san.sa_forward, missing_gate_path, plot=False, **TINY)


def test_a_wrong_forward_is_caught_at_step_1():
    def no_shuffle(x, params, groups, eps=1e-5):
        out, cache = san.sa_forward(x, params, groups, eps)
        return san.channel_shuffle_backward(out, cache.shuffle), cache
    with pytest.raises(AssertionError, match="(?s)first at step 1.*sa_forward differs"):
        nit.check_training(no_shuffle, san.sa_backward, plot=False, **TINY)


def test_the_numpy_layer_refuses_float32():
    layer = nit.NumpySALayer(16, 2, san.sa_forward, san.sa_backward)
    with pytest.raises(TypeError, match="float64"):
        layer(torch.zeros(1, 16, 2, 2))
