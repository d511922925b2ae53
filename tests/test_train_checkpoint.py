"""Exported weights carry a portable config (no absolute path, no output directory); the shipped
checkpoint is clean and loads strictly into the model its config names."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from sa_torch.train.checkpoint import export_weights, portable_config
from sa_torch.train.config import FIELDS, TrainConfig
from sa_torch.train import load_trained
from sa_torch.models import build_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "sa_resnet20_cifar10.pt"


def absolute_paths(config: dict) -> list[str]:
    return [f"{k}={v}" for k, v in config.items()
            if isinstance(v, str) and (os.path.isabs(v) or v.startswith("~") or "/root/" in v)]


def test_export_weights_never_stores_an_absolute_path_or_the_output_directory(tmp_path):
    cfg = TrainConfig(groups=2, data=str(tmp_path / "data" / "cifar10-jpeg.tar.gz"), out=str(tmp_path / "run"),
                      resume=True, device="cpu", channels_last="auto")
    model = build_model("resnet20", "sa", 2, num_classes=3)
    export_weights({"model": model, "config": cfg, "metrics": [{"test_acc": 0.5}]}, tmp_path / "w.pt")
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert absolute_paths(saved["config"]) == []
    assert saved["config"]["data"] == "cifar10-jpeg.tar.gz" and saved["config"]["out"] is None
    assert saved["config"]["resume"] is False and saved["config"]["channels_last"] == "auto"
    assert saved["metrics"] == {"test_acc": 0.5}


def test_portable_config_keeps_a_relative_data_path_and_reads_old_bools():
    config = portable_config({**dataclasses.asdict(TrainConfig()), "data": ".gpu/cifar10-jpeg.tar.gz",
                              "compile": False, "channels_last": True})
    assert config["data"] == ".gpu/cifar10-jpeg.tar.gz"
    assert config["compile"] is None and config["channels_last"] == "on"


def test_shipped_checkpoint_config_is_clean_and_complete():
    config = torch.load(SHIPPED, weights_only=True)["config"]
    assert absolute_paths(config) == [], "the shipped config names a path of the machine that trained it"
    assert config["out"] is None and config["compile"] is None and config["resume"] is False
    assert set(config) == set(FIELDS)
    assert (config["model"], config["attention"], config["groups"], config["epochs"]) == ("resnet20", "sa", 4, 40)


def test_shipped_checkpoint_loads_strictly_and_gives_finite_logits():
    ckpt = torch.load(SHIPPED, weights_only=True)
    model = build_model("resnet20", "sa", ckpt["config"]["groups"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values() if v.is_floating_point())
    loaded, _ = load_trained(SHIPPED)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = loaded(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert torch.equal(logits, model.eval()(x).detach())
