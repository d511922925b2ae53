"""Gate hooks and group importance (sa_torch.gates) on a tiny model, on the CPU
(and on the GPU too when one is present)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sa_numpy.channel_gate import channel_gate_forward
from sa_numpy.layer import random_params
from sa_numpy.spatial_gate import spatial_gate_forward
from sa_torch import SALayer
from sa_torch.gates import (GateRecorder, between_class_chance, between_class_fraction, class_scores,
                              group_importance, masked_class_scores)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Block(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.sa = SALayer(channels, groups)

    def forward(self, x):
        return F.relu(self.sa(self.conv(x)))


class Tiny(nn.Module):
    """conv -> two SA blocks (the second at half resolution) -> pool -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = Block(8, 2)
        self.block2 = Block(8, 2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.block1(F.relu(self.stem(x)))
        x = self.block2(F.max_pool2d(x, 2))
        return self.fc(x.mean(dim=(2, 3)))


def randomise_sa(model, seed=0):
    """Random SA parameters: the official init (cweight = sweight = 0) makes every gate constant."""
    with torch.no_grad():
        for i, layer in enumerate(m for m in model.modules() if isinstance(m, SALayer)):
            params = random_params(layer.channels, layer.groups, seed=seed + i)
            for name, value in params.items():
                layer.get_parameter(name).copy_(torch.from_numpy(value).reshape(layer.get_parameter(name).shape))


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = Tiny()
    randomise_sa(net)
    return net.eval()


@pytest.fixture
def images():
    return torch.rand(5, 3, 12, 10, generator=torch.Generator().manual_seed(1))


def test_gates_at_the_official_init_are_sigmoid_of_one(images):
    torch.manual_seed(0)
    net = Tiny().eval()                 # cweight = sweight = 0, cbias = sbias = 1
    with GateRecorder(net) as rec, torch.no_grad():
        net(images)
    gates = rec.gates["block2.sa"]
    assert gates.channel.shape == (5, 2, 2) and gates.spatial.shape == (5, 2, 2, 6, 5)
    expected = torch.tensor(1 / (1 + np.exp(-1.0)), dtype=torch.float32)      # 0.7311
    assert torch.allclose(gates.channel, expected) and torch.allclose(gates.spatial, expected)


def test_recorded_gates_match_the_numpy_parts(model, images):
    model.double()
    layer = model.block1.sa
    seen = {}
    layer.register_forward_pre_hook(lambda m, i: seen.update(x=i[0].detach().numpy()))
    with GateRecorder(model) as rec, torch.no_grad():
        model(images.double())
    params = {n: p.detach().numpy() for n, p in layer.state_dict().items()}
    rows = seen["x"].reshape(5 * 2, 4, 12, 10)        # (B*G, 2K, H, W), K = 2
    _, channel = channel_gate_forward(rows[:, :2], params["cweight"], params["cbias"])
    _, spatial = spatial_gate_forward(rows[:, 2:], params["sweight"], params["sbias"],
                                      params["gn.weight"], params["gn.bias"])
    gates = rec.gates["block1.sa"]
    np.testing.assert_allclose(gates.channel.numpy(), channel.gate.reshape(5, 2, 2), rtol=1e-12)
    np.testing.assert_allclose(gates.spatial.numpy(), spatial.gate.reshape(5, 2, 2, 12, 10), rtol=1e-12)
    np.testing.assert_allclose(gates.spatial_map.numpy(), spatial.gate.reshape(5, 2, 2, 12, 10).mean(2), rtol=1e-12)


def test_recorder_appends_batches_and_removes_its_hooks(model, images):
    with GateRecorder(model) as rec, torch.no_grad():
        model(images[:2])
        model(images[2:])
    assert rec.gates["block1.sa"].channel.shape[0] == 5
    assert not model.block1.sa._forward_hooks
    with pytest.raises(ValueError, match="contains no sa_torch.SALayer"):
        GateRecorder(nn.Linear(2, 2))


@pytest.mark.parametrize("device", DEVICES)
def test_all_ones_mask_leaves_the_score_unchanged(model, images, device):
    model.to(device)
    classes = torch.tensor([0, 1, 2, 0, 1])
    ones = torch.ones(5, 3, 12, 10)
    scores = masked_class_scores(model, images.to(device), ones, classes, batch_size=4)
    base = class_scores(model, images)[torch.arange(5), classes]
    assert scores.shape == (5, 3)
    torch.testing.assert_close(scores, base[:, None].expand(5, 3), rtol=1e-5, atol=1e-6)


def loop_importance(model, images, label_of, group):
    """The figure-4 score for one group, one image at a time, written out by hand."""
    out = []
    for image, label in zip(images, label_of):
        act = {}
        handle = model.block2.register_forward_hook(lambda m, i, o: act.update(a=o))
        with torch.no_grad():
            model(image[None])
        handle.remove()
        a = act["a"][0, 4 * group:4 * group + 4].mean(dim=0)               # C/G = 4 channels
        a = F.interpolate(a[None, None], size=image.shape[1:], mode="bilinear", align_corners=False)[0, 0]
        a = (a - a.min()) / (a.max() - a.min())
        with torch.no_grad():
            out.append(F.softmax(model((image * a)[None]), dim=1)[0, label].item())
    return torch.tensor(out)


@pytest.mark.parametrize("device", DEVICES)
def test_group_importance_matches_a_loop_over_images(model, images, device):
    model.to(device)
    labels = torch.tensor([2, 0, 1, 1, 0])
    result = group_importance(model, images.to(device), labels, layer="block2", batch_size=3)
    assert result.layer == "block2" and result.scores.shape == (5, 2)
    model.cpu()
    for g in range(2):
        torch.testing.assert_close(result.scores[:, g], loop_importance(model, images, labels, g), rtol=1e-5, atol=1e-6)
    base = F.softmax(model(images), dim=1)[torch.arange(5), labels]
    torch.testing.assert_close(result.base, base.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.change, result.scores - base.detach()[:, None], rtol=1e-5, atol=1e-6)


def test_group_importance_defaults_to_the_predicted_class(model, images):
    result = group_importance(model, images, layer=model.block1)
    assert result.layer == "block1"
    assert torch.equal(result.classes, model(images).argmax(dim=1))


def test_group_importance_rejects_bad_arguments(model, images):
    with pytest.raises(ValueError, match="layer='block9' is not a module"):
        group_importance(model, images, layer="block9")
    with pytest.raises(ValueError, match="contains no SALayer"):
        group_importance(model, images, layer="stem")
    with pytest.raises(ValueError, match="images must be a float tensor"):
        group_importance(model, images[0], layer="block1")
    with pytest.raises(ValueError, match="masks must be"):
        masked_class_scores(model, images, torch.ones(5, 1, 3, 3), torch.zeros(5, dtype=torch.long))


def test_between_class_fraction_by_hand():
    labels = torch.tensor([0, 0, 1, 1])
    # class means 1 and 5 around 3: between = 4, total variance of (0, 2, 4, 6) = 5
    assert between_class_fraction(torch.tensor([[0.0], [2.0], [4.0], [6.0]]), labels) == pytest.approx(0.8)
    assert between_class_fraction(torch.tensor([[-1.0], [1.0], [1.0], [-1.0]]), labels) == 0.0
    assert between_class_fraction(torch.tensor([[7.0, 1], [7, 1], [3, 2], [3, 2]]), labels) == pytest.approx(1.0)


def test_between_class_chance_is_near_c_minus_1_over_n_minus_1():
    values = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(200) % 10
    assert between_class_chance(values, labels) == pytest.approx(9 / 199, abs=0.02)
    assert between_class_fraction(values + 10 * labels[:, None], labels) > 0.99
