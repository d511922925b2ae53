"""sa_torch.fused: the hand-derived CPU function against autograd through the official ops.

Random parameters only, float64 for exactness, float32 to show the two agree as closely as
float32 allows (including inputs whose mean is far from zero, where a one-pass variance
would lose every digit).
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sa_torch import SALayer, build_model
from sa_torch import layer as layer_module
from sa_torch.fused import _ShuffleAttention, fused_applies
from sa_torch.train import TrainConfig, make_optimizer

NAMES = ("x", "cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias")


def random_pair(channels, groups, dtype=torch.float64, seed=0):
    """An official-path layer with random parameters and a fused twin with the same state dict."""
    torch.manual_seed(seed)
    reference = SALayer(channels, groups).to(dtype)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_()
    fused = SALayer(channels, groups, fused=True).to(dtype)
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def output_and_grads(layer, x, dout):
    x = x.detach().requires_grad_(True)
    out = layer(x)
    grads = torch.autograd.grad(out, [x, *layer.parameters()], dout)
    return out.detach(), dict(zip(NAMES, grads))


@st.composite
def layer_shapes(draw):
    """((B, C, H, W), G): G = 1, odd G, G = C/2 (K = 1), H = W = 1, H != W, B = 1."""
    groups = draw(st.sampled_from([1, 2, 3, 4, 8]))
    k = draw(st.integers(1, 4))
    b = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1 if b * groups > 1 else 2, 6))
    return (b, 2 * groups * k, h, w), groups


@settings(max_examples=25, deadline=None, derandomize=True)
@given(layer_shapes(), st.integers(0, 2**16))
def test_fused_matches_autograd_through_the_official_ops(case, seed):
    shape, groups = case
    reference, fused = random_pair(shape[1], groups, seed=seed)
    x, dout = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    want, want_grads = output_and_grads(reference, x, dout)
    got, got_grads = output_and_grads(fused, x, dout)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for name in NAMES:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-10, atol=1e-10,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")


def test_fused_function_passes_gradcheck():
    """Against finite differences, independently of the official layer."""
    torch.manual_seed(1)
    k, groups = 3, 2
    x = torch.randn(2, 2 * groups * k, 3, 4, dtype=torch.float64, requires_grad=True)
    params = [torch.randn(1, k, 1, 1, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    params += [torch.randn(k, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(lambda *t: _ShuffleAttention.apply(*t, groups, 1e-5), (x, *params))


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_float32_fused_is_as_accurate_as_the_official_layer(offset):
    """Both float32 paths against the float64 truth: the fused error stays within a small
    factor of the official one, also when every channel's mean is 1000 standard deviations
    from zero (the variance is computed from centred values, not as E[x^2] - mean^2)."""
    reference64, _ = random_pair(32, 4)
    reference32, fused32 = random_pair(32, 4, dtype=torch.float32)
    x = torch.randn(4, 32, 8, 8, dtype=torch.float64) + offset
    dout = torch.randn(4, 32, 8, 8, dtype=torch.float64)
    truth, truth_grads = output_and_grads(reference64, x, dout)

    def errors(layer):
        out, grads = output_and_grads(layer, x.float(), dout.float())
        dx_scale = truth_grads["x"].abs().max()
        return ((out.double() - truth).abs().max().item(),
                ((grads["x"].double() - truth_grads["x"]).abs().max() / dx_scale).item())
    (out_err, dx_err), (official_out_err, official_dx_err) = errors(fused32), errors(reference32)
    assert out_err <= 4 * official_out_err + 1e-6, f"output error {out_err:.2e} vs official {official_out_err:.2e}"
    assert dx_err <= 4 * official_dx_err + 1e-5, f"dx error {dx_err:.2e} vs official {official_dx_err:.2e}"


def count_fused_calls(monkeypatch):
    calls = []
    original = layer_module.shuffle_attention

    def spy(layer, x):
        calls.append(tuple(x.shape))
        return original(layer, x)
    monkeypatch.setattr(layer_module, "shuffle_attention", spy)
    return calls


def test_fused_layer_runs_the_fused_function_on_cpu_float_tensors(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    _, fused = random_pair(16, 4, dtype=torch.float32)
    fused(torch.randn(2, 16, 4, 4))
    assert calls == [(2, 16, 4, 4)]
    SALayer(16, 4)(torch.randn(2, 16, 4, 4))                      # fused=False: never
    assert len(calls) == 1


@pytest.mark.parametrize("options", [dict(shuffle=False), dict(groupnorm=False), dict(conv_affine=True)])
def test_ablations_with_fused_true_take_the_op_by_op_path(monkeypatch, options):
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    layer = SALayer(16, 4, fused=True, **options).double()
    plain = SALayer(16, 4, **options).double()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, 16, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)
    assert not fused_applies(layer, x) and calls == []


def test_half_precision_and_autocast_take_the_op_by_op_path(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    _, fused = random_pair(16, 4, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused(torch.randn(2, 16, 4, 4))
    fused.to(torch.bfloat16)(torch.randn(2, 16, 4, 4, dtype=torch.bfloat16))
    assert calls == []


def test_fused_accepts_channels_last_and_non_contiguous_input():
    reference, fused = random_pair(16, 4)
    x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
    for variant in (x.to(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
        torch.testing.assert_close(fused(variant), reference(x), rtol=1e-12, atol=1e-12)


def test_fused_forward_without_grad_and_double_backward_says_why_it_cannot():
    _, fused = random_pair(16, 4)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        assert fused(x).shape == (2, 16, 4, 4)
    (dx,) = torch.autograd.grad(fused(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dx.sum().backward()


@pytest.mark.parametrize("shape, message", [((2, 8, 4, 4), "channels=16"), ((16, 4, 4), "4-D")])
def test_fused_layer_checks_its_input_like_the_official_one(shape, message):
    with pytest.raises(ValueError, match=message):
        SALayer(16, 4, fused=True)(torch.randn(shape))


def test_models_train_fused_with_unchanged_state_dicts_and_identical_steps():
    """A CIFAR SA-ResNet-20 uses the fused layer; one SGD step in float64 moves every
    parameter exactly as the op-by-op model does."""
    torch.manual_seed(0)
    fused = build_model("resnet20", "sa", 4).double()
    plain = build_model("resnet20", "sa", 4, sa_fused=False).double()
    assert all(m.fused for m in fused.modules() if isinstance(m, SALayer))
    assert not any(m.fused for m in plain.modules() if isinstance(m, SALayer))
    assert list(fused.state_dict()) == list(plain.state_dict())
    with torch.no_grad():
        for p in fused.parameters():                           # random SA parameters, not the zero init
            p.add_(0.1 * torch.randn_like(p))
    plain.load_state_dict(fused.state_dict())
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (8,))
    for model in (fused, plain):
        opt = make_optimizer(model, TrainConfig(attention="sa"))
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for (name, a), b in zip(fused.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("flag", ["shuffle", "groupnorm", "conv_affine", "fused"])
def test_layer_flags_that_are_not_booleans_are_refused(flag):
    with pytest.raises(TypeError, match=rf"{flag}='yes' must be True or False"):
        SALayer(16, 4, **{flag: "yes"})
