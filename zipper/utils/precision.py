"""Whether to train in bf16 autocast: `--use_amp true|false|auto`.

On a CPU, bf16 pays only where the matrix units run it natively.  Measured on this project's 2-core Xeons: one
with AVX512-BF16 (presumably without AMX) ran a bf16 matmul at 0.06 TFLOP/s per thread against 0.13-0.17 in fp32
(docs/performance.md, item 8), while a Xeon with AMX tiles ran it at 1.6 TFLOP/s on 2 threads against 0.30
(and the WORLD vocoder's update 1.7x faster, docs/vocoder.md V15).  So `auto` means: bf16 on a GPU that
supports it and on a CPU with AMX, fp32 anywhere else.
"""

from __future__ import annotations

import argparse

import torch

from zipper.utils.cli import str2bool


def amp_mode(value) -> bool | str:
    """An option value (a string from the command line, or a YAML bool from a config) -> True, False or 'auto'.

    true/false stay bools, so that a config.yaml written before 'auto' existed still reads as the same options."""
    if isinstance(value, bool):
        return value
    if str(value).lower() == "auto":
        return "auto"
    try:
        return str2bool(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected true, false or auto, got {value!r}") from None


def cpu_has_amx() -> bool:
    """AMX tiles with bf16 (Intel Sapphire Rapids and later), as torch sees them; /proc/cpuinfo if torch cannot say."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    try:  # pragma: no cover - torch builds without the probe
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read()
    except OSError:  # pragma: no cover
        return False


def resolve_amp(mode, device: torch.device) -> bool:
    """True: train under bf16 autocast on `device`."""
    mode = amp_mode(mode)
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx()
