"""CIFAR ResNets with pluggable attention, the official-layout SA-ResNets, SE and ECA.

Expected parameter counts are derived here from the architecture (kernel sizes, widths,
the SA/SE/ECA formulas), or taken from independent sources (He et al. 2016's table,
torchvision's ResNets), never from the models under test.
"""
import math

import pytest
import torch
import torchvision
from torch import nn

from sa_torch import SALayer
from sa_torch.attention import ECABlock, SEBlock, make_attention
from sa_torch.models import (ATTENTION_NAMES, MODEL_NAMES, ZeroPadShortcut, build_model,
                             check_groups_fit, cifar_resnet, sa_resnet50, sa_resnet101, sa_resnet152)

CIFAR_STAGES = ((16, 16), (16, 32), (32, 64))    # (in, out) channels of each stage's first block


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def plain_cifar_resnet_params(depth: int, classes: int = 10) -> int:
    """He et al.'s CIFAR ResNet with option A shortcuts, counted from its layers by hand."""
    n = (depth - 2) // 6

    def conv3x3(cin, cout):                           # bias-free
        return 9 * cin * cout

    def bn(c):                                        # weight and bias
        return 2 * c

    total = conv3x3(3, 16) + bn(16)
    for cin, cout in CIFAR_STAGES:
        total += conv3x3(cin, cout) + conv3x3(cout, cout) + 2 * bn(cout)            # first block
        total += (n - 1) * (2 * conv3x3(cout, cout) + 2 * bn(cout))                # the others
    return total + 64 * classes + classes


def blocks_widths(depth: int):
    n = (depth - 2) // 6
    return [c for _, c in CIFAR_STAGES for _ in range(n)]


# ----------------------------------------------------------------------------- CIFAR models

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_depth_maps_images_to_logits(name):
    torch.manual_seed(0)
    model = build_model(name, "sa", 4).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("attention", ATTENTION_NAMES)
def test_every_attention_maps_images_to_logits(attention):
    torch.manual_seed(0)
    model = cifar_resnet(20, attention, 4, num_classes=7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.sum().backward()                              # every parameter is in the graph
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("depth, paper_millions", [(20, 0.27), (32, 0.46), (56, 0.85), (110, 1.7)])
def test_plain_parameter_counts_match_the_hand_count_and_the_paper(depth, paper_millions):
    model = cifar_resnet(depth, "none")
    assert num_params(model) == plain_cifar_resnet_params(depth)
    digits = 1 if depth == 110 else 2                  # He et al. 2016, table 6
    assert round(num_params(model) / 1e6, digits) == paper_millions
    assert plain_cifar_resnet_params(20) == 269_722


@pytest.mark.parametrize("depth, groups", [(20, 4), (32, 2), (56, 8), (20, 1)])
def test_sa_adds_3C_over_G_parameters_per_block(depth, groups):
    # each block: cweight, cbias, sweight, sbias, gn.weight, gn.bias, K = C/(2G) each -> 6K = 3C/G
    extra = sum(3 * c // groups for c in blocks_widths(depth))
    assert num_params(cifar_resnet(depth, "sa", groups)) == plain_cifar_resnet_params(depth) + extra


def test_se_and_eca_parameter_counts():
    widths = blocks_widths(20)
    hidden = [max(c // 16, 4) for c in widths]       # floor of 4 hidden units: 16 // 16 = 1 is too few
    se_extra = sum(2 * c * h + h + c for c, h in zip(widths, hidden))
    assert num_params(cifar_resnet(20, "se")) == plain_cifar_resnet_params(20) + se_extra
    assert num_params(cifar_resnet(20, "se", se_reduction=4)) == plain_cifar_resnet_params(20) + sum(
        2 * c * (c // 4) + c // 4 + c for c in widths)
    assert num_params(cifar_resnet(20, "eca")) == plain_cifar_resnet_params(20) + 3 * len(widths)
    assert num_params(cifar_resnet(20, "eca", eca_kernel=5)) == plain_cifar_resnet_params(20) + 5 * len(widths)


def test_cifar_shortcuts_are_option_A_zero_padding_without_parameters():
    model = cifar_resnet(20, "none")
    shortcuts = [b.downsample for layer in (model.layer1, model.layer2, model.layer3) for b in layer
                 if b.downsample is not None]
    assert [type(s) for s in shortcuts] == [ZeroPadShortcut, ZeroPadShortcut]
    x = torch.randn(2, 16, 7, 7)
    out = ZeroPadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)                # conv3x3 stride 2 padding 1 gives 4 too
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0


@pytest.mark.parametrize("make_model, block_name", [(lambda: cifar_resnet(20, "sa", 2), "layer2.1"),
                                                    (lambda: sa_resnet50(10), "layer3.2")])
def test_attention_sits_after_the_last_batchnorm_and_before_the_residual_add(make_model, block_name):
    block = make_model().get_submodule(block_name).eval()
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    with torch.no_grad():                             # random SA parameters, so SA is not a plain scaling
        for p in block.sa.parameters():
            p.normal_()
    seen = {}
    last_bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.clone()))
    block.sa.register_forward_hook(lambda m, i, o: seen.update(sa_in=i[0].clone(), sa_out=o.clone()))
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        out = block(x)
    assert torch.equal(seen["sa_in"], seen["bn"])
    assert torch.allclose(out, torch.relu(seen["sa_out"] + x))


def test_init_is_torchvision_resnet_init_and_keeps_the_official_sa_init():
    torch.manual_seed(0)
    model = cifar_resnet(20, "sa", 4)
    w = model.layer3[1].conv1.weight                     # kaiming normal, fan_out = 64 * 3 * 3
    assert abs(w.std().item() - math.sqrt(2 / (64 * 9))) < 0.02 * math.sqrt(2 / (64 * 9))
    bn = model.layer2[0].bn2
    assert torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32))
    sa = model.layer1[0].sa
    assert torch.count_nonzero(sa.cweight) == 0 and torch.count_nonzero(sa.sweight) == 0
    assert torch.equal(sa.cbias, torch.ones_like(sa.cbias)) and torch.equal(sa.sbias, torch.ones_like(sa.sbias))
    conv_sa = cifar_resnet(20, "sa", 4, sa_conv_affine=True).layer1[0].sa
    assert torch.count_nonzero(conv_sa.cconv.weight) == 0   # SALayer's own init, not kaiming


# ----------------------------------------------------------------------------- ablations

def _same_weights(model: nn.Module, reference: nn.Module) -> nn.Module:
    model.load_state_dict(reference.state_dict(), strict=False)
    return model.eval()


def test_sa_ablations_change_the_model():
    torch.manual_seed(0)
    reference = cifar_resnet(20, "sa", 4).eval()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, SALayer):
                for p in m.parameters():
                    p.normal_()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = reference(x)
        no_shuffle = _same_weights(cifar_resnet(20, "sa", 4, sa_shuffle=False), reference)(x)
        no_gn_model = _same_weights(cifar_resnet(20, "sa", 4, sa_groupnorm=False), reference)
        no_gn = no_gn_model(x)
    assert not torch.allclose(ref, no_shuffle, atol=1e-3)
    assert not torch.allclose(ref, no_gn, atol=1e-3)
    widths = blocks_widths(20)
    plain = plain_cifar_resnet_params(20)
    assert num_params(no_gn_model) == plain + sum(2 * c // 4 for c in widths)          # 4K: no gn
    k = [c // 8 for c in widths]                                                         # K = C/(2G)
    conv_affine = cifar_resnet(20, "sa", 4, sa_conv_affine=True)
    assert num_params(conv_affine) == plain + sum(2 * (kk * kk + kk) + 2 * kk for kk in k)
    assert num_params(conv_affine) > num_params(reference)


# ----------------------------------------------------------------------------- bad input

def test_groups_that_do_not_fit_a_block_name_the_block_and_its_width():
    with pytest.raises(ValueError, match=r"groups=64 does not fit block layer1\.0 \(width 16\): 16 channels "
                                         r"are not divisible by 2\*groups=128.*\[1, 2, 4, 8\]"):
        build_model("resnet20", "sa", 64)
    with pytest.raises(ValueError, match=r"groups=3 does not fit block layer1\.0 \(width 256\)"):
        sa_resnet50(groups=3)
    with pytest.raises(ValueError, match=r"groups=16 does not fit block layer2\.0 \(width 48\)"):
        check_groups_fit(16, {"layer1.0": 64, "layer1.1": 64, "layer2.0": 48})
    with pytest.raises(ValueError, match="groups=0 must be at least 1"):
        build_model("resnet20", "sa", 0)
    with pytest.raises(TypeError, match="groups='4' must be an integer"):
        build_model("resnet20", "sa", "4")
    build_model("resnet20", "se", 64)                 # groups only constrains SA


def test_bad_names_and_options_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet18'; valid names: resnet20, resnet32"):
        build_model("resnet18", "sa", 4)
    with pytest.raises(ValueError, match=r"attention='cbam' is not one of \('none', 'sa', 'se', 'eca'\)"):
        build_model("resnet20", "cbam", 4)
    with pytest.raises(ValueError, match="depth=21 must be 6n\\+2"):
        cifar_resnet(21)
    with pytest.raises(TypeError, match="unknown attention option 'shuffle'"):
        cifar_resnet(20, "sa", shuffle=False)
    with pytest.raises(ValueError, match="sa_shuffle=False only applies to attention='sa', but attention='se'"):
        cifar_resnet(20, "se", sa_shuffle=False)
    cifar_resnet(20, "se", sa_shuffle=True, eca_kernel=None)   # other kinds' defaults are fine


# ----------------------------------------------------------------------------- ImageNet models

def _expected_official_state_dict() -> dict:
    """torchvision's ResNet-50 keys and shapes plus the official SA keys of every bottleneck."""
    with torch.device("meta"):                        # only the keys and shapes are needed
        shapes = {key: v.shape for key, v in torchvision.models.resnet50().state_dict().items()}
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        k = planes * 4 // (2 * 64)
        for j in range(blocks):
            for name in ("cweight", "cbias", "sweight", "sbias"):
                shapes[f"layer{stage}.{j}.sa.{name}"] = (1, k, 1, 1)
            for name in ("gn.weight", "gn.bias"):
                shapes[f"layer{stage}.{j}.sa.{name}"] = (k,)
    return {key: torch.randn(shape) if ".sa." in key else torch.zeros(shape, dtype=torch.long if
            key.endswith("num_batches_tracked") else torch.float32) for key, shape in shapes.items()}


def test_sa_resnet50_has_the_official_keys_shapes_and_parameter_count():
    model = sa_resnet50().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with torch.device("meta"):
        torchvision_params = num_params(torchvision.models.resnet50())
    assert num_params(model) == 25_557_740
    assert num_params(model) - torchvision_params == 708
    expected = _expected_official_state_dict()
    ours = model.state_dict()
    assert sorted(ours) == sorted(expected)
    assert {key: tuple(v.shape) for key, v in ours.items()} == {key: tuple(v.shape) for key, v in expected.items()}
    model.load_state_dict(expected, strict=True)
    assert torch.equal(model.layer4[2].sa.gn.bias, expected["layer4.2.sa.gn.bias"])


@pytest.mark.parametrize("ours, theirs, layers", [(sa_resnet101, torchvision.models.resnet101, (3, 4, 23, 3)),
                                                  (sa_resnet152, torchvision.models.resnet152, (3, 8, 36, 3))])
def test_deeper_sa_resnets_are_returned_with_3C_over_G_extra_parameters(ours, theirs, layers):
    with torch.device("meta"):                        # shapes only: no memory, no init cost
        model, reference = ours(), theirs()
    assert isinstance(model, nn.Module)
    extra = sum(n * 3 * (planes * 4) // 64 for n, planes in zip(layers, (64, 128, 256, 512)))
    assert num_params(model) == num_params(reference) + extra
    assert set(model.state_dict()) - set(reference.state_dict()) == {
        f"layer{s}.{j}.sa.{name}" for s, n in enumerate(layers, start=1) for j in range(n)
        for name in ("cweight", "cbias", "sweight", "sbias", "gn.weight", "gn.bias")}


# ----------------------------------------------------------------------------- SE and ECA

def test_se_block_matches_its_definition():
    torch.manual_seed(0)
    se = SEBlock(32, reduction=8)
    assert se.hidden == 4 and SEBlock(16).hidden == 4 and SEBlock(256).hidden == 16
    x = torch.randn(2, 32, 5, 5)
    s = x.mean(dim=(2, 3))
    hidden = torch.clamp(s @ se.fc1.weight.T + se.fc1.bias, min=0)
    gate = torch.sigmoid(hidden @ se.fc2.weight.T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_eca_block_matches_its_definition():
    torch.manual_seed(0)
    eca = ECABlock(8, kernel=3)
    x = torch.randn(2, 8, 4, 4)
    s = torch.nn.functional.pad(x.mean(dim=(2, 3)), (1, 1))          # zero padding at both ends
    w = eca.conv.weight.flatten()
    gate = torch.sigmoid(torch.stack([s[:, c:c + 3] @ w for c in range(8)], dim=1))
    torch.testing.assert_close(eca(x), x * gate[:, :, None, None])


@pytest.mark.parametrize("channels, kernel", [(16, 3), (64, 3), (256, 5), (1024, 5), (2048, 7)])
def test_eca_adaptive_kernel_follows_the_paper(channels, kernel):
    # k = |log2(C)/gamma + b/gamma| rounded to odd, gamma = 2, b = 1 (Wang et al. 2020, eq. 12)
    assert ECABlock(channels).kernel == kernel


def test_attention_modules_reject_bad_arguments():
    with pytest.raises(ValueError, match="kernel=4 must be odd"):
        ECABlock(16, kernel=4)
    with pytest.raises(ValueError, match="reduction=0 must be at least 1"):
        SEBlock(16, reduction=0)
    with pytest.raises(ValueError, match="x has 8 channels but this module was built for channels=16"):
        SEBlock(16)(torch.randn(1, 8, 4, 4))
    assert make_attention("none", 16, 4) is None
    assert isinstance(make_attention("sa", 16, 4, sa_shuffle=False), SALayer)
