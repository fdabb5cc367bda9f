"""Training throughput of one tower preset: tokens/s, model-FLOPs utilisation (MFU) and peak memory.

The tower-only corner of zipper.bin.benchmark (same code: its training step, timing and MFU), kept for its
per-dtype table: fp32 weights, with bf16 autocast or without.  Trains the preset's tower on random tokens for
a few steps (after warm-up) with AdamW, as tower_train would, and prints one line per configuration.  MFU
counts the training FLOPs of a decoder LM, (6 * parameters + 12 * layers * d_model * sequence_length) per
token, against a peak measured here with a large matrix product in the same dtype (so the figure is honest on
any machine) unless --peak_tflops is given; nothing is asserted.  The full comparison (Zipper, HF Llama,
decoding) is `python -m zipper.bin.benchmark`.

    python -m zipper.bin.benchmark_towers --preset conf/tower_l.yaml --device cuda --batch 8 --seq_len 2048
"""

from __future__ import annotations

from typing import Sequence

import torch

from zipper.models.lm import TowerLM
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.utils.benchmark import (formula_flops_per_token, load_preset, make_train_step, n_params, peak_flops,
                                    time_steps)
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
    parser.add_argument("--peak_tflops", type=float, default=0.0, help="MFU denominator (0: measured here)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    device = torch.device(args.device)
    _, conf = load_preset(args.preset)
    config = TowerConfig(vocab_size=args.vocab_size, **conf)
    model = TowerLM(DecoderTower(config)).to(device)
    params = n_params(model)
    flops_per_token = formula_flops_per_token(params, config.n_layers, config.d_model, args.seq_len)
    env = environment()
    print(f"tower {args.preset}: {params / 1e6:.1f} M parameters (d {config.d_model}, {config.n_layers} layers, "
          f"vocab {args.vocab_size}); batch {args.batch} x {args.seq_len}; device {env.get('device')}, "
          f"torch {env.get('torch')}")
    print(f"{'dtype':<10}{'compile':>8}{'step s':>9}{'tokens/s':>11}{'peak TFLOP/s':>14}{'MFU':>7}{'peak GiB':>10}")
    torch.manual_seed(0)
    tokens = torch.randint(8, args.vocab_size, (args.batch, args.seq_len + 1), device=device)
    lengths = torch.full((args.batch,), args.seq_len + 1, device=device)
    for dtype_name in args.dtypes.split(","):
        amp = dtype_name == "bfloat16"
        peak, _ = peak_flops(device, torch.bfloat16 if amp else torch.float32, args.peak_tflops)
        for compiled in ([False, True] if args.compile else [False]):
            step = make_train_step(model, lambda run: run(tokens, lengths)[0], device, amp=amp, compiled=compiled)
            r = time_steps(step, args.steps, args.warmup, device)
            tokens_per_s = args.batch * args.seq_len / r["step_s"]
            peak_gib = "-" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.2f}"
            print(f"{dtype_name:<10}{str(compiled):>8}{r['step_s']:>9.3f}{tokens_per_s:>11.0f}"
                  f"{peak / 1e12:>14.1f}{flops_per_token * tokens_per_s / peak:>7.1%}{peak_gib:>10}")


if __name__ == "__main__":
    main()
