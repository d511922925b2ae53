"""Parameter and multiply-add counts, checked against hand counts and published numbers."""
import pytest
import torch
import torchvision
from torch import nn

from sa_torch import SALayer
from sa_torch.attention import ECABlock, SEBlock
from sa_torch.models import cifar_resnet
from sa_torch.summary import compare_models, summarize


def tiny_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))


def test_tiny_conv_net_matches_a_hand_count():
    s = summarize(tiny_net(), (3, 3, 8, 8))            # batch 3: counts are per image
    # conv 3->8, 3x3 on 8x8: 8*8*8 outputs x 3*9 inputs; conv 8->4 stride 2: 4*4*4 x 8*9; linear 4 -> 10
    assert s.macs == 8 * 8 * 8 * 27 + 4 * 4 * 4 * 72 + 10 * 4 == 18_472
    assert s.params == (8 * 27 + 8) + 2 * 8 + (4 * 72 + 4) + (10 * 4 + 10) == 582
    assert [r.name for r in s.rows] == ["0", "1", "3", "6"]
    assert [r.macs for r in s.rows] == [13_824, 0, 4_608, 40]
    assert s.attention_params == s.attention_macs == 0


def test_grouped_convolutions_count_only_their_group_inputs():
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert summarize(depthwise, (1, 8, 5, 5)).macs == 5 * 5 * 8 * 9


def test_resnet18_matches_torchvisions_published_gmacs():
    s = summarize(torchvision.models.resnet18(), (1, 3, 224, 224))
    published = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"]   # 1.814 (GFLOPS = GMACs)
    assert abs(s.macs / 1e9 - published) < 5e-4


def test_plain_resnet20_macs_match_a_hand_count():
    macs = 3 * 16 * 9 * 32 * 32                                     # stem
    for cin, cout, side in ((16, 16, 32), (16, 32, 16), (32, 64, 8)):
        macs += side * side * 9 * (cin * cout + cout * cout)         # first block
        macs += 2 * side * side * 9 * 2 * cout * cout               # two more blocks
    macs += 64 * 10                                                  # fc
    s = summarize(cifar_resnet(20, "none"))
    assert s.macs == macs
    assert round(s.macs / 1e6, 1) == 40.6


def test_sa_elementwise_work_is_counted_op_by_op():
    c, h, w, groups = 16, 4, 4, 2
    half = c * h * w // 2
    expected = (half          # channel branch: average pool
                + c // 2      # cweight * s + cbias on the pooled values
                + half        # x0 * gate
                + 4 * half    # GroupNorm: mean, variance, normalise, gn affine
                + half        # sweight * n + sbias
                + half)       # x1 * gate
    s = summarize(SALayer(c, groups), (2, c, h, w))
    assert s.macs == s.attention_macs == expected == 4 * c * h * w + c // 2
    assert s.params == s.attention_params == 3 * c // groups

    k = c // (2 * groups)
    convs = summarize(SALayer(c, groups, conv_affine=True), (1, c, h, w))
    # the 1x1 convs replace the two affines: on (G, K, 1, 1) and on (G, K, H, W)
    assert convs.macs == 3 * half + 4 * half + groups * k * k + groups * k * h * w * k
    no_gn = summarize(SALayer(c, groups, groupnorm=False), (1, c, h, w))
    assert no_gn.macs == expected - 4 * half


@pytest.mark.parametrize("module", [SEBlock(32, reduction=8), ECABlock(32, kernel=3)])
def test_se_and_eca_count_pool_gate_and_their_layers(module):
    s = summarize(module, (1, 32, 6, 6))
    layers = 2 * 32 * 4 if isinstance(module, SEBlock) else 32 * 3   # fc1 + fc2, or conv1d over 32 channels
    assert s.macs == s.attention_macs == 2 * 32 * 6 * 6 + layers


def test_attention_share_of_sa_resnet20():
    plain, sa = summarize(cifar_resnet(20, "none")), summarize(cifar_resnet(20, "sa", 4))
    assert sa.params - plain.params == sa.attention_params == 252
    widths_sides = [(16, 32)] * 3 + [(32, 16)] * 3 + [(64, 8)] * 3
    assert sa.attention_macs == sum(4 * c * s * s + c // 2 for c, s in widths_sides)
    assert sa.macs - plain.macs == sa.attention_macs
    assert 0 < sa.attention_mac_share < 0.01 and sa.attention_param_share == 252 / sa.params
    text = str(sa)
    assert "layer3" in text and "269,974" in text and "0.093% of parameters" in text


def test_summarize_leaves_the_model_as_it_was():
    model = cifar_resnet(20, "sa", 4).train()
    model.layer2.eval()                                   # a frozen stage stays frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model)
    assert all(m.training == (not name.startswith("layer2")) for name, m in model.named_modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # BN stats untouched
    assert all(not m._forward_hooks for m in model.modules())


def test_compare_models_gives_one_table_row_per_model():
    table = compare_models({"plain": tiny_net(), "se": SEBlock(3)}, (1, 3, 8, 8)).splitlines()
    assert len(table) == 4 and table[2].startswith("| plain | 582 | 0 (0.000%) | 18,472 |")


def test_bad_input_size_is_rejected():
    with pytest.raises(ValueError, match=r"input_size=\(0, 3, 8, 8\) must be a tuple of positive integers"):
        summarize(tiny_net(), (0, 3, 8, 8))
