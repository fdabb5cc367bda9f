"""Throughput of the unit pipeline (stages 3-5: features, k-means, units) in hours of audio per minute.

Runs the same CLIs the stage script runs, as `--nj` parallel processes, on a formatted data dir (stage 2
output, e.g. egs/synth_en/zipper1/dump/audio/train_speech) or, without one, on generated audio (tones and
noise: MFCC and k-means cost do not depend on what is said).  Prints a table; nothing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from zipper.data.kaldi_dir import read_kv
from zipper.utils.cli import make_parser, parse_and_setup, positive_int
from zipper.utils.log import environment


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", default=None, help="formatted data dir to run on (default: generated audio)")
    parser.add_argument("--hours", type=float, default=2.0, help="hours of generated audio (without --data_dir)")
    parser.add_argument("--nj", type=positive_int, default=2, help="parallel jobs (processes)")
    parser.add_argument("--feats_config", default=None,
                        help="extract_feats YAML config (default: s3prl mfcc at a 20 ms frame shift)")
    parser.add_argument("--n_clusters", type=positive_int, default=256, help="k-means K")
    parser.add_argument("--kmeans_portion", type=float, default=0.1, help="portion of utterances k-means fits on")
    parser.add_argument("--work_dir", default=None, help="where outputs go (default: a temp dir, removed)")
    return parser


def generate_data_dir(root: Path, hours: float, seed: int = 0) -> Path:
    """A formatted data dir of 2-6 s utterances adding up to `hours`."""
    import numpy as np
    import soundfile

    from zipper.data.kaldi_dir import spk2utt_from_utt2spk, write_kv

    rng = np.random.default_rng(seed)
    data, wav_dir = root / "audio", root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav, lengths, utt2spk = {}, {}, {}
    total, i = 0.0, 0
    while total < hours * 3600:
        n = int(16000 * rng.uniform(2.0, 6.0))
        t = np.arange(n) / 16000
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(n)
        utt = f"spk{i % 10}-{i:06d}"
        soundfile.write(wav_dir / f"{utt}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
        wav[utt], lengths[utt], utt2spk[utt] = str(wav_dir / f"{utt}.wav"), str(n), f"spk{i % 10}"
        total += n / 16000
        i += 1
    write_kv(data / "wav.scp", wav)
    write_kv(data / "utt2num_samples", lengths)
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return data


def run_jobs(module: str, args: list[str], nj: int) -> float:
    """Run nj job processes then the merge, like zipper.sh's `sharded`; return wall seconds."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    begin = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", module, *args, "--nj", str(nj), "--job", str(j),
                               "--log_level", "WARNING"], env=env) for j in range(1, nj + 1)]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError(f"{module} failed")
    subprocess.run([sys.executable, "-m", module, *args, "--nj", str(nj), "--merge", "true", "--log_level",
                    "WARNING"], check=True, env=env)
    return time.time() - begin


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        if args.data_dir:
            data = Path(args.data_dir)
        else:
            print(f"generating {args.hours} h of audio in {work} ...", flush=True)
            data = generate_data_dir(work, args.hours)
        hours = sum(int(n) for n in read_kv(data / "utt2num_samples").values()) / 16000 / 3600
        feats, km_root, units = work / "feats", work / "kmeans", work / "units"
        config = args.feats_config
        if config is None:
            config = str(work / "feats_mfcc20.yaml")
            Path(config).write_text("upstream: mfcc\nupstream_conf: {kaldi: {mfcc: {frame_shift: 20.0}}}\n")
        t_feats = run_jobs("zipper.bin.extract_feats", ["--config", config, "--data_dir", str(data),
                                                        "--out_dir", str(feats)], args.nj)
        km_args = ["--feats_dir", str(feats), "--feat_tag", "bench", "--exp_root", str(km_root),
                   "--n_clusters", str(args.n_clusters), "--portion", str(args.kmeans_portion),
                   "--num_threads", str(args.nj), "--log_level", "WARNING"]
        begin = time.time()
        subprocess.run([sys.executable, "-m", "zipper.bin.train_kmeans", *km_args], check=True)
        t_kmeans = time.time() - begin
        tag = subprocess.run([sys.executable, "-m", "zipper.bin.train_kmeans", *km_args, "--print_tag", "true"],
                             check=True, capture_output=True, text=True).stdout.strip()
        t_units = run_jobs("zipper.bin.dump_units", ["--feats_dir", str(feats), "--kmeans_dir",
                                                     str(km_root / tag), "--out_dir", str(units)], args.nj)
    env = environment()
    print(f"\nUnit pipeline throughput: {hours:.2f} h of audio, {args.nj} jobs, K={args.n_clusters}, "
          f"k-means on {args.kmeans_portion:.0%} of the utterances")
    print(f"machine: {env['cpus']} CPUs, {env['platform']}, python {env['python']}, torch {env.get('torch')}")
    print(f"{'stage':<28}{'wall s':>9}{'h audio / min':>16}")
    for name, seconds in [("3 features", t_feats), ("4 k-means fit", t_kmeans), ("5 units", t_units),
                          ("3-5 together", t_feats + t_kmeans + t_units)]:
        print(f"{name:<28}{seconds:>9.1f}{hours / (seconds / 60):>16.1f}")


if __name__ == "__main__":
    main()
