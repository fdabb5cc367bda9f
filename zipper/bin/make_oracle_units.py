"""Diagnostic: write a data set's transcripts as "oracle" units (its characters, 3 frames each) beside real units.

    python -m zipper.bin.make_oracle_units --text data/dev/text \\
        --like_units dump/units/mfcc_k256_fcfd7dd5/dev --out_dir dump/units/oracle/dev

A speech tower and a fused model trained on such units show what the fusion can learn when the units are
perfectly readable (docs/learning.md, rows O1-O5); see zipper/tokens/oracle_units.py.  Never a result.
"""

from __future__ import annotations

import logging
from typing import Sequence

from zipper.tokens.oracle_units import write_oracle_unit_set
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--text", required=True, help="Kaldi text file (utt transcript)")
    parser.add_argument("--like_units", required=True, help="a real unit set whose inventory (provenance) to take")
    parser.add_argument("--out_dir", required=True, help="where the oracle units go")
    parser.add_argument("--frames", type=positive_int, default=3, help="frames per character")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    n = write_oracle_unit_set(args.text, args.like_units, args.out_dir, args.frames)
    logger.info("%s: oracle units of %d utterances of %s", args.out_dir, n, args.text)


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError))
