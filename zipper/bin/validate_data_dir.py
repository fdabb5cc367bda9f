"""Check Kaldi data directories (utils/validate_data_dir.sh calls this); exit 1 naming every problem.

With --disjoint_from, the dirs checked are training sets and must share no utterance id, recording or audio
content with the given evaluation sets (zipper/data/overlap.py); --allow_overlap true turns that into a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from zipper.data.kaldi_dir import DataDirError, read_kv, validate_data_dir
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("data_dirs", nargs="+", help="data directories to check")
    parser.add_argument("--no_text", action="store_true", help="the data dir has no transcripts (unpaired speech)")
    parser.add_argument("--no_wav", action="store_true", help="the data dir has no audio (unpaired text)")
    parser.add_argument("--check_audio", type=str2bool, default=False,
                        help="also open every recording and check its sample rate")
    parser.add_argument("--fs", type=int, default=None, help="expected sample rate (with --check_audio)")
    parser.add_argument("--disjoint_from", action="append", default=[], metavar="DIR",
                        help="an evaluation data dir that must share no utterance id or recording with the dirs "
                             "checked (training sets); repeat for several")
    parser.add_argument("--hash_audio", type=str2bool, default=True,
                        help="with --disjoint_from: also compare audio file contents (only files of equal size are read)")
    parser.add_argument("--allow_overlap", type=str2bool, default=False,
                        help="with --disjoint_from: only warn about shared utterances (you know what you do)")
    parser.add_argument("--summary", type=str2bool, default=False,
                        help="print a line per dir on stdout: utterances and hours (or sentences and words)")
    return parser


def summary_line(data_dir: str, n_utts: int) -> str:
    """`  <dir>  <N> utterances  <H> h` from utt2dur, or `<N> sentences  <W> words` for a text-only dir."""
    d = Path(data_dir)
    if (d / "utt2dur").is_file():
        hours = sum(float(v) for v in read_kv(d / "utt2dur").values()) / 3600
        return f"  {data_dir:<40} {n_utts:>10} utterances {hours:>10.2f} h"
    if (d / "text").is_file() and not (d / "wav.scp").is_file():
        words = sum(len(v.split()) for v in read_kv(d / "text").values())
        return f"  {data_dir:<40} {n_utts:>10} sentences  {words:>10} words"
    return f"  {data_dir:<40} {n_utts:>10} utterances"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    for d in args.data_dirs:
        n = validate_data_dir(d, need_text=not args.no_text, need_wav=not args.no_wav,
                              check_audio=args.check_audio, fs=args.fs, disjoint_from=args.disjoint_from,
                              hash_audio=args.hash_audio, allow_overlap=args.allow_overlap)
        logger.info("%s: ok (%d utterances)", d, n)
        if args.summary:
            print(summary_line(d, n))


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError,))
