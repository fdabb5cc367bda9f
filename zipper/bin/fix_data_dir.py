"""Make a Kaldi data directory consistent (utils/fix_data_dir.sh calls this), as Kaldi's fix_data_dir.sh does.

Keeps the utterances found (with a value) in every per-utterance file, sorts every file, regenerates spk2utt
and restricts spk2gender to the speakers left.  The originals are copied to DIR/.backup/ first.  What cannot be
fixed without guessing (bad UTF-8, a key repeated with different values, utterance ids that need renaming) is
reported, file and line, and nothing is changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from zipper.data.kaldi_dir import BACKUP_DIR, DataDirError, fix_data_dir
from zipper.utils.cli import make_parser, parse_and_setup, run_main

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.prog = "utils/fix_data_dir.sh"
    parser.add_argument("data_dir", help="the data directory to fix in place")
    return parser


def main(argv: Sequence[str] | None = None) -> tuple[int, int]:
    args = parse_and_setup(get_parser(), argv)
    kept, removed = fix_data_dir(args.data_dir)
    logger.info("%s: kept %d utterances, removed %d; originals in %s", args.data_dir, kept, removed,
                Path(args.data_dir) / BACKUP_DIR)
    return kept, removed


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, OSError))
