"""Stage 5: speech units (nearest k-means centroid per frame) of a set, as int32 kaldiio ark/scp.

Run as `nj` jobs (`--nj N --job J`), then once with `--merge true`, which writes <out_dir>/units.scp,
utt2num_units (`<utt> <units> <units after dedup>`) and provenance.json (k-means tag, upstream, layer, K,
seed, data hashes).  Units are stored at the frame rate; deduplication happens at load time
(zipper.tokens.units.dedup).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from zipper.data.kaldi_dir import DataDirError, read_kv, write_kv
from zipper.tokens.units import UNITS_SCP, UnitArkWriter, dedup, unit_provenance
from zipper.utils.atomic import atomic_path, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main
from zipper.utils.provenance import (PROVENANCE_FILE, ProvenanceError, check_provenance, read_provenance,
                                     write_provenance)
from zipper.utils.sharding import add_sharding_options, finished_job_dirs, mark_job_finished, pending_job

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--feats_dir", required=True, help="features of the set (stage 3 output)")
    parser.add_argument("--kmeans_dir", required=True, help="k-means dir (stage 4 output)")
    parser.add_argument("--out_dir", required=True, help="where units.scp goes (dump/units/<km_tag>/<set>)")
    parser.add_argument("--num_threads", type=positive_int, default=1, help="torch threads per job")
    parser.add_argument("--chunk_frames", type=positive_int, default=50_000,
                        help="frames assigned in one matrix product (utterances are grouped up to this)")
    add_sharding_options(parser)
    return parser


def merge(out_dir: Path, nj: int, utts: list[str], prov: dict) -> None:
    units: dict[str, str] = {}
    lengths: dict[str, str] = {}
    for d in finished_job_dirs(out_dir, nj):
        units.update(read_kv(d / UNITS_SCP))
        lengths.update(read_kv(d / "utt2num_units"))
    missing = sorted(set(utts) - set(units))
    if missing:
        raise DataDirError(f"{len(missing)} utterances have no units, e.g. '{missing[0]}'")
    write_kv(out_dir / UNITS_SCP, units)
    write_kv(out_dir / "utt2num_units", lengths)
    write_provenance(out_dir, prov, overwrite=True)
    total = sum(int(n.split()[0]) for n in lengths.values())
    deduped = sum(int(n.split()[1]) for n in lengths.values())
    mark_done(out_dir, info={"num_utts": len(units), "units": total, "dedup_units": deduped})
    logger.info("%s: %d utterances, %d units (%d after dedup, %.2f frames per run)", out_dir, len(units), total,
                deduped, total / max(deduped, 1))


def run_job(args, scp: dict[str, str], out_dir: Path, prov: dict) -> None:
    import kaldiio
    import torch

    from zipper.tokens.kmeans import KMeansModel

    torch.set_num_threads(args.num_threads)
    pending = pending_job(out_dir, args.nj, args.job, list(scp), prov=prov)
    if pending is None:
        return
    mine, directory, key = pending
    model = KMeansModel(args.kmeans_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ark_path = (directory / "units.ark").resolve()
    lengths: dict[str, str] = {}
    begin, frames = time.time(), 0

    def flush(batch: list[tuple[str, np.ndarray]], writer: UnitArkWriter) -> None:
        # one nearest-centroid search for many utterances: far fewer, larger matrix products
        units = model(np.concatenate([f for _, f in batch]), np.concatenate([np.arange(len(f)) for _, f in batch]))
        start = 0
        for utt, feats in batch:
            u = units[start:start + len(feats)]
            start += len(feats)
            writer[utt] = u
            lengths[utt] = f"{len(u)} {len(dedup(u)[0])}"

    with atomic_path(directory / UNITS_SCP) as tmp_scp, open(ark_path, "wb") as ark, \
            open(tmp_scp, "w", encoding="utf-8") as scp_out:
        writer = UnitArkWriter(ark, str(ark_path), scp_out)
        batch: list[tuple[str, np.ndarray]] = []
        size = 0
        for utt in mine:
            feats = kaldiio.load_mat(scp[utt])
            batch.append((utt, feats))
            size += len(feats)
            frames += len(feats)
            if size >= args.chunk_frames:
                flush(batch, writer)
                batch, size = [], 0
        if batch:
            flush(batch, writer)
    write_kv(directory / "utt2num_units", lengths)
    mark_job_finished(directory, key)
    logger.info("job %d/%d: %d utterances, %d frames in %.1f s", args.job, args.nj, len(mine), frames,
                time.time() - begin)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    feats_dir, out_dir = Path(args.feats_dir), Path(args.out_dir)
    km_prov = read_provenance(args.kmeans_dir)
    feats_prov = read_provenance(feats_dir)
    if feats_prov["feature_hash"] != km_prov["feature_hash"]:
        raise ProvenanceError(f"features in {feats_dir} ({feats_prov['upstream']}, hash "
                              f"{feats_prov['feature_hash']}) are not the features k-means {args.kmeans_dir} "
                              f"was fitted on (hash {km_prov['feature_hash']})")
    prov = unit_provenance(km_prov, feats_prov)
    if (out_dir / PROVENANCE_FILE).exists():
        check_provenance(read_provenance(out_dir), prov, prov.keys(), f"{out_dir} already holds other units: it")
    scp = read_kv(feats_dir / "feats.scp")
    if args.merge:
        merge(out_dir, args.nj, list(scp), prov)
    else:
        run_job(args, scp, out_dir, prov)


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, ProvenanceError, RuntimeError, FileNotFoundError, ValueError))
