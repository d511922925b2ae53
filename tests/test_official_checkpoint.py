"""load_official_checkpoint: SA-Net's checkpoint files, bare and torchvision-style dicts, clear errors.

The official format is the one wofmanaf/SA-Net's main.py writes:
``torch.save({'epoch', 'state_dict', 'best_acc', 'optimizer'})`` of an ``nn.DataParallel``
model, so every key starts with ``module.``. The weights are random and away from the
official init (cweight = sweight = 0, BatchNorm's running stats 0 and 1), so a loader that
skipped or mixed up any tensor would change the state dict or the logits.
"""
import argparse
import pickle

import pytest
import torch
from torch import nn

from sa_torch.models import load_official_checkpoint, sa_resnet50, sa_resnet152

CONSTRUCTORS = {"sa_resnet50": sa_resnet50, "sa_resnet152": sa_resnet152}


def randomize(model: nn.Module, seed: int) -> None:
    """Every BatchNorm statistic and affine, and every SA parameter, drawn at random."""
    gen = torch.Generator().manual_seed(seed)

    def noise(t):
        return torch.randn(t.shape, generator=gen)

    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 10_000, (), generator=gen)))
            elif ".sa." in name:                      # cweight, cbias, sweight, sbias, gn.weight, gn.bias
                t.copy_(noise(t))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * noise(t))
            elif t.dim() == 1:                        # BatchNorm weight
                t.copy_(1 + 0.1 * noise(t))


class Pair:
    """A randomised ``source`` with its logits, and a ``target`` reset to its own init for each test."""

    def __init__(self, arch: str):
        torch.manual_seed(0)
        self.source = CONSTRUCTORS[arch]().eval()
        randomize(self.source, seed=1)
        self.x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            self.logits = self.source(self.x)
        assert torch.isfinite(self.logits).all()
        torch.manual_seed(3)
        self.target = CONSTRUCTORS[arch]().eval()
        self.target_init = {k: v.clone() for k, v in self.target.state_dict().items()}

    def fresh_target(self) -> nn.Module:
        self.target.load_state_dict(self.target_init)
        assert not states_equal(self.target.state_dict(), self.source.state_dict())
        return self.target


@pytest.fixture(scope="module")
def pairs():
    """Pairs built on first use, once per module (SA-ResNet-152 takes seconds to build and run)."""
    built = {}

    def get(arch: str) -> Pair:
        if arch not in built:
            built[arch] = Pair(arch)
        return built[arch]
    return get


def states_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def assert_loaded_exactly(pair: Pair, model: nn.Module, *, logits: bool = False) -> None:
    """The source's state dict, exactly; with ``logits``, also its logits (a forward of seconds)."""
    assert states_equal(model.state_dict(), pair.source.state_dict())
    if logits:
        with torch.no_grad():
            assert torch.equal(model(pair.x), pair.logits)


def official_checkpoint(model: nn.Module, **extra) -> dict:
    """What SA-Net's main.py saves: the DataParallel model's state dict and its SGD optimizer's."""
    parallel = nn.DataParallel(model)
    optimizer = torch.optim.SGD(parallel.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    for p in list(parallel.parameters())[:3]:       # momentum buffers, as after a training step
        optimizer.state[p]["momentum_buffer"] = torch.randn_like(p)
    state = parallel.state_dict()
    assert all(k.startswith("module.") for k in state)
    return {"epoch": 31, "state_dict": state, "best_acc": torch.tensor(77.882),
            "optimizer": optimizer.state_dict(), **extra}


@pytest.mark.parametrize("arch", ["sa_resnet50", "sa_resnet152"])
def test_official_main_py_checkpoint_file_loads_exactly(pairs, arch, tmp_path):
    pair = pairs(arch)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(official_checkpoint(pair.source), path)
    info = load_official_checkpoint(pair.fresh_target(), path)
    assert_loaded_exactly(pair, pair.target, logits=True)
    assert info == {"epoch": 31, "best_acc1": pytest.approx(77.882)}


def test_pytorch_imagenet_example_checkpoint_returns_epoch_arch_and_best_acc1(pairs, tmp_path):
    pair = pairs("sa_resnet50")
    checkpoint = official_checkpoint(pair.source, arch="sa_resnet50", best_acc1=torch.tensor(77.5))
    del checkpoint["best_acc"]
    torch.save(checkpoint, tmp_path / "model_best.pth.tar")
    info = load_official_checkpoint(pair.fresh_target(), str(tmp_path / "model_best.pth.tar"))
    assert_loaded_exactly(pair, pair.target)
    assert info == {"epoch": 31, "arch": "sa_resnet50", "best_acc1": 77.5}


@pytest.mark.parametrize("prefix", ["", "module."])
def test_bare_state_dict_loads_with_or_without_module_prefix(pairs, prefix):
    pair = pairs("sa_resnet50")
    state = {prefix + k: v for k, v in pair.source.state_dict().items()}
    assert load_official_checkpoint(pair.fresh_target(), state) == {}
    assert_loaded_exactly(pair, pair.target)


@pytest.mark.parametrize("key", ["model", "state_dict"])
def test_torchvision_style_checkpoint_file_loads(pairs, key, tmp_path):
    pair = pairs("sa_resnet50")
    optimizer = torch.optim.SGD(pair.source.parameters(), 0.5, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)
    torch.save({key: pair.source.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 89,
                "args": argparse.Namespace(model="sa_resnet50", lr=0.5)}, tmp_path / "model_89.pth")
    assert load_official_checkpoint(pair.fresh_target(), tmp_path / "model_89.pth") == {"epoch": 89}
    assert_loaded_exactly(pair, pair.target)


def test_missing_and_unexpected_keys_are_both_named_and_nothing_is_loaded(pairs):
    pair = pairs("sa_resnet50")
    checkpoint = official_checkpoint(pair.source)
    state = dict(checkpoint["state_dict"])
    del state["module.layer3.4.sa.sweight"]
    state["module.layer3.4.se.fc1.weight"] = torch.zeros(64, 1024)
    checkpoint["state_dict"] = state
    target = pair.fresh_target()
    with pytest.raises(ValueError) as error:
        load_official_checkpoint(target, checkpoint)
    message = str(error.value)
    assert "missing from the checkpoint (1): layer3.4.sa.sweight" in message
    assert "unexpected in the checkpoint (1): layer3.4.se.fc1.weight" in message
    assert "nothing was loaded" in message
    assert states_equal(target.state_dict(), pair.target_init)


def test_shape_mismatch_names_the_key_and_both_shapes(pairs):
    pair = pairs("sa_resnet50")
    state = dict(pair.source.state_dict())
    state["fc.weight"] = torch.zeros(10, 2048)
    state["layer1.0.sa.cweight"] = torch.zeros(1, 4, 1, 1)        # K of groups=32, not 64
    with pytest.raises(ValueError) as error:
        load_official_checkpoint(pair.fresh_target(), state)
    message = str(error.value)
    assert "fc.weight is (10, 2048) in the checkpoint, (1000, 2048) in the model" in message
    assert "layer1.0.sa.cweight is (1, 4, 1, 1) in the checkpoint, (1, 2, 1, 1) in the model" in message
    assert "groups G" in message and "missing" not in message and "unexpected" not in message


def test_arch_that_the_model_is_not_is_refused(pairs):
    pair = pairs("sa_resnet50")
    checkpoint = official_checkpoint(pair.source, arch="sa_resnet101")
    with pytest.raises(ValueError, match=r"arch='sa_resnet101', but the model is sa_resnet50"):
        load_official_checkpoint(pair.fresh_target(), checkpoint)
    checkpoint["arch"] = "SANet-50"                  # a name that says nothing about the layout
    load_official_checkpoint(pair.target, checkpoint)
    assert_loaded_exactly(pair, pair.target)


def test_weights_of_another_depth_are_named_by_their_arch(pairs):
    deeper, pair = pairs("sa_resnet152"), pairs("sa_resnet50")
    with pytest.raises(ValueError) as error:
        load_official_checkpoint(pair.fresh_target(), deeper.source.state_dict())
    message = str(error.value)
    assert "the checkpoint's keys describe sa_resnet152; the model is sa_resnet50" in message
    assert "unexpected in the checkpoint (" in message and "layer2.4.conv1.weight" in message


def test_mapping_without_a_state_dict_names_its_top_level_keys(pairs):
    target = pairs("sa_resnet50").fresh_target()
    with pytest.raises(ValueError, match=r"top-level keys are 'epoch', 'net', 'best_acc'"):
        load_official_checkpoint(target, {"epoch": 3, "net": {"fc.weight": "?"}, "best_acc": 1.0})
    with pytest.raises(ValueError, match=r"checkpoint\['model'\] is a Linear, not a dict of tensors"):
        load_official_checkpoint(target, {"model": nn.Linear(2, 2), "epoch": 3})


class NotAWeight:
    pass


def test_files_are_read_weights_only(pairs, tmp_path):
    pair = pairs("sa_resnet50")
    torch.save({"state_dict": pair.source.state_dict(), "extra": NotAWeight()}, tmp_path / "pickled.pth")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_official_checkpoint(pair.fresh_target(), tmp_path / "pickled.pth")
