"""The training pipeline on tiny generated data: end to end, exact resume, Ctrl-C, DDP, compare."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sa_torch.train import compare
from sa_torch.train.data import load_cifar10
from sa_torch.models import build_model
from sa_torch.train import (CHECKPOINT, TIMING_KEYS, Stopper, TrainConfig, epoch_order, main,
                            one_cycle, train)
from test_data import make_tarball, write_imagefolder

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(model="resnet20", groups=2, batch_size=16, lr=0.05, warmup_epochs=0.5, device="cpu",
             progress=False)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    """48 training and 24 test images in three classes that differ by colour (learnable)."""
    root = tmp_path_factory.mktemp("tinted")
    write_imagefolder(root / "ds", counts={"train": 16, "test": 8}, tint=True)
    return make_tarball(root / "ds", root / "tinted.tar.gz")


@pytest.fixture(scope="module")
def arrays(tarball):
    return load_cifar10(tarball, cache_dir=tarball.parent / "cache")


def without_timings(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in metrics]


def test_cli_trains_end_to_end_and_writes_metrics_checkpoint_and_weights(tarball, tmp_path):
    out = tmp_path / "run"
    rc = main(["--data", str(tarball), "--device", "cpu", "--epochs", "4", "--batch-size", "16",
               "--lr", "0.05", "--groups", "2", "--quiet", "--out", str(out), "--export", str(tmp_path / "w.pt")])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert set(metrics[0]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s", "wall_time"}
    assert metrics[-1]["test_acc"] > 0.6, "three colour-coded classes should be learnt (chance is 1/3)"
    assert metrics[-1]["lr"] == 0.0, "the one-cycle schedule ends at zero"
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("epoch,lr,train_loss")
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert set(ckpt) == {"model", "optimizer", "scheduler", "aug_rng", "rng", "config", "state"}
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"} and ckpt["state"]["epoch"] == 4
    weights = torch.load(tmp_path / "w.pt", weights_only=False)
    model = build_model("resnet20", "sa", 2, num_classes=3)
    model.load_state_dict(weights["state_dict"], strict=True)
    assert weights["config"]["groups"] == 2 and weights["metrics"]["test_acc"] == metrics[-1]["test_acc"]


class StopAfter(Stopper):
    """Asks to stop after ``steps`` training steps, as Ctrl-C would."""

    def __init__(self, steps: int):
        self.steps = steps
        super().__init__()

    @property
    def requested(self):
        self.steps -= 1
        return self.steps < 0

    @requested.setter
    def requested(self, value):
        pass


@pytest.mark.parametrize("stop_after", [2, 4], ids=["at-epoch-end", "mid-epoch"])
def test_interrupted_then_resumed_run_ends_exactly_like_an_uninterrupted_one(arrays, tmp_path, stop_after):
    cfg = TrainConfig(**SMALL, epochs=3, attention="sa")           # 3 steps per epoch
    whole = train(cfg, data=arrays)
    part = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "run")})
    first = train(part, data=arrays, stopper=StopAfter(stop_after))
    assert first["interrupted"] and len(first["metrics"]) == stop_after // 3
    torch.manual_seed(1234)                                        # disturb every RNG the resume must restore
    resumed = train(TrainConfig(**{**part.__dict__, "resume": True}), data=arrays)
    assert without_timings(resumed["metrics"]) == without_timings(whole["metrics"])
    for (name, a), b in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"


def test_ctrl_c_saves_a_checkpoint_and_exits_without_a_traceback(tarball, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sa_torch.train", "--data", str(tarball), "--device", "cpu", "--epochs", "500",
           "--batch-size", "16", "--groups", "2", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "metrics.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted: checkpoint saved" in stderr
    state = torch.load(out / CHECKPOINT, weights_only=False)["state"]
    assert 1 <= state["epoch"] < 500 and len(state["metrics"]) == state["epoch"]


def test_bad_data_path_gives_one_clear_line_not_a_traceback(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing.tar.gz"), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CIFAR-10 data at") and "missing.tar.gz" in err and "Traceback" not in err


def test_torchrun_two_gloo_processes_train_on_disjoint_shards(tarball, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sa_torch.train", "--data", str(tarball), "--device", "cpu", "--epochs", "1",
           "--batch-size", "16", "--groups", "2", "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 48 images: 24 per rank, 8 per rank per step -> 3 steps of the global batch 16 = 48 images
    assert metrics[0]["images"] == 48, "rank 0 must report the images of both ranks"
    shards = [set(epoch_order(48, 0, 0, rank, 2).tolist()) for rank in (0, 1)]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 48


def test_one_cycle_rises_linearly_then_falls_to_zero():
    f = one_cycle(total_steps=10, warmup_steps=4)
    assert [round(f(s), 4) for s in range(10)] == [0.25, 0.5, 0.75, 1.0, 1.0, 0.8333, 0.6667, 0.5, 0.3333, 0.1667]


def test_compare_runs_every_variant_and_seed_and_tabulates_mean_and_std(arrays, tmp_path):
    rows = compare.run_variants(TrainConfig(**SMALL, epochs=1), ["plain", "sa-no-shuffle"], [0, 1], arrays, "test")
    assert [(r["name"], r["seed"]) for r in rows] == [("plain", 0), ("plain", 1), ("sa-no-shuffle", 0), ("sa-no-shuffle", 1)]
    assert rows[2]["options"] == {"sa_shuffle": False, "sa_groupnorm": True, "sa_conv_affine": False}
    assert rows[2]["params"] > rows[0]["params"]
    fake = [dict(rows[0], test_acc=0.90), dict(rows[1], test_acc=0.92)]
    assert "| plain | none | 2 | 91.00 ± 1.41 |" in compare.table(fake)
    with pytest.raises(ValueError, match="variant 'sa-typo' is unknown"):
        compare.run_variants(TrainConfig(**SMALL, epochs=1), ["sa-typo"], [0], arrays)


def test_cli_reports_a_model_that_cannot_be_built_without_a_traceback(capsys):
    from sa_torch.train import main

    assert main(["--groups", "64", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: groups=64 does not fit block layer1.0 (width 16)")
    assert "Traceback" not in err
