"""Stage 2: check and format a data dir's audio (one sample rate, readable files) and filter by duration.

Run as `nj` jobs (`--nj N --job J`, each takes its share of wav.scp) and then once with `--merge true`, which
writes <out_dir> as a complete data dir (wav.scp, utt2num_samples, utt2dur and the input's other files,
restricted to the utterances kept).  A finished job is skipped when re-run with the same inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from zipper.data.format_audio import format_entries, merge_jobs, write_job_result
from zipper.data.kaldi_dir import DataDirError, read_kv
from zipper.utils.atomic import mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool
from zipper.utils.provenance import hash_file
from zipper.utils.sharding import add_sharding_options, finished_job_dirs, mark_job_finished, pending_job

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--in_dir", required=True, help="input data dir (with wav.scp)")
    parser.add_argument("--out_dir", required=True, help="output data dir (dump/audio/<set>)")
    parser.add_argument("--fs", type=int, default=16000, help="sample rate every recording must have")
    parser.add_argument("--resample", type=str2bool, default=False,
                        help="convert recordings at another rate (else: error naming them)")
    parser.add_argument("--min_duration", type=float, default=0.1, help="drop utterances shorter than this (s)")
    parser.add_argument("--max_duration", type=float, default=float("inf"),
                        help="drop utterances longer than this (s)")
    add_sharding_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if args.merge:
        kept, dropped = merge_jobs(in_dir, out_dir, finished_job_dirs(out_dir, args.nj), args.fs)
        mark_done(out_dir, info={"kept": kept, "dropped": dropped})
        logger.info("%s -> %s: %d utterances kept, %d dropped by duration", in_dir, out_dir, kept, dropped)
        return
    wav_scp = in_dir / "wav.scp"
    utts = list(read_kv(wav_scp))
    pending = pending_job(out_dir, args.nj, args.job, utts, wav_scp=hash_file(wav_scp), fs=args.fs,
                          resample=args.resample, min=args.min_duration, max=args.max_duration)
    if pending is None:
        return
    mine, directory, key = pending
    result = format_entries(wav_scp, mine, out_dir / "data", args.fs, args.resample, args.min_duration,
                            args.max_duration)
    write_job_result(directory, result)
    mark_job_finished(directory, key)
    logger.info("job %d/%d: %d kept, %d dropped", args.job, args.nj, len(result.kept), len(result.dropped))


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, RuntimeError))
