"""`--out DIR --resume` continues the saved run with its saved configuration; nothing is overwritten
unless asked. Tiny runs on generated data (48 training images, batch 16: 3 steps an epoch)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sa_torch.train import loop
from sa_torch.train.checkpoint import CHECKPOINT
from sa_torch.train.config import ConfigError, TrainConfig
from sa_torch.train import main, train
from test_data import make_tarball, write_imagefolder
from test_train import SMALL, StopAfter, arrays, tarball, without_timings  # noqa: F401  (fixtures)

# a run that differs from every CLI default that matters, so that a resume with CLI defaults would show
RUN = ["--device", "cpu", "--epochs", "3", "--batch-size", "16", "--lr", "0.05", "--warmup-epochs", "0.5",
       "--groups", "2", "--seed", "3", "--channels-last", "off", "--quiet"]


def run_dir_snapshot(out) -> dict:
    """Every file in ``out`` with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())}


@pytest.fixture
def interrupted(tarball, tmp_path, monkeypatch):
    """A run in tmp_path/run stopped (as by Ctrl-C) after 4 of its 9 steps."""
    out = tmp_path / "run"
    monkeypatch.setattr(loop, "Stopper", lambda: StopAfter(4))
    assert main(["--data", str(tarball), *RUN, "--out", str(out)]) == 130
    monkeypatch.undo()
    return out


def test_resume_with_only_out_continues_the_saved_run_and_ends_like_an_uninterrupted_one(
        tarball, tmp_path, interrupted, capsys):
    assert main(["--data", str(tarball), *RUN, "--out", str(tmp_path / "whole")]) == 0
    torch.manual_seed(99)
    assert main(["--out", str(interrupted), "--resume"]) == 0
    resumed = json.loads((interrupted / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert [m["epoch"] for m in resumed] == [1, 2, 3], "the saved --epochs 3, not the CLI default"
    assert without_timings(resumed) == without_timings(whole)
    config = torch.load(interrupted / CHECKPOINT, weights_only=False)["config"]
    assert (config["seed"], config["lr"], config["groups"], config["batch_size"]) == (3, 0.05, 2, 16)


def test_interrupted_message_names_the_command_that_continues(tarball, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "Stopper", lambda: StopAfter(1))
    out = tmp_path / "run"
    assert main(["--data", str(tarball), *RUN, "--out", str(out)]) == 130
    assert f"continue with: python -m sa_torch.train --out {out} --resume" in capsys.readouterr().err


def test_the_original_command_plus_resume_is_accepted(tarball, interrupted):
    assert main(["--data", str(tarball), *RUN, "--out", str(interrupted), "--resume"]) == 0
    assert len(json.loads((interrupted / "metrics.json").read_text())) == 3


def test_flags_that_differ_from_the_saved_run_are_refused_in_one_line_naming_each(interrupted, capsys):
    before = run_dir_snapshot(interrupted)
    rc = main(["--out", str(interrupted), "--resume", "--epochs", "5", "--lr", "0.2", "--tta", "--no-shuffle",
               "--batch-size", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err == (f"error: --resume continues the saved run in {interrupted}; these flags differ from it: "
                   "--epochs 5 (saved 3), --lr 0.2 (saved 0.05), --tta (saved without it), "
                   "--no-shuffle (saved without it)\n"), "--batch-size 16 is the saved value, so not a difference"
    assert run_dir_snapshot(interrupted) == before


def test_a_flag_given_at_its_cli_default_still_counts_as_given(interrupted, capsys):
    # --epochs 30 is the CLI default: only detecting the flags given (not comparing with defaults) sees it
    assert main(["--out", str(interrupted), "--resume", "--epochs", "30", "--channels-last", "auto"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 30 (saved 3), --channels-last auto (saved off)" in err


def test_flags_that_cannot_change_the_result_may_differ_on_resume(tarball, interrupted, tmp_path):
    assert main(["--out", str(interrupted), "--resume", "--device", "cpu", "--quiet", "--data", str(tarball),
                 "--export", str(tmp_path / "w.pt")]) == 0
    assert torch.load(tmp_path / "w.pt", weights_only=True)["metrics"]["epoch"] == 3


def test_resume_refuses_data_of_another_size(tmp_path, interrupted, capsys):
    write_imagefolder(tmp_path / "other", counts={"train": 8, "test": 8}, tint=True)
    other = make_tarball(tmp_path / "other", tmp_path / "other.tar.gz")
    before = run_dir_snapshot(interrupted)
    assert main(["--out", str(interrupted), "--resume", "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: the data differ from the saved run's: 24 training and 24 test")
    assert "; saved: 48 training and 24 test images of the classes cat, dog, frog\n" in err
    assert run_dir_snapshot(interrupted) == before


def test_resuming_a_finished_run_says_so_and_touches_nothing(tarball, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data", str(tarball), *RUN, "--epochs", "1", "--out", str(out)]) == 0
    before = run_dir_snapshot(out)
    capsys.readouterr()
    assert main(["--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out} is finished: 1 of 1 epochs done, test accuracy ")
    assert run_dir_snapshot(out) == before


def test_a_new_run_in_a_directory_holding_a_checkpoint_is_refused_unless_overwrite(tarball, interrupted, capsys):
    before = run_dir_snapshot(interrupted)
    assert main(["--data", str(tarball), *RUN, "--out", str(interrupted)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {interrupted} already holds a run ({interrupted / CHECKPOINT}); continue it with "
                   f"--out {interrupted} --resume, or start a new run there with --overwrite\n")
    assert run_dir_snapshot(interrupted) == before
    assert main(["--data", str(tarball), *RUN, "--epochs", "1", "--out", str(interrupted), "--overwrite"]) == 0
    assert torch.load(interrupted / CHECKPOINT, weights_only=False)["config"]["epochs"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--resume"], "error: --resume needs --out DIR, the directory of the run to continue\n"),
    (["--resume", "--out", "{tmp}/empty"], "error: --resume: no checkpoint in {tmp}/empty "
     "({tmp}/empty/checkpoint.pt does not exist); to start a new run there, leave out --resume\n"),
    (["--resume", "--overwrite", "--out", "{tmp}"],
     "error: --resume continues the run in --out and --overwrite replaces it: give one of them\n"),
], ids=["no-out", "no-checkpoint", "with-overwrite"])
def test_resume_without_a_run_to_continue_is_one_clear_error(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err == message.format(tmp=tmp_path)
    assert not (tmp_path / "empty").exists()


def test_library_resume_with_another_configuration_raises(arrays, tmp_path):
    cfg = TrainConfig(**SMALL, epochs=2, out=str(tmp_path / "run"))
    train(cfg, data=arrays, stopper=StopAfter(1))
    with pytest.raises(ConfigError, match=r"these flags differ from it: --epochs 3 \(saved 2\)$"):
        train(dataclasses.replace(cfg, epochs=3, resume=True), data=arrays)
