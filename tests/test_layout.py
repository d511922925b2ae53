"""The memory layout: measured per model by fastest_memory_format, recorded by the run, kept on resume.
No assertion depends on which layout is faster: the timings come from a loaded machine."""
from __future__ import annotations

import json

import pytest
import torch

from sa_torch.train import loop
from sa_torch.train.checkpoint import CHECKPOINT
from sa_torch.train.layout import fastest_memory_format
from sa_torch.train.loop import Stopper
from sa_torch.models import build_model
from sa_torch.train import main
from test_train import StopAfter, tarball  # noqa: F401  (fixture)

RUN = ["--device", "cpu", "--epochs", "2", "--batch-size", "16", "--lr", "0.05", "--groups", "2", "--quiet"]
LAYOUTS = (torch.channels_last, torch.contiguous_format)


def tiny_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.mark.parametrize("attention", ["none", "sa"])
def test_fastest_memory_format_returns_a_layout_and_a_median_time_for_each(attention):
    model = build_model("resnet20", attention, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fmt, ms = fastest_memory_format(model, "cpu", tiny_batch(), steps=2, warmup=1)
    assert fmt in LAYOUTS
    assert set(ms) == {"contiguous_format", "channels_last"} and all(v > 0 for v in ms.values())
    assert fmt == (torch.channels_last if ms["channels_last"] < ms["contiguous_format"] else torch.contiguous_format)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed: the model itself must not be trained"
    assert model.conv1.weight.is_contiguous(), "the model itself must stay in its layout"
    assert torch.equal(torch.get_rng_state(), rng), "measuring must not move the global RNG"


def test_fastest_memory_format_takes_a_model_factory_and_images_without_labels():
    fmt, ms = fastest_memory_format(lambda: build_model("resnet20", "none", 2), "cpu", tiny_batch()[0], steps=1)
    assert fmt in LAYOUTS and len(ms) == 2


def test_fastest_memory_format_refuses_zero_steps():
    with pytest.raises(ValueError, match="steps=0 must be >= 1"):
        fastest_memory_format(build_model("resnet20", "none", 2), "cpu", tiny_batch(), steps=0)


def test_cli_measures_by_default_and_records_the_layout_and_timings(tarball, tmp_path):
    out = tmp_path / "run"
    assert main(["--data", str(tarball), *RUN, "--out", str(out)]) == 0
    layout = torch.load(out / CHECKPOINT, weights_only=False)["state"]["layout"]
    assert layout["chosen_by"] == "measured" and layout["memory_format"] in ("channels_last", "contiguous_format")
    assert set(layout["ms_per_step"]) == {"contiguous_format", "channels_last"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["memory_format"] for m in metrics] == [layout["memory_format"]] * 2
    assert (out / "metrics.csv").read_text().splitlines()[0].endswith(",memory_format")


@pytest.mark.parametrize("flags, expected", [
    (["--no-channels-last"], ("contiguous_format", "--channels-last off")),
    (["--channels-last"], ("channels_last", "--channels-last on")),
    (["--channels-last", "off"], ("contiguous_format", "--channels-last off")),
])
def test_cli_layout_flags_choose_without_measuring(tarball, tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(loop, "fastest_memory_format", lambda *a, **k: pytest.fail("measured"))
    out = tmp_path / "run"
    assert main(["--data", str(tarball), *RUN, "--epochs", "1", *flags, "--out", str(out)]) == 0
    layout = torch.load(out / CHECKPOINT, weights_only=False)["state"]["layout"]
    assert (layout["memory_format"], layout["chosen_by"]) == expected and layout["ms_per_step"] is None


def test_resume_keeps_the_layout_measured_at_the_start(tarball, tmp_path, monkeypatch):
    measured = {"contiguous_format": 2.0, "channels_last": 1.0}
    monkeypatch.setattr(loop, "fastest_memory_format", lambda *a, **k: (torch.channels_last, measured))
    monkeypatch.setattr(loop, "Stopper", lambda: StopAfter(4))
    out = tmp_path / "run"
    assert main(["--data", str(tarball), *RUN, "--out", str(out)]) == 130
    # were it measured again, NCHW would win now; the resumed run must not ask
    monkeypatch.setattr(loop, "fastest_memory_format", lambda *a, **k: pytest.fail("measured again on resume"))
    monkeypatch.setattr(loop, "Stopper", Stopper)
    assert main(["--out", str(out), "--resume"]) == 0
    state = torch.load(out / CHECKPOINT, weights_only=False)["state"]
    assert state["layout"] == {"memory_format": "channels_last", "chosen_by": "measured", "ms_per_step": measured}
    assert [m["memory_format"] for m in json.loads((out / "metrics.json").read_text())] == ["channels_last"] * 2
