"""Stage 1 for LibriTTS: write the Kaldi data dirs dev, test, dev_other, test_other, train_paired_<N>pct,
train_speech and train_text (see zipper/corpora/libritts.py).  Audio stays at 24 kHz.

Finished sets (with a .done marker) are skipped, so a re-run is a no-op; --force true redoes them.  Prints
`<set> <paired|speech|text>` for each set on stdout (the log goes to stderr), for local/data.sh to validate.
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from zipper.corpora.librispeech import CorpusError
from zipper.corpora.libritts import DEFAULT_TRAIN_SUBSETS, prepare_libritts
from zipper.corpora.prepare_options import add_common_options, log_header, options_from_args, print_sets
from zipper.data.kaldi_dir import DataDirError
from zipper.utils.cli import make_parser, parse_and_setup, run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--libritts", default="",
                        help="LibriTTS root, holding train-clean-100/, dev-clean/, ... (LIBRITTS in db.sh)")
    parser.add_argument("--exclude_utts", default="",
                        help="file of utterance ids (or wav paths) to leave out, e.g. a LibriTTS-R list of bad "
                             "samples; native '_' ids are accepted")
    add_common_options(parser, DEFAULT_TRAIN_SUBSETS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    log_header("zipper.bin.prepare_libritts", vars(args))
    made = prepare_libritts(args.libritts, options_from_args(args), exclude_utts=args.exclude_utts or None)
    print_sets(made)


if __name__ == "__main__":
    run_main(main, expected_errors=(CorpusError, DataDirError))
