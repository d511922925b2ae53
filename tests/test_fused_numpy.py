"""sa_numpy's fused layer is the specification of sa_torch's fused path: the same quantities under the
same names (its cache's coefficients are the rows of sa_torch.fused's coef), and both agree with
autograd through the official op-by-op layer in float64, with random parameters, on the edge
shapes (B = 1, H or W = 1, K = 1, odd G)."""
import numpy as np
import pytest
import torch

import sa_numpy as san
from sa_torch import SALayer
from sa_torch.fused import eager as fused_eager
from sa_torch.fused.rows import Coef, Param

SHAPES = [((2, 30, 5, 7), 3), ((1, 8, 1, 3), 4), ((3, 12, 4, 1), 6), ((2, 20, 1, 1), 5)]
NAMES = ("x", *san.PARAM_NAMES)


def official(x, dout, params, groups):
    """out, dx and the six gradients of sa_torch.SALayer (op by op) through autograd, float64."""
    layer = SALayer(x.shape[1], groups).double()
    layer.load_state_dict({n: torch.from_numpy(params[n]).view_as(p) for n, p in layer.state_dict().items()})
    xt = torch.from_numpy(x).requires_grad_(True)
    out = layer(xt)
    grads = torch.autograd.grad(out, [xt, *layer.parameters()], torch.from_numpy(dout))
    return out.detach().numpy(), {n: g.numpy() for n, g in zip(NAMES, grads)}


@pytest.mark.parametrize("shape, groups", SHAPES)
def test_numpy_fused_layer_matches_autograd_through_the_official_layer(shape, groups):
    rng = np.random.default_rng(sum(shape))
    x, dout = 2 * rng.normal(size=shape) + 1, rng.normal(size=shape)
    params = san.random_params(shape[1], groups, np.float64, seed=groups)
    want, want_grads = official(x, dout, params, groups)
    out, cache = san.sa_forward_fused(x, params, groups)
    dx, grads = san.sa_backward_fused(dout, cache)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    for name, got in [("x", dx), *grads.items()]:
        np.testing.assert_allclose(got.reshape(want_grads[name].shape), want_grads[name], rtol=1e-10, atol=1e-10,
                                   err_msg=f"gradient of {name}")


@pytest.mark.parametrize("shape, groups", SHAPES)
def test_numpy_coefficients_are_sa_torch_fused_coef_rows_of_the_same_names(shape, groups):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) + 3
    params = san.random_params(shape[1], groups, np.float64, seed=2)
    out, cache = san.sa_forward_fused(x, params, groups)
    flat = torch.stack([torch.from_numpy(np.reshape(params[n], -1)) for n in san.PARAM_NAMES])
    assert [row.name.lower().replace("gn_", "gn.") for row in Param] == list(san.PARAM_NAMES)
    torch_out = torch.empty(shape, dtype=torch.float64)
    coef, _ = fused_eager.forward(torch.from_numpy(x), flat, groups, 1e-5, torch_out)
    np.testing.assert_allclose(out, torch_out.numpy(), rtol=1e-12, atol=1e-14)
    for row in Coef:
        ours = np.broadcast_to(getattr(cache, row.name.lower()), coef[row].shape)     # P is (C,): one per channel
        np.testing.assert_allclose(ours, coef[row].numpy(), rtol=1e-12, atol=1e-14, err_msg=row.name)
