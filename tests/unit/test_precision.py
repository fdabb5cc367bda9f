import argparse

import pytest
import torch

from zipper.utils import precision
from zipper.utils.precision import amp_mode, resolve_amp


@pytest.mark.parametrize("given, mode", [("true", "true"), ("False", "false"), ("AUTO", "auto"), (True, "true"),
                                         (False, "false"), ("1", "true"), ("no", "false")])
def test_amp_mode_reads_strings_and_yaml_bools(given, mode):
    assert amp_mode(given) == mode


def test_amp_mode_refuses_other_values():
    with pytest.raises(argparse.ArgumentTypeError, match="expected true, false or auto, got 'bf16'"):
        amp_mode("bf16")


@pytest.mark.parametrize("amx", [True, False])
def test_auto_means_bf16_only_on_a_cpu_with_amx(monkeypatch, amx):
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is amx
    assert resolve_amp("true", cpu) is True and resolve_amp(False, cpu) is False  # explicit choices win
