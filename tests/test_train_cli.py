"""The training command line is made from TrainConfig's fields: every flag has help, switches print
sensible defaults, given flags are detected as given (the modules' sizes and imports: test_architecture.py)."""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from sa_torch.train.config import FIELDS, TrainConfig
from sa_torch.train.cli import given_flags, parser

REPO = Path(__file__).resolve().parents[1]


def options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_option_has_help_text():
    missing = [a.option_strings[0] for a in options(parser()) if not (a.help and a.help.strip())]
    assert not missing, f"options without help: {missing}"


def test_no_switch_prints_a_python_bool_as_its_default():
    help_text = parser().format_help()
    assert "(default: True)" not in help_text and "(default: False)" not in help_text
    for action in options(parser()):
        if isinstance(action, argparse._StoreFalseAction):
            assert "default: True" not in action.help, action.option_strings
    by_flag = {a.option_strings[0]: a for a in options(parser())}
    assert by_flag["--no-shuffle"].help == "SA ablation: drop the channel shuffle (default: the shuffle is kept)"
    assert by_flag["--quiet"].help.endswith("(default: progress is shown)")


def test_every_config_field_is_a_flag_with_the_fields_default():
    by_dest = {a.dest: a for a in options(parser())}
    assert set(FIELDS) <= set(by_dest)
    defaults = vars(parser().parse_args([]))
    for name, f in FIELDS.items():
        assert defaults[name] == f.metadata.get("cli_default", f.default), name
    cfg = TrainConfig(**{k: v for k, v in defaults.items() if k in FIELDS})
    assert cfg.channels_last == "auto" and TrainConfig().channels_last is None


def test_given_flags_are_exactly_those_on_the_command_line_even_at_their_default_value():
    assert given_flags([]) == {}
    assert given_flags(["--epochs", "30", "--no-shuffle", "--no-channels-last", "--quiet"]) == {
        "epochs": 30, "sa_shuffle": False, "channels_last": "off", "progress": False}
    assert given_flags(["--channels-last"]) == {"channels_last": "on"}
    assert given_flags(["--no-amp", "--export", "w.pt"]) == {"amp": "off", "export": "w.pt"}


def test_bad_choices_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--channels-last", "sideways"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_help_states_the_resume_rule():
    text = " ".join(parser().format_help().split())
    assert "except those that do not change what is trained: --data, --download, --device, --quiet and --export" in text


def test_public_names_of_sa_torch_train_still_import():
    import sa_torch.train as train_module
    names = ["CHECKPOINT", "TIMING_KEYS", "ConfigError", "Stopper", "TrainConfig", "check_model", "epoch_order",
             "export_weights", "main", "make_optimizer", "one_cycle", "parser", "pick_device", "train",
             "train_step", "sync", "load_trained"]
    assert [n for n in names if not hasattr(train_module, n)] == []
    assert dataclasses.is_dataclass(train_module.TrainConfig) and issubclass(train_module.ConfigError, ValueError)


def test_python_m_sa_torch_train_help_works():
    proc = subprocess.run([sys.executable, "-m", "sa_torch.train", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--channels-last" in proc.stdout and "resuming:" in proc.stdout
