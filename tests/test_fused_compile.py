"""torch.compile sees the fast SA path as one operator, and compiled runs match eager (CPU).

The whole SA-ResNet-20 is traced (dynamo only, and AOT autograd without code generation) to
keep the test quick; inductor's code generation is exercised on a small conv + SA module.
"""
import pytest
import torch
from torch import nn

from sa_torch import SALayer, build_model
from sa_torch import fused


def random_layer(channels=16, groups=4, seed=0):
    torch.manual_seed(seed)
    layer = SALayer(channels, groups, fused=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


@pytest.mark.parametrize("backend", ["c", "eager"])
def test_the_custom_operators_pass_torch_library_opcheck(backend):
    """Schema, fake (meta) functions, autograd registration and AOT dispatch of both operators."""
    layer = random_layer(12, 3)
    params = [p.detach().double().requires_grad_(True) for p in layer.parameters()]
    for x in (torch.randn(2, 12, 3, 5, dtype=torch.float64),
              torch.randn(2, 12, 3, 5, dtype=torch.float64).to(memory_format=torch.channels_last)):
        with fused.use_backend(backend):
            torch.library.opcheck(torch.ops.sa_torch.shuffle_attention.default,
                                  (x.requires_grad_(True), *params, 3, 1e-5))
            out, coef, saved = torch.ops.sa_torch.shuffle_attention(x.detach(), *params, 3, 1e-5)
            torch.library.opcheck(torch.ops.sa_torch.shuffle_attention_backward.default,
                                  (torch.randn_like(out), x.detach(), coef, saved, *[p.detach() for p in params], 3))


def captured_graph_ops(model, x) -> list[str]:
    """The ops in the graph dynamo hands to the compiler backend (the forward only)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    torch._dynamo.reset()
    torch.compile(model, backend=backend, fullgraph=True)(x)
    return [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]


def test_dynamo_sees_one_operator_per_sa_layer_instead_of_dozens():
    x = torch.randn(2, 3, 32, 32)
    fast = captured_graph_ops(build_model("resnet20", "sa", 4), x)
    plain = captured_graph_ops(build_model("resnet20", "sa", 4, sa_fused=False), x)
    none = captured_graph_ops(build_model("resnet20", "none", 4), x)
    assert sum("sa_torch.shuffle_attention" in op for op in fast) == 9
    assert not any("group_norm" in op for op in fast)
    sa_ops_fast, sa_ops_plain = len(fast) - len(none), len(plain) - len(none)
    assert sa_ops_plain >= 9 * 10 and sa_ops_fast <= 9 * 2, (sa_ops_fast, sa_ops_plain)


@pytest.mark.parametrize("channels_last", [False, True])
def test_aot_autograd_of_sa_resnet20_matches_eager_forward_and_gradients(channels_last):
    torch.manual_seed(0)
    model = build_model("resnet20", "sa", 4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SALayer):
                for p in m.parameters():
                    p.normal_()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(4, 3, 16, 16).to(memory_format=memory_format)
    y = torch.randint(0, 10, (4,))

    def loss_and_grads(net):
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]
    torch._dynamo.reset()
    want, want_grads = loss_and_grads(model)
    got, got_grads = loss_and_grads(torch.compile(model, backend="aot_eager", fullgraph=True))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_inductor_compiles_a_conv_and_sa_module_on_the_cpu_and_matches_eager():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), random_layer(16, 4), nn.ReLU())
    x = torch.randn(2, 3, 8, 8)

    def run(net):
        model.zero_grad(set_to_none=True)
        out = net(x)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]
    torch._dynamo.reset()
    want, want_grads = run(model)
    got, got_grads = run(torch.compile(model, fullgraph=True))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
