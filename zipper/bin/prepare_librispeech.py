"""Stage 1 for LibriSpeech: write the Kaldi data dirs dev, test, dev_other, test_other, train_paired_<N>pct,
train_speech and train_text (see zipper/corpora/librispeech.py for what each holds).

Finished sets (with a .done marker) are skipped, so a re-run is a no-op; --force true redoes them.  Prints
`<set> <paired|speech|text>` for each set on stdout (the log goes to stderr), for local/data.sh to validate.
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from zipper.corpora.librispeech import TRAIN_SUBSETS, CorpusError, prepare_librispeech
from zipper.corpora.prepare_options import add_common_options, log_header, options_from_args, print_sets
from zipper.data.kaldi_dir import DataDirError
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--librispeech", default="",
                        help="LibriSpeech root, holding train-clean-100/, dev-clean/, ... (LIBRISPEECH in db.sh)")
    parser.add_argument("--skip_unmatched", type=str2bool, default=False,
                        help="leave out (with a warning) flac files without a transcript line and transcript "
                             "lines without a flac, instead of failing")
    add_common_options(parser, TRAIN_SUBSETS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    log_header("zipper.bin.prepare_librispeech", vars(args))
    made = prepare_librispeech(args.librispeech, options_from_args(args), skip_unmatched=args.skip_unmatched)
    print_sets(made)


if __name__ == "__main__":
    run_main(main, expected_errors=(CorpusError, DataDirError))
