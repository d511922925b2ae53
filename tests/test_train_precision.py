"""The precision a run trains in (``--amp auto|bf16|fp16|off``): chosen per device, refused where the
device cannot run it, used by the training steps, the evaluation and the layout measurement alike,
recorded in the metrics and the checkpoint, kept on resume; an fp16 run's gradient scaler is saved
and restored. GPUs are faked (compute capability, name, bf16 support as torch reports it)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from sa_torch.train import layout, loop, main, train, train_step
from sa_torch.train.checkpoint import CHECKPOINT, RunState
from sa_torch.train.config import ConfigError, TrainConfig, config_differences
from sa_torch.train.device import describe_device, grad_scaler, precision_for
from sa_torch.train.loop import Stopper
from test_train import SMALL, StopAfter, arrays, tarball, without_timings  # noqa: F401  (fixtures)

GPUS = {"sm_60": ((6, 0), "Tesla P100-PCIE-16GB"), "sm_75": ((7, 5), "Tesla T4"),
        "sm_80": ((8, 0), "NVIDIA A100-SXM4-40GB"), "sm_90": ((9, 0), "NVIDIA H100 80GB HBM3")}
RUN = ["--device", "cpu", "--epochs", "2", "--batch-size", "16", "--lr", "0.05", "--groups", "2"]


@pytest.fixture
def fake_gpu(monkeypatch):
    """``fake_gpu("sm_75")`` makes torch report that GPU as CUDA device 0."""
    def install(arch: str):
        capability, name = GPUS[arch]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        # as torch answers: counting emulation (its default), every one of these GPUs "supports" bf16
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: including_emulation or capability >= (8, 0))
        monkeypatch.setattr(torch.version, "hip", None)
    return install


@pytest.mark.parametrize("arch, expected", [("sm_60", "fp16"), ("sm_75", "fp16"), ("sm_80", "bf16"),
                                            ("sm_90", "bf16")])
def test_auto_takes_bf16_only_where_the_gpu_has_it_in_hardware_and_fp16_with_a_scaler_below(
        fake_gpu, arch, expected):
    fake_gpu(arch)
    assert torch.cuda.is_bf16_supported(), "the fake answers as torch does, emulation included"
    assert precision_for("cuda") == expected
    assert loop.run_precision(TrainConfig(), torch.device("cuda"), None) == (expected, "--amp auto")
    capability, name = GPUS[arch]
    words = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler"}[expected]
    assert describe_device("cuda:0") == f"cuda:0 ({name}, {arch}), {words}"


def test_auto_is_float32_on_the_cpu_and_an_apple_gpu():
    assert precision_for("cpu") == precision_for(torch.device("mps")) == "off"
    assert describe_device("cpu") == "cpu, float32 (no autocast)"


@pytest.mark.parametrize("arch, amp", [("sm_80", "bf16"), ("sm_90", "fp16"), ("sm_60", "off")])
def test_a_precision_the_gpu_runs_is_taken_as_asked(fake_gpu, arch, amp):
    fake_gpu(arch)
    assert loop.run_precision(TrainConfig(amp=amp), torch.device("cuda"), None) == (amp, f"--amp {amp}")


@pytest.mark.parametrize("arch, argv, message", [
    ("sm_75", ["--amp", "bf16", "--device", "cuda"],
     "error: --amp bf16: cuda (Tesla T4, sm_75) has no native bfloat16 (compute capability 8.0 or newer has "
     "it; below, autocast only emulates it, slowly); on cuda use --amp fp16, off or auto\n"),
    ("sm_60", ["--amp", "bf16", "--device", "cuda:0"],
     "error: --amp bf16: cuda:0 (Tesla P100-PCIE-16GB, sm_60) has no native bfloat16 (compute capability "
     "8.0 or newer has it; below, autocast only emulates it, slowly); on cuda:0 use --amp fp16, off or auto\n"),
    (None, ["--amp", "fp16", "--device", "cpu"],
     "error: --amp fp16: fp16 autocast with a gradient scaler is for GPUs (a CPU has no fast float16 "
     "arithmetic); on cpu use --amp bf16, off or auto\n"),
], ids=["bf16-on-t4", "bf16-on-p100", "fp16-on-cpu"])
def test_a_precision_the_device_cannot_run_is_one_clear_error_before_any_data_is_read(
        fake_gpu, tmp_path, capsys, arch, argv, message):
    if arch:
        fake_gpu(arch)
    assert main([*argv, "--quiet", "--data", str(tmp_path / "no-data-here")]) == 2
    assert capsys.readouterr().err == message


def test_the_precision_drives_training_evaluation_and_the_layout_and_is_recorded_and_kept_on_resume(
        tarball, tmp_path, monkeypatch, capsys):
    seen = set()

    def spy(module):
        real = module.autocast

        def autocast(device, precision):
            seen.add((module.__name__.rpartition(".")[2], torch.is_grad_enabled(), precision))
            return real(device, precision)
        monkeypatch.setattr(module, "autocast", autocast)
    spy(loop)
    spy(layout)
    monkeypatch.setattr(loop, "Stopper", lambda: StopAfter(4))
    out = tmp_path / "run"
    assert main(["--data", str(tarball), *RUN, "--amp", "bf16", "--out", str(out)]) == 130   # layout measured
    assert capsys.readouterr().out.startswith("device: cpu, bf16 autocast (--amp bf16)\nmemory layout: ")
    assert seen == {("layout", True, "bf16"), ("loop", True, "bf16"), ("loop", False, "bf16")}, \
        "the layout's steps, the training steps and the evaluation (no grad) all in bf16"
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert ckpt["state"]["amp"] == "bf16" and "scaler" not in ckpt, "no gradient scaler outside fp16"

    assert main(["--out", str(out), "--resume", "--amp", "off"]) == 2
    assert "these flags differ from it: --amp off (saved bf16)" in capsys.readouterr().err
    monkeypatch.setattr(loop, "Stopper", Stopper)
    seen.clear()
    assert main(["--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().out.startswith("device: cpu, bf16 autocast (as saved)\nmemory layout: ")
    assert seen == {("loop", True, "bf16"), ("loop", False, "bf16")}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["precision"] for m in metrics] == ["bf16", "bf16"]
    assert (out / "metrics.csv").read_text().splitlines()[0].endswith(",precision,memory_format")


def test_a_resume_on_a_device_without_the_saved_precision_is_refused(arrays, tmp_path, fake_gpu):
    cfg = TrainConfig(**SMALL, epochs=1, amp="bf16", out=str(tmp_path / "run"))
    train(cfg, data=arrays, stopper=StopAfter(1))
    fake_gpu("sm_75")
    with pytest.raises(ConfigError, match=r"^--resume: the saved run trains in bf16, and cuda \(Tesla T4, sm_75\) "
                       r"has no native bfloat16 .*; a resumed run keeps its precision, so resume it on a "
                       r"device that runs bf16$"):
        train(dataclasses.replace(cfg, resume=True, device="cuda"), data=arrays)


def test_settings_saved_by_earlier_versions_read_as_precisions():
    assert [TrainConfig(amp=v).amp for v in (None, True, False)] == ["auto", "bf16", "off"]
    assert [RunState(amp=v).amp for v in (None, True, False)] == [None, "bf16", "off"]
    assert config_differences({"amp": None}, {"amp": "auto"}) == []
    assert config_differences({"amp": True}, {"amp": "fp16"}) == ["--amp fp16 (saved bf16)"]
    with pytest.raises(ConfigError, match=r"^amp='fp8' must be one of \('auto', 'bf16', 'fp16', 'off'\)$"):
        TrainConfig(amp="fp8")


def tiny_step_parts():
    """A small model (float32 parameters), its optimizer and schedule, and a batch: (B, C, H, W) = (6, 3, 6, 9)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 7, 4))
    x, y = torch.randn(6, 3, 6, 9), torch.randint(0, 4, (6,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0), x, y


def test_an_fp16_step_unscales_the_gradients_before_the_update():
    model, opt, sched, x, y = tiny_step_parts()
    reference, ref_opt, ref_sched, _, _ = tiny_step_parts()
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, opt, sched, x, y, nn.CrossEntropyLoss(), "fp16", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    train_step(reference, ref_opt, ref_sched, x, y, nn.CrossEntropyLoss(), "off")
    for p, r, b in zip(model.parameters(), reference.parameters(), before):
        step, ref_step = p.detach() - b, r.detach() - b
        assert ref_step.abs().max() > 0
        assert (step - ref_step).abs().max() <= 1e-2 * ref_step.abs().max(), "fp16 step != float32 step"


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_an_fp16_step_whose_gradients_overflow_is_skipped_and_the_scale_backs_off():
    model, opt, sched, x, y = tiny_step_parts()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)    # float16 overflows past 65504
    train_step(model, opt, sched, x, y, nn.CrossEntropyLoss(), "fp16", scaler)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before)), "the step must be skipped"
    assert scaler.get_scale() == 2.0 ** 39
    with pytest.raises(ValueError, match="precision='fp16' needs a gradient scaler"):
        train_step(model, opt, sched, x, y, nn.CrossEntropyLoss(), "fp16")


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_a_resumed_fp16_run_continues_with_the_saved_gradient_scaler_and_ends_exactly_like_an_uninterrupted_one(
        arrays, tmp_path, monkeypatch):
    # fp16 is for GPUs, and a ResNet's float16 convolutions take minutes on a CPU: here a small
    # model trains in fp16 on the CPU, under a scale that doubles after every step without
    # overflow, so that steps overflow and are skipped, and a resume that forgot the scale
    # would skip others
    monkeypatch.setattr(loop, "precision_problem", lambda precision, device: None)
    monkeypatch.setattr(loop, "build_model", lambda *args, num_classes, **options: nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)))
    monkeypatch.setattr(loop, "grad_scaler",
                        lambda device, precision: torch.amp.GradScaler("cpu", init_scale=2.0 ** 19, growth_interval=1))
    cfg = TrainConfig(**SMALL, epochs=3, amp="fp16")
    whole = train(dataclasses.replace(cfg, out=str(tmp_path / "whole")), data=arrays)
    part = dataclasses.replace(cfg, out=str(tmp_path / "run"))
    assert train(part, data=arrays, stopper=StopAfter(4))["interrupted"]
    saved = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)
    assert saved["state"]["amp"] == "fp16" and saved["scaler"]["scale"] != 2.0 ** 19, "the scale moved"
    resumed = train(dataclasses.replace(part, resume=True), data=arrays)
    assert without_timings(resumed["metrics"]) == without_timings(whole["metrics"])
    assert [m["precision"] for m in resumed["metrics"]] == ["fp16"] * 3
    for (name, a), b in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    final = [torch.load(tmp_path / d / CHECKPOINT, weights_only=False)["scaler"] for d in ("whole", "run")]
    assert final[0] == final[1]


def test_the_gradient_scaler_is_made_for_fp16_only():
    assert grad_scaler("cpu", "bf16") is None and grad_scaler("cpu", "off") is None
    assert isinstance(grad_scaler("cpu", "fp16"), torch.amp.GradScaler)
