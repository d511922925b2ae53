"""sa_torch.fused: the fast SA path against autograd through the official ops.

Every CPU backend (c: the C kernels, eager: torch ops) in float64 to 1e-10, output and all
seven gradients, on NCHW, channels_last and non-contiguous inputs, with random parameters
(never the official zero init, which cuts the gradient paths through pooling and GroupNorm).
The Triton kernels are checked in tests/test_triton_sa.py, torch.compile in
tests/test_fused_compile.py, the C kernels' own details in tests/test_fused_cpu.py.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sa_torch import SALayer
from sa_torch import fused
from sa_torch import layer as layer_module

NAMES = ("x", "cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias")
CPU_BACKENDS = ("c", "eager")
LAYOUTS = ("nchw", "channels_last", "strided")
FREE_UNIT_STRIDES = ("nchw, free unit strides", "channels_last, free unit strides")
# (B, C, H, W), G with a dimension of size 1: W, H, B, both H and W
UNIT_SHAPES = [((2, 8, 4, 1), 2), ((2, 8, 1, 4), 4), ((1, 12, 3, 5), 3), ((3, 8, 1, 1), 2)]
FLOAT32_RTOL = 1e-5        # float32 against float64, of the largest value of each kind (as tests/test_dtypes.py)


def random_pair(channels, groups, dtype=torch.float64, seed=0):
    """An official-path layer with random parameters and a fused twin with the same state dict."""
    torch.manual_seed(seed)
    reference = SALayer(channels, groups).to(dtype)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_()
    fast = SALayer(channels, groups, fused=True).to(dtype)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def in_layout(x, layout):
    """x as NCHW, channels_last, a non-contiguous view (H and W swapped in memory), or either
    layout with free unit strides (see :func:`with_free_unit_strides`)."""
    if layout in FREE_UNIT_STRIDES:
        return with_free_unit_strides(x, channels_last=layout.startswith("channels_last"))
    if layout == "channels_last":
        return x.to(memory_format=torch.channels_last)
    if layout == "strided":
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    return x


def with_free_unit_strides(x, channels_last):
    """x copied into a dense tensor of its layout whose size-1 dimensions have strides that no
    copy would give them: PyTorch leaves those free, so a (2, 8, 4, 1) channels_last map may
    have strides (32, 1, 8, 11)."""
    inner_to_outer = (1, 3, 2, 0) if channels_last else (3, 2, 1, 0)
    strides, step = [0] * 4, 1
    for dim in inner_to_outer:
        strides[dim] = step if x.shape[dim] > 1 else 5 + 2 * dim
        step *= x.shape[dim]
    y = torch.empty_strided(x.shape, strides, dtype=x.dtype).copy_(x)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return y


def output_and_grads(layer, x, dout):
    x = x.detach().requires_grad_(True)
    out = layer(x)
    grads = torch.autograd.grad(out, [x, *layer.parameters()], dout)
    return out.detach(), dict(zip(NAMES, grads))


def assert_matches_official(shape, groups, backend, layout, seed=0):
    reference, fast = random_pair(shape[1], groups, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(shape, dtype=torch.float64, generator=g) + 1
    dout = torch.randn(shape, dtype=torch.float64, generator=g)
    want, want_grads = output_and_grads(reference, x, dout)
    with fused.use_backend(backend):
        got, got_grads = output_and_grads(fast, in_layout(x, layout), in_layout(dout, layout))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=lambda m: f"output: {m}")
    for name in NAMES:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-10, atol=1e-10,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")


@st.composite
def layer_shapes(draw):
    """((B, C, H, W), G): G = 1, odd G, G = C/2 (K = 1), H = W = 1, H != W, B = 1."""
    groups = draw(st.sampled_from([1, 2, 3, 5, 8]))
    k, b = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1 if b * groups > 1 else 2, 6))   # see the refusal test
    return (b, 2 * groups * k, h, w), groups


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@settings(max_examples=20, deadline=None, derandomize=True)
@given(case=layer_shapes(), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**16))
def test_fast_path_matches_autograd_through_the_official_ops(backend, case, layout, seed):
    assert_matches_official(*case, backend, layout, seed)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape, groups", [((2, 30, 5, 7), 3),     # every axis a different size, odd G
                                           ((1, 8, 1, 1), 4),      # B = 1, H = W = 1, K = 1
                                           ((3, 12, 9, 4), 6)])    # K = 1, H != W
def test_fast_path_matches_the_official_layer_on_the_edge_shapes(backend, layout, shape, groups):
    assert_matches_official(shape, groups, backend, layout)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", FREE_UNIT_STRIDES)
@pytest.mark.parametrize("shape, groups", UNIT_SHAPES)
def test_size_one_dimensions_with_any_strides_match_the_official_layer(backend, layout, shape, groups):
    assert_matches_official(shape, groups, backend, layout)


def near_zero_variance_case(case):
    """(groups, x, dout) in float32 where channels have a variance far below eps (so r is
    large): one value a channel (H = W = 1), or channels of values within 1e-4 of their mean."""
    g = torch.Generator().manual_seed(3)
    shape = (8, 16, 1, 1) if case == "H = W = 1" else (4, 16, 5, 4)
    x = 3 * torch.randn(*shape[:2], 1, 1, generator=g, dtype=torch.float64) + 1
    if case == "tiny variance":
        x = x + 1e-4 * torch.randn(shape, generator=g, dtype=torch.float64)
    return 4, x.expand(shape).float(), torch.randn(shape, generator=g)


def assert_float32_matches_official(backend, groups, x, dout, layout):
    """The float32 fast path against float64 autograd through the official ops, on the same float32
    input and parameters (random): the output, dx and the six parameter gradients each within
    FLOAT32_RTOL of the largest value of its kind."""
    reference, fast = random_pair(x.shape[1], groups, dtype=torch.float32)
    reference.double()
    want, want_grads = output_and_grads(reference, x.double(), dout.double())
    with fused.use_backend(backend):
        got, got_grads = output_and_grads(fast, in_layout(x, layout), in_layout(dout, layout))
    got_grads["out"], want_grads["out"] = got, want
    for kind in [["out"], ["x"], NAMES[1:]]:
        scale = max(want_grads[name].abs().max().item() for name in kind)
        for name in kind:
            torch.testing.assert_close(got_grads[name].double(), want_grads[name], rtol=0, atol=FLOAT32_RTOL * scale,
                                       msg=lambda m, name=name: f"{tuple(x.shape)} {layout}, {name}: {m}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", ["H = W = 1", "tiny variance"])
def test_float32_channels_of_near_zero_variance_are_within_float32_tolerance(backend, case, layout):
    assert_float32_matches_official(backend, *near_zero_variance_case(case), layout)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_a_spatial_gate_with_sweight_0_still_gets_every_gradient(backend, layout):
    """sweight = 0 makes A = 0 in the spatial channels too, where the C kernels take the channel
    gate's shortcut (one sigmoid a channel): dL/dA = r Szc must still reach sweight. The other
    parameters are random."""
    reference, fast = random_pair(24, 3, seed=4)
    with torch.no_grad():
        reference.sweight.zero_()
        fast.sweight.zero_()
    x, dout = torch.randn(2, 24, 5, 3, dtype=torch.float64), torch.randn(2, 24, 5, 3, dtype=torch.float64)
    want, want_grads = output_and_grads(reference, x, dout)
    with fused.use_backend(backend):
        got, got_grads = output_and_grads(fast, in_layout(x, layout), in_layout(dout, layout))
    assert want_grads["sweight"].abs().min() > 1e-3
    for name in NAMES:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-10, atol=1e-10,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fast_path_passes_gradcheck(backend, layout):
    """Against finite differences, independently of the official layer."""
    torch.manual_seed(1)
    k, groups = 3, 2
    x = in_layout(torch.randn(2, 2 * groups * k, 3, 4, dtype=torch.float64), layout).requires_grad_(True)
    params = [torch.randn(1, k, 1, 1, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    params += [torch.randn(k, dtype=torch.float64, requires_grad=True) for _ in range(2)]

    def forward(*tensors):
        return torch.ops.sa_torch.shuffle_attention(*tensors, groups, 1e-5)[0]
    with fused.use_backend(backend):
        assert torch.autograd.gradcheck(forward, (x, *params))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_float32_fast_path_is_as_accurate_as_the_official_layer(backend, layout, offset):
    """Both float32 paths against the float64 truth: the fast path's error stays within a small
    factor of the official one, also when every channel's mean is 1000 standard deviations
    from zero (the variance comes from shifted sums, not as E[x^2] - mean^2)."""
    reference64, _ = random_pair(32, 4)
    reference32, fast32 = random_pair(32, 4, dtype=torch.float32)
    x = torch.randn(4, 32, 8, 8, dtype=torch.float64) + offset
    dout = torch.randn(4, 32, 8, 8, dtype=torch.float64)
    truth, truth_grads = output_and_grads(reference64, x, dout)

    def errors(layer):
        out, grads = output_and_grads(layer, in_layout(x.float(), layout), in_layout(dout.float(), layout))
        dx_scale = truth_grads["x"].abs().max()
        return ((out.double() - truth).abs().max().item(),
                ((grads["x"].double() - truth_grads["x"]).abs().max() / dx_scale).item())
    with fused.use_backend(backend):
        out_err, dx_err = errors(fast32)
    official_out_err, official_dx_err = errors(reference32)
    assert out_err <= 4 * official_out_err + 1e-6, f"output error {out_err:.2e} vs official {official_out_err:.2e}"
    assert dx_err <= 4 * official_dx_err + 1e-5, f"dx error {dx_err:.2e} vs official {official_dx_err:.2e}"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_bfloat16_layer_is_within_bfloat16_rounding_of_the_float64_truth(layout):
    """A bfloat16 layer (eager backend on the CPU): statistics in float32, output in bfloat16,
    within a few bfloat16 steps (2^-8 relative) of float64 on the same rounded input."""
    reference, fast = random_pair(16, 4)
    fast = fast.to(torch.bfloat16)
    reference.load_state_dict({k: v.double() for k, v in fast.state_dict().items()})
    x = torch.randn(3, 16, 6, 5).to(torch.bfloat16)
    out = fast(in_layout(x, layout))
    assert out.dtype == torch.bfloat16 and fused.backend_name(x) == "eager"
    truth = reference(x.double())
    torch.testing.assert_close(out.double(), truth, rtol=2 ** -6, atol=2 ** -6 * truth.abs().max().item())


def test_autocast_bfloat16_on_the_cpu_keeps_the_autocast_dtype_and_float32_parameters():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, 3, padding=1).double()
    reference, fast = random_pair(16, 4, dtype=torch.float32)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv.float()(x.float())
        out = fast(h)
    assert h.dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fast.parameters())
    truth = reference.double()(h.double())
    torch.testing.assert_close(out.double(), truth, rtol=2 ** -6, atol=2 ** -6 * truth.abs().max().item())


@pytest.mark.parametrize("layout, channels_last_out", [("nchw", False), ("channels_last", True), ("strided", False)])
def test_output_keeps_the_input_memory_format(layout, channels_last_out):
    _, fast = random_pair(16, 4, dtype=torch.float32)
    out = fast(in_layout(torch.randn(2, 16, 5, 6), layout))
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last_out else torch.contiguous_format)


def test_backends_are_chosen_by_device_and_dtype():
    assert fused.backend_name(torch.zeros(1, 4, 2, 2)) == "c"
    assert fused.backend_name(torch.zeros(1, 4, 2, 2, dtype=torch.float64)) == "c"
    assert fused.backend_name(torch.zeros(1, 4, 2, 2, dtype=torch.bfloat16)) == "eager"
    assert fused.backend_name(torch.zeros(0, 4, 2, 2)) == "eager"
    with fused.use_backend("eager"):
        assert fused.backend_name(torch.zeros(1, 4, 2, 2)) == "eager"


def test_a_backend_that_cannot_run_the_tensor_says_which_runs_what():
    _, fast = random_pair(16, 4, dtype=torch.bfloat16)
    with fused.use_backend("c"), pytest.raises(ValueError, match=r"backend 'c' cannot run a torch.bfloat16.*"
                                                               r"c: float32/float64 on the CPU"):
        fast(torch.randn(2, 16, 4, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"backend='cuda' is not one of \('c', 'triton', 'eager'\)"):
        fused.use_backend("cuda").__enter__()


def count_fused_calls(monkeypatch):
    calls = []
    original = layer_module.shuffle_attention

    def spy(layer, x):
        calls.append(tuple(x.shape))
        return original(layer, x)
    monkeypatch.setattr(layer_module, "shuffle_attention", spy)
    return calls


def test_fused_layer_runs_the_fast_path_and_the_default_layer_does_not(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    _, fast = random_pair(16, 4, dtype=torch.float32)
    fast(torch.randn(2, 16, 4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast(torch.randn(2, 16, 4, 4))
    assert calls == [(2, 16, 4, 4)] * 2
    SALayer(16, 4)(torch.randn(2, 16, 4, 4))                      # fused=False: never
    assert len(calls) == 2


@pytest.mark.parametrize("options", [dict(shuffle=False), dict(groupnorm=False), dict(conv_affine=True)])
def test_ablations_with_fused_true_take_the_op_by_op_path(monkeypatch, options):
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    layer = SALayer(16, 4, fused=True, **options).double()
    plain = SALayer(16, 4, **options).double()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, 16, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)
    assert not fused.fused_applies(layer) and calls == []


def test_forward_without_grad_works_and_a_second_derivative_says_why_it_cannot():
    _, fast = random_pair(16, 4)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        assert fast(x).shape == (2, 16, 4, 4)
    with pytest.raises(RuntimeError, match=r"first derivative only.*fused=False"):
        torch.autograd.grad(fast(x).square().sum(), x, create_graph=True)


def test_one_value_per_channel_with_one_group_and_sample_is_refused_like_the_official_layer():
    reference, fast = random_pair(2, 1)
    x = torch.randn(1, 2, 1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        reference(x)
    with pytest.raises(ValueError, match=r"B\*G=1 and H\*W=1 .*GroupNorm needs B\*G\*H\*W > 1"):
        fast(x)


@pytest.mark.parametrize("shape, message", [((2, 8, 4, 4), "channels=16"), ((16, 4, 4), "4-D")])
def test_fused_layer_checks_its_input_like_the_official_one(shape, message):
    with pytest.raises(ValueError, match=message):
        SALayer(16, 4, fused=True)(torch.randn(shape))


@pytest.mark.parametrize("flag", ["shuffle", "groupnorm", "conv_affine", "fused"])
def test_layer_flags_that_are_not_booleans_are_refused(flag):
    with pytest.raises(TypeError, match=rf"{flag}='yes' must be True or False"):
        SALayer(16, 4, **{flag: "yes"})
