"""Seconds per update of a WORLD vocoder preset, in fp32 and in bf16 autocast, and the training time they imply.

Prices a vocoder preset in a minute instead of a half-hour training: builds the preset's WorldVocoder
(conf/vocoder_s.yaml by default) and times its real training step (zipper.vocoder.train.GanTrainer.world_step:
forward, feature and duration losses, backward, clipping, AdamW) on random units and WORLD frames of the
preset's segment and batch shapes, after a warm-up; the median step is reported, with the large-matmul rate of
the same dtype and `--use_amp auto`'s choice on this machine.  The projected minutes are max_steps x the step;
the WORLD analysis (~1.6 min for synth_en's train_vocoder on 2 cores) and data sampling come on top.  Nothing
is asserted.

    python -m zipper.bin.benchmark_vocoder                              # conf/vocoder_s.yaml, fp32 and bf16
    python -m zipper.bin.benchmark_vocoder --preset conf/tuning/vocoder_s_7k.yaml --dtypes float32
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
from typing import Sequence

import torch
import yaml

from zipper.utils.benchmark import REPO, matmul_peak, n_params, timed
from zipper.utils.cli import make_parser, parse_and_setup, positive_int
from zipper.utils.log import environment
from zipper.utils.precision import cpu_has_amx, resolve_amp
from zipper.vocoder.inference import build_vocoder
from zipper.vocoder.train import GanTrainer

TRAINER_DEFAULTS = dict(vocoder="world", ngpu=0, fs=16000, mel_loss_conf={}, lr=1e-3, discriminator_lr=0.0,
                        betas=[0.9, 0.99], weight_decay=0.0, lr_decay=1.0, grad_clip=5.0, lambda_dur=1.0,
                        segment_frames=64, batch_size=16, max_steps=8000)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--preset", default=str(REPO / "conf" / "vocoder_s.yaml"), help="vocoder preset (YAML)")
    parser.add_argument("--n_units", type=positive_int, default=256, help="unit inventory (the recipe's K)")
    parser.add_argument("--hop", type=positive_int, default=640, help="samples per unit (640: 25 Hz at 16 kHz)")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated: float32 (no autocast) and/or bfloat16 (autocast)")
    parser.add_argument("--num_threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser


def preset_args(path: str, amp: bool, output_dir: str) -> argparse.Namespace:
    with open(path, encoding="utf-8") as f:
        preset = yaml.safe_load(f) or {}
    conf = argparse.Namespace(**{**TRAINER_DEFAULTS, **preset, "use_amp": amp, "output_dir": output_dir})
    if conf.vocoder != "world":
        raise ValueError(f"{path}: times WORLD vocoders only (vocoder: {conf.vocoder})")
    return conf


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_and_setup(get_parser(), argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device = torch.device("cpu")
    env = environment()
    print(f"vocoder benchmark {datetime.datetime.now().isoformat(timespec='seconds')}: {args.preset}; CPU "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX {'yes' if cpu_has_amx() else 'no'}, "
          f"{torch.get_num_threads()} threads; torch {env.get('torch')}, git {env.get('git')}; --use_amp auto here: "
          f"{'bf16' if resolve_amp('auto', device) else 'fp32'}")
    print(f"{'dtype':<10}{'s/update':>10}{'train min':>11}{'matmul TFLOP/s':>16}")
    rows = []
    for dtype_name in args.dtypes.split(","):
        amp = dtype_name == "bfloat16"
        with tempfile.TemporaryDirectory() as tmp:
            conf = preset_args(args.preset, amp, tmp)
            torch.manual_seed(0)
            model = build_vocoder(conf, {"speakers": ["target"], "n_units": args.n_units, "hop_length": args.hop,
                                         "fs": conf.fs})
            trainer = GanTrainer(conf, model, None, None, [])
            frames = conf.segment_frames
            batch = {"units": torch.randint(0, args.n_units, (conf.batch_size, frames)),
                     "feats": torch.randn(conf.batch_size, frames * model.ratio, model.world.dim),
                     "speakers": torch.zeros(conf.batch_size, dtype=torch.long),
                     "lengths": torch.full((conf.batch_size,), frames)}
            for _ in range(args.warmup):
                trainer.world_step(batch)
            step_s = statistics.median(timed(lambda: trainer.world_step(batch), device)
                                       for _ in range(args.steps))
            if trainer.writer:
                trainer.writer.close()
        peak = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
        row = {"dtype": dtype_name, "step_s": step_s, "train_min": step_s * conf.max_steps / 60,
               "matmul_tflops": peak / 1e12, "params": n_params(model)}
        rows.append(row)
        print(f"{dtype_name:<10}{step_s:>10.3f}{row['train_min']:>11.1f}{row['matmul_tflops']:>16.3f}")
    print(f"train min = {conf.max_steps} updates x s/update (WORLD analysis and data sampling not included)")
    return rows


if __name__ == "__main__":
    main()
