"""Measuring speed honestly on any machine: device sync, matmul peak FLOP/s, timed optimizer steps, the decoder-LM
FLOPs formula and the repository's tower presets.  Shared by the benchmarks (zipper.bin.benchmark and
zipper.bin.benchmark_towers), which only parse options and print tables.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[2]
H100_BF16_TFLOPS = 780.0  # the measured dense bf16 matmul ceiling of an H100 (H200: same chip)

# ----------------------------------------------------------------------------------------------- timing helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matrix product: the ceiling MFU is measured against."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 20 if device.type == "cuda" else 3
    begin = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - begin)


def peak_flops(device: torch.device, dtype: torch.dtype, given_tflops: float = 0.0) -> tuple[float, str]:
    """(FLOP/s, how it was obtained)."""
    if given_tflops > 0:
        return given_tflops * 1e12, "given"
    if device.type == "cuda" and dtype == torch.bfloat16:
        name = torch.cuda.get_device_name(device)
        if "H100" in name or "H200" in name:
            return H100_BF16_TFLOPS * 1e12, f"{name}: the issue's measured bf16 ceiling"
    return matmul_peak(device, dtype), "measured here (matmul)"


def fused_adamw_ok(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu")


def make_train_step(model: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor] | Sequence[Callable],
                    device: torch.device, amp: bool = False, compiled: bool = False,
                    lr: float = 1e-4) -> Callable[[], None]:
    """Optimizer steps of `model`, one per loss: loss_of(run) with run = model or its torch.compile'd self, AdamW
    (fused).  Several losses (Zipper's ASR and TTS) make one timed step of as many optimizer steps."""
    if compiled:
        torch._dynamo.reset()  # a fresh compile per model: no shapes carried over (they would turn dynamic)
    run = torch.compile(model) if compiled else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, fused=fused_adamw_ok(device))
    losses = list(loss_of) if isinstance(loss_of, (list, tuple)) else [loss_of]

    def step() -> None:
        for one in losses:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = one(run)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return step


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> dict:
    """Seconds per step after warm-up, and peak device memory (GiB; NaN on a CPU, which keeps no such count).

    On a GPU: all steps timed together (timing each would stall the host between steps).  On a CPU: the
    median step, which a machine shared with other work disturbs less than the mean."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        begin = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        seconds = (time.perf_counter() - begin) / max(steps, 1)
    else:
        seconds = statistics.median(timed(step, device) for _ in range(max(steps, 1)))
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    return {"step_s": seconds, "peak_gib": peak}


def formula_flops_per_token(params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """The issue's training FLOPs per token of a decoder LM: 6 N + 12 L d T."""
    return 6 * params + 12 * n_layers * d_model * seq_len


def counted_flops(fn: Callable[[], None]) -> float:
    """Matmul FLOPs of one call (forward and backward), attention through the math kernel so that it is counted."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1, budget_s: float = 3.0) -> float:
    """Wall seconds of fn(), the fastest of up to `repeats` runs (the least disturbed by other work); no new run
    starts once `budget_s` seconds have been spent, so that a slow row is timed once."""
    best, spent = float("inf"), 0.0
    for _ in range(max(repeats, 1)):
        sync(device)
        begin = time.perf_counter()
        fn()
        sync(device)
        seconds = time.perf_counter() - begin
        best, spent = min(best, seconds), spent + seconds
        if spent > budget_s:
            break
    return best


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------- the models
def load_preset(size: str) -> tuple[str, dict]:
    path = Path(size) if size.endswith((".yaml", ".yml")) else REPO / "conf" / f"tower_{size}.yaml"
    with open(path, encoding="utf-8") as f:
        preset = yaml.safe_load(f)
    conf = dict(preset.get("tower_conf", {}))
    conf["dropout"] = 0.0
    return (path.stem.replace("tower_", "") if path.stem.startswith("tower_") else str(path)), conf


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
