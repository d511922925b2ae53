"""`python -m sa_torch.train.compare`: --export writes each run's weights; --resume is refused, not ignored."""
from __future__ import annotations

import json

import torch

from sa_torch.train import compare
from sa_torch.models import build_model
from test_train import tarball  # noqa: F401  (fixture)

RUN = ["--device", "cpu", "--epochs", "1", "--batch-size", "16", "--lr", "0.05", "--groups", "2", "--quiet",
       "--no-channels-last", "--seeds", "0"]


def test_export_writes_the_weights_of_every_run(tarball, tmp_path, capsys):
    export = tmp_path / "weights"
    rc = compare.main(["--data", str(tarball), *RUN, "--variants", "plain", "sa", "--export", str(export),
                       "--json", str(tmp_path / "rows.json")])
    assert rc == 0
    assert sorted(p.name for p in export.iterdir()) == ["plain-seed0.pt", "sa-seed0.pt"]
    rows = json.loads((tmp_path / "rows.json").read_text())
    for name, attention in (("plain", "none"), ("sa", "sa")):
        saved = torch.load(export / f"{name}-seed0.pt", weights_only=True)
        assert saved["config"]["attention"] == attention
        build_model("resnet20", attention, 2, num_classes=3).load_state_dict(saved["state_dict"], strict=True)
        assert saved["metrics"]["test_acc"] == next(r["test_acc"] for r in rows if r["name"] == name)
    assert {r["memory_format"] for r in rows} == {"contiguous_format"}


def test_resume_is_refused_with_one_line_naming_what_to_do(tarball, tmp_path, capsys):
    rc = compare.main(["--data", str(tarball), *RUN, "--out", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: --resume: python -m sa_torch.train.compare starts new runs; continue one of them "
                          "with python -m sa_torch.train --out DIR/<variant>-seed<seed> --resume")
    assert list(tmp_path.iterdir()) == []


def test_a_comparison_does_not_replace_runs_of_an_earlier_one_unless_asked(tarball, tmp_path, capsys):
    argv = ["--data", str(tarball), *RUN, "--variants", "plain", "--out", str(tmp_path / "cmp")]
    assert compare.main(argv) == 0
    before = (tmp_path / "cmp" / "plain-seed0" / "checkpoint.pt").read_bytes()
    assert compare.main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "cmp" / "plain-seed0" / "checkpoint.pt").read_bytes() == before
    assert compare.main([*argv, "--overwrite"]) == 0
