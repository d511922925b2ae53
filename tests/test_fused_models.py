"""The CIFAR models train with the fast SA path by default, with unchanged state dicts, and one
SGD step of a whole SA-ResNet-20 moves every parameter as the op-by-op model does (float64)."""
import pytest
import torch

from sa_torch import SALayer, build_model
from sa_torch import fused


def test_models_use_the_fast_path_by_default_with_the_official_state_dict():
    fast = build_model("resnet20", "sa", 4)
    plain = build_model("resnet20", "sa", 4, sa_fused=False)
    assert all(m.fused for m in fast.modules() if isinstance(m, SALayer))
    assert not any(m.fused for m in plain.modules() if isinstance(m, SALayer))
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(fast.state_dict())                          # strict: same keys both ways
    fast.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("backend", ["c", "eager"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_one_sgd_step_of_sa_resnet20_equals_the_op_by_op_model(backend, channels_last):
    torch.manual_seed(0)
    fast = build_model("resnet20", "sa", 4).double()
    plain = build_model("resnet20", "sa", 4, sa_fused=False).double()
    with torch.no_grad():
        for p in fast.parameters():                                   # random SA parameters, not the zero init
            p.add_(0.1 * torch.randn_like(p))
    plain.load_state_dict(fast.state_dict())
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (4,))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for model in (fast, plain):
        model.to(memory_format=memory_format)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        with fused.use_backend(backend):
            torch.nn.functional.cross_entropy(model(x.to(memory_format=memory_format)), y).backward()
        opt.step()
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
