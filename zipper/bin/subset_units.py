"""Units of a subset (e.g. train_paired_10pct) taken from its superset's units, provenance and all.

The nested aligned subsets share their audio with the largest paired set, so stages 2-5 run once on it and
each subset's units.scp is filtered from there.  Utterances of the subset that the superset dropped (stage 2
duration filter) are reported and left out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from zipper.data.kaldi_dir import DataDirError, read_kv, write_kv
from zipper.tokens.units import UNITS_SCP
from zipper.utils.atomic import mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main
from zipper.utils.provenance import ProvenanceError, read_provenance, write_provenance

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--src_dir", required=True, help="units of the superset (dump/units/<km>/<superset>)")
    parser.add_argument("--data_dir", required=True, help="data dir of the subset (data/<subset>)")
    parser.add_argument("--out_dir", required=True, help="units of the subset (dump/units/<km>/<subset>)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    src, out = Path(args.src_dir), Path(args.out_dir)
    units = read_kv(src / UNITS_SCP)
    lengths = read_kv(src / "utt2num_units")
    wanted = list(read_kv(Path(args.data_dir) / "utt2spk"))
    missing = [u for u in wanted if u not in units]
    if len(missing) == len(wanted):
        raise DataDirError(f"none of the utterances of {args.data_dir} is in {src / UNITS_SCP}: is it a subset?")
    if missing:
        logger.warning("%d utterances of %s have no units in %s (dropped in stage 2?), e.g. %s", len(missing),
                       args.data_dir, src, missing[0])
    keep = [u for u in wanted if u in units]
    prov = dict(read_provenance(src), subset_of=str(src))
    write_provenance(out, prov, overwrite=True)
    write_kv(out / UNITS_SCP, {u: units[u] for u in keep})
    write_kv(out / "utt2num_units", {u: lengths[u] for u in keep})
    mark_done(out, info={"num_utts": len(keep), "missing": len(missing)})
    logger.info("%s: %d utterances from %s", out, len(keep), src)


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, ProvenanceError, FileNotFoundError))
