"""Synthesise the utterances of one synth_en plan part (one job of `run.pl JOB=1:N ...`).

Each wav is written to a temporary name and renamed, so a wav that exists is complete: an interrupted job
that is started again skips those and redoes only the rest (--overwrite true redoes everything).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from zipper.corpora import synth_en
from zipper.corpora.synth_en import SynthError
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool
from zipper.utils.log import log_run_header

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("plan", help="plan file written by prepare_synth_en (e.g. split2/plan.1.tsv)")
    parser.add_argument("--overwrite", type=str2bool, default=False,
                        help="synthesise again utterances whose wav already exists")
    parser.add_argument("--log_every", type=int, default=1000, help="log progress every this many utterances")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    log_run_header("zipper.bin.synthesize_synth_en", vars(args))
    if not Path(args.plan).is_file():
        raise SynthError(f"{args.plan}: no such plan file (run prepare_synth_en first)")
    items = synth_en.read_plan(args.plan)
    synth_en.check_programs([i.engine for i in items])
    start = time.time()
    done = skipped = 0
    audio_s = 0.0
    bar = tqdm(items, desc=Path(args.plan).name, unit="utt", disable=None, file=sys.stderr)
    for n, item in enumerate(bar, start=1):
        if not args.overwrite and synth_en.wav_is_complete(item.wav):
            skipped += 1
        else:
            samples = synth_en.synthesize(item)
            synth_en.write_wav(item.wav, samples)
            done += 1
            audio_s += len(samples) / synth_en.FS
        if args.log_every > 0 and n % args.log_every == 0:
            logger.info("%d / %d utterances (%d synthesised, %d already there), %.1f s", n, len(items), done,
                        skipped, time.time() - start)
    elapsed = time.time() - start
    logger.info("%s: synthesised %d utterances (%.2f h of audio), skipped %d complete ones, in %.1f s "
                "(%.1f utt/s)", args.plan, done, audio_s / 3600, skipped, elapsed, done / max(elapsed, 1e-9))


if __name__ == "__main__":
    run_main(main, expected_errors=(SynthError, OSError))
