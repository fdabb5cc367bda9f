"""Throughput of the unit pipeline (stages 3-5: features, k-means, units) in hours of audio per minute.

With --unit_encoder_dir (a finished train_unit_encoder exp trained on the same --feats_config), stage 3 also
runs the encoder over the features (encode_feats, one process with --nj threads, as zipper.sh runs it) and
k-means clusters its states, as the default recipe does; the encoder's training is a one-off and not timed.

Runs the same CLIs the stage script runs, as `--nj` parallel processes, on a formatted data dir (stage 2
output, e.g. egs/synth_en/zipper1/dump/audio/train_speech) or, without one, on generated audio (tones and
noise: MFCC and k-means cost do not depend on what is said).  Prints a table; nothing is asserted.

Two columns: "wall" is what the stage script waits for, process start-up (importing torch: ~1.5 s a process)
and merges included; "compute" is the slowest job's own work (what grows with the data), the rate a large
corpus sees.  k-means fits on at most --max_frames frames whatever the corpus size, so its cost is fixed; the
"3 + 5" row is the part that grows with the hours of audio.
"""

from __future__ import annotations

import json
import os
import re
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
    parser.add_argument("--unit_encoder_dir", default=None,
                        help="also time the unit encoder's encoding step (an exp/unit_encoder_* dir; its features "
                             "must be --feats_config's)")
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


def run_jobs(module: str, args: list[str], nj: int) -> tuple[float, float]:
    """Run nj job processes then the merge, like zipper.sh's `sharded`.

    Returns (wall seconds, compute seconds of the slowest job as it logged them: "... in X s").
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    begin = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", module, *args, "--nj", str(nj), "--job", str(j)], env=env,
                              stderr=subprocess.PIPE, text=True) for j in range(1, nj + 1)]
    compute = 0.0
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{module} failed:\n{err[-2000:]}")
        found = re.findall(r" in ([0-9.]+) s", err)
        compute = max(compute, float(found[-1]) if found else float("nan"))
    subprocess.run([sys.executable, "-m", module, *args, "--nj", str(nj), "--merge", "true", "--log_level",
                    "WARNING"], check=True, env=env)
    return time.time() - begin, compute


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
        t_feats, c_feats = run_jobs("zipper.bin.extract_feats", ["--config", config, "--data_dir", str(data),
                                                        "--out_dir", str(feats)], args.nj)
        t_encode = c_encode = 0.0
        if args.unit_encoder_dir:
            encoded = work / "encoded"
            begin = time.time()
            subprocess.run([sys.executable, "-m", "zipper.bin.encode_feats", "--encoder_dir", args.unit_encoder_dir,
                            "--feats_dir", str(feats), "--out_dir", str(encoded), "--num_threads", str(args.nj),
                            "--log_level", "WARNING"], check=True, stdout=subprocess.DEVNULL)
            t_encode, c_encode = time.time() - begin, json.loads((encoded / ".done").read_text())["seconds"]
            feats = encoded  # stages 4-5 cluster and assign the encoder's states
        km_args = ["--feats_dir", str(feats), "--feat_tag", "bench", "--exp_root", str(km_root),
                   "--n_clusters", str(args.n_clusters), "--portion", str(args.kmeans_portion),
                   "--num_threads", str(args.nj), "--log_level", "WARNING"]
        begin = time.time()
        subprocess.run([sys.executable, "-m", "zipper.bin.train_kmeans", *km_args], check=True)
        t_kmeans = time.time() - begin
        tag = subprocess.run([sys.executable, "-m", "zipper.bin.train_kmeans", *km_args, "--print_tag", "true"],
                             check=True, capture_output=True, text=True).stdout.strip()
        c_kmeans = json.loads((km_root / tag / ".done").read_text())["seconds"]
        t_units, c_units = run_jobs("zipper.bin.dump_units", ["--feats_dir", str(feats), "--kmeans_dir",
                                                     str(km_root / tag), "--out_dir", str(units)], args.nj)
    env = environment()
    print(f"\nUnit pipeline throughput: {hours:.2f} h of audio, {args.nj} jobs, K={args.n_clusters}, "
          f"k-means on {args.kmeans_portion:.0%} of the utterances")
    print(f"machine: {env['cpus']} CPUs, {env['platform']}, python {env['python']}, torch {env.get('torch')}")
    print(f"{'stage':<24}{'wall s':>9}{'h/min (wall)':>14}{'compute s':>11}{'h/min (compute)':>17}")
    rows = [("3 features", t_feats, c_feats)]
    if args.unit_encoder_dir:
        rows.append(("3 unit encoder states", t_encode, c_encode))
    rows += [("4 k-means fit", t_kmeans, c_kmeans), ("5 units", t_units, c_units),
             ("3 + 5 (per-hour work)", t_feats + t_encode + t_units, c_feats + c_encode + c_units),
             ("3-5 together", t_feats + t_encode + t_kmeans + t_units, c_feats + c_encode + c_kmeans + c_units)]
    for name, wall, compute in rows:
        print(f"{name:<24}{wall:>9.1f}{_per_minute(hours, wall):>14}{compute:>11.1f}{_per_minute(hours, compute):>17}")


def _per_minute(hours: float, seconds: float) -> str:
    """Hours of audio per minute; timings of tiny runs can round to 0 s (k-means records 0.1 s steps)."""
    return f"{hours / (seconds / 60):.1f}" if seconds > 0 else "n/a (<0.1 s)"


if __name__ == "__main__":
    main()
