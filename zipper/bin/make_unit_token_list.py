"""Stage 6 (speech): the speech tower's token list for a k-means codebook, checked against unit sets.

Token ids: the reserved special slots, then unit u at id NUM_SPECIAL + u.  Every `--units_dir` given must come
from the same codebook (else the speech tower would be trained on units it cannot name).
"""

from __future__ import annotations

import logging
from typing import Sequence

from zipper.tokens.token_list import unit_tokens, write_token_list
from zipper.tokens.units import INVENTORY_KEYS, UnitSet
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool
from zipper.utils.provenance import ProvenanceError, read_provenance

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--kmeans_dir", required=True, help="k-means dir (stage 4 output)")
    parser.add_argument("--out_dir", required=True, help="token list dir (data/token_list/speech_<km_tag>)")
    parser.add_argument("--units_dirs", nargs="*", default=[], help="unit sets that must match the codebook")
    parser.add_argument("--force", type=str2bool, default=False, help="replace an existing different list")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    km = read_provenance(args.kmeans_dir)
    provenance = {"kind": "speech", **{k: km[k] for k in INVENTORY_KEYS},
                  "frame_shift_samples": km.get("frame_shift_samples")}
    for d in args.units_dirs:
        UnitSet(d).check_inventory(provenance, f"the codebook {args.kmeans_dir}")
    write_token_list(args.out_dir, unit_tokens(km["n_clusters"]), provenance, force=args.force)
    logger.info("%s: %d unit tokens + specials (k-means %s); %d unit sets checked", args.out_dir,
                km["n_clusters"], km["kmeans_tag"], len(args.units_dirs))


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, ValueError, FileNotFoundError))
