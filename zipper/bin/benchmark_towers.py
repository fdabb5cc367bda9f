"""Training throughput of a tower preset: tokens/s, model-FLOPs utilisation (MFU) and peak memory.

Trains the preset's tower on random tokens for a few steps (after warm-up) with the preset's optimizer
settings, as tower_train would, and prints one line per configuration.  MFU counts the training FLOPs of a
decoder LM, (6 * parameters + 12 * layers * d_model * sequence_length) per token, against a peak measured here
with a large matrix product in the same dtype (so the figure is honest on any machine); nothing is asserted.

    python -m zipper.bin.benchmark_towers --preset conf/tower_l.yaml --device cuda --batch 8 --seq_len 2048
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
import yaml

from zipper.models.lm import TowerLM
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, str2bool
from zipper.utils.log import environment


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--preset", default="conf/tower_s.yaml", help="tower preset (tower_conf is read)")
    parser.add_argument("--vocab_size", type=positive_int, default=32000, help="vocabulary (text-like: 32k)")
    parser.add_argument("--batch", type=positive_int, default=8, help="sequences per step")
    parser.add_argument("--seq_len", type=positive_int, default=256, help="tokens per sequence")
    parser.add_argument("--steps", type=positive_int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated: float32 (no autocast) and/or bfloat16 (autocast)")
    parser.add_argument("--compile", type=str2bool, default=False, help="also time torch.compile")
    return parser


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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


def time_training(model: torch.nn.Module, args, device: torch.device, amp: bool, compiled: bool) -> dict:
    torch.manual_seed(0)
    run = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    tokens = torch.randint(8, args.vocab_size, (args.batch, args.seq_len + 1), device=device)
    lengths = torch.full((args.batch,), args.seq_len + 1, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _, _ = run(tokens, lengths)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    sync(device)
    begin = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - begin) / args.steps
    peak_memory = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    return {"step_s": seconds, "tokens_per_s": args.batch * args.seq_len / seconds, "peak_gib": peak_memory}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    device = torch.device(args.device)
    with open(args.preset, encoding="utf-8") as f:
        preset = yaml.safe_load(f)
    conf = dict(preset.get("tower_conf", {}))
    conf["dropout"] = 0.0
    config = TowerConfig(vocab_size=args.vocab_size, **conf)
    model = TowerLM(DecoderTower(config)).to(device)
    params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * params + 12 * config.n_layers * config.d_model * args.seq_len
    env = environment()
    print(f"tower {args.preset}: {params / 1e6:.1f} M parameters (d {config.d_model}, {config.n_layers} layers, "
          f"vocab {args.vocab_size}); batch {args.batch} x {args.seq_len}; device {env.get('device')}, "
          f"torch {env.get('torch')}")
    print(f"{'dtype':<10}{'compile':>8}{'step s':>9}{'tokens/s':>11}{'peak TFLOP/s':>14}{'MFU':>7}{'peak GiB':>10}")
    for dtype_name in args.dtypes.split(","):
        amp = dtype_name == "bfloat16"
        peak = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
        for compiled in ([False, True] if args.compile else [False]):
            r = time_training(model, args, device, amp, compiled)
            mfu = flops_per_token * r["tokens_per_s"] / peak
            print(f"{dtype_name:<10}{str(compiled):>8}{r['step_s']:>9.3f}{r['tokens_per_s']:>11.0f}"
                  f"{peak / 1e12:>14.1f}{mfu:>7.1%}{r['peak_gib']:>10.2f}")


if __name__ == "__main__":
    main()
