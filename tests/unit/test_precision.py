import argparse

import pytest
import torch

from zipper.utils import precision
from zipper.utils.precision import amp_mode, resolve_amp


@pytest.mark.parametrize("given, mode", [("true", True), ("False", False), ("AUTO", "auto"), (True, True),
                                         (False, False), ("1", True), ("no", False)])
def test_amp_mode_reads_strings_and_yaml_bools(given, mode):
    assert amp_mode(given) is mode if isinstance(mode, bool) else amp_mode(given) == mode


def test_amp_mode_refuses_other_values():
    with pytest.raises(argparse.ArgumentTypeError, match="expected true, false or auto, got 'bf16'"):
        amp_mode("bf16")


@pytest.mark.parametrize("amx", [True, False])
def test_auto_means_bf16_only_on_a_cpu_with_amx(monkeypatch, amx):
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is amx
    assert resolve_amp("true", cpu) is True and resolve_amp(False, cpu) is False  # explicit choices win


def test_trainer_option_takes_auto_and_keeps_bools():
    from zipper.train.trainer import add_trainer_arguments
    from zipper.utils.cli import make_parser

    parser = make_parser("t")
    add_trainer_arguments(parser)
    out = ["--output_dir", "x"]
    assert parser.parse_args(out).use_amp is False  # a config.yaml of before 'auto' reads the same
    assert parser.parse_args(out + ["--use_amp", "auto"]).use_amp == "auto"
    assert parser.parse_args(out + ["--use_amp", "true"]).use_amp is True
