"""On a CPU the training loop flushes denormals to zero while it runs and restores the mode after."""
from __future__ import annotations

import pytest
import torch

from sa_torch.train.device import denormals_flushed, flush_denormal
from sa_torch.train import TrainConfig, train
from test_train import SMALL, arrays, tarball  # noqa: F401  (fixtures)


@pytest.fixture
def restore_mode():
    before = denormals_flushed()
    yield
    torch.set_flush_denormal(before)


@pytest.mark.parametrize("start", [False, True], ids=["was-off", "was-on"])
def test_training_flushes_denormals_on_the_cpu_and_restores_the_mode(arrays, restore_mode, start):
    torch.set_flush_denormal(start)
    seen = []
    train(TrainConfig(**SMALL, epochs=1), data=arrays, on_epoch=lambda m: seen.append(denormals_flushed()))
    assert seen == [True]
    assert denormals_flushed() is start


def test_flush_denormal_restores_the_mode_after_an_error(restore_mode):
    torch.set_flush_denormal(False)
    with pytest.raises(RuntimeError, match="inside"):
        with flush_denormal("cpu"):
            assert torch.tensor([1e-39]).mul(1.0).item() == 0.0
            raise RuntimeError("inside")
    assert not denormals_flushed()
    assert torch.tensor([1e-39]).mul(1.0).item() > 0.0


def test_flush_denormal_leaves_other_devices_alone(restore_mode):
    torch.set_flush_denormal(False)
    with flush_denormal("meta"):
        assert not denormals_flushed()
