"""Split an scp (or any keyed list) into contiguous, balanced parts, as Kaldi's utils/split_scp.pl does.

utils/split_scp.pl [--utt2spk=FILE] in.scp out1 out2 ...   writes every part to its file;
utils/split_scp.pl [--utt2spk=FILE] -j N K in.scp          prints part K (0-based; 1-based with --one-based).
The first (lines % parts) parts get one line more.  With --utt2spk a speaker's utterances stay in one part.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from zipper.data.kaldi_dir import DataDirError, read_kv, read_lines, split_lines
from zipper.utils.atomic import atomic_write_text
from zipper.utils.cli import make_parser, parse_and_setup, run_main

logger = logging.getLogger(__name__)


class SplitError(ValueError):
    """The lines cannot be split as asked (too few lines or speakers, an utterance without a speaker)."""


def get_parser():
    parser = make_parser(__doc__)
    parser.prog = "utils/split_scp.pl"
    parser.add_argument("--utt2spk", default=None, metavar="FILE",
                        help="keep each speaker's utterances in one part (speakers must be contiguous in the scp)")
    parser.add_argument("-j", nargs=2, type=int, default=None, metavar=("N", "K"),
                        help="split into N parts and print part K to stdout instead of writing files")
    parser.add_argument("--one_based", "--one-based", action="store_true",
                        help="with -j, K counts from 1 (as in JOB=1:N) instead of 0")
    parser.add_argument("scp", help="the file to split")
    parser.add_argument("outputs", nargs="*", help="one output file per part")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = get_parser()
    args = parse_and_setup(parser, argv)
    if args.j is not None:
        if args.outputs:
            parser.error("give either -j N K or output files, not both")
        n, k = args.j
        k -= 1 if args.one_based else 0
        if n < 1 or not 0 <= k < n:
            parser.error(f"-j {args.j[0]} {args.j[1]}: the part must be in "
                         f"{'1..N' if args.one_based else '0..N-1'} and N positive")
    elif not args.outputs:
        parser.error("give at least one output file (or -j N K)")
    else:
        n, k = len(args.outputs), -1
    lines = read_lines(args.scp)
    utt2spk = read_kv(args.utt2spk) if args.utt2spk else None
    if utt2spk is None:
        blank = [i for i, line in enumerate(lines, start=1) if not line.strip()]
        if blank:
            raise DataDirError([f"{args.scp}:{i}: empty line" for i in blank])
    try:
        parts = split_lines(lines, n, utt2spk, source=args.scp)
    except ValueError as e:
        raise SplitError(str(e)) from e
    if args.j is not None:
        sys.stdout.buffer.write("".join(line + "\n" for line in parts[k]).encode("utf-8"))
        sys.stdout.flush()
        return
    for out, part in zip(args.outputs, parts):
        atomic_write_text(out, "".join(line + "\n" for line in part))
    logger.debug("%s: %d lines split into %s", args.scp, len(lines), " ".join(str(len(p)) for p in parts))


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, SplitError, OSError))
