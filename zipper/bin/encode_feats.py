"""Stage 3 (with --unit_encoder_config): a set's upstream features -> the unit encoder's block states, written as a
new feature dir that stages 4-5 cluster and assign like any other (zipper/tokens/unit_encoder.py).

Writes <out_dir>/feats.scp (+ feats.ark), utt2num_frames, provenance.json (the upstream's identity, the
encoder's hash, the new frame shift) and .done.  An output dir that holds features of another encoder or
upstream is refused rather than overwritten; a finished one is left as it is.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.tokens.unit_encoder import UnitEncoder, encoded_provenance
from zipper.utils.atomic import atomic_path, is_done, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main
from zipper.utils.provenance import (PROVENANCE_FILE, ProvenanceError, check_provenance, read_provenance,
                                     write_provenance)

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--encoder_dir", required=True, help="a finished train_unit_encoder experiment")
    parser.add_argument("--feats_dir", required=True, help="upstream features of the set (dump/feats/<tag>/<set>)")
    parser.add_argument("--out_dir", required=True, help="where the encoded features go")
    parser.add_argument("--num_threads", type=positive_int, default=2, help="torch threads")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    import kaldiio
    import torch

    args = parse_and_setup(get_parser(), argv)
    feats_dir, out_dir = Path(args.feats_dir), Path(args.out_dir)
    encoder, info = UnitEncoder.load(args.encoder_dir)
    upstream = read_provenance(feats_dir)
    trained_on = info["provenance"].get("feature_hash")
    if upstream["feature_hash"] != trained_on:
        raise ProvenanceError(f"features in {feats_dir} (hash {upstream['feature_hash']}) are not the features the "
                              f"unit encoder {args.encoder_dir} was trained on (hash {trained_on})")
    prov = encoded_provenance(upstream, info, args.encoder_dir)
    keys = ("feature_hash", "data_hash", "frame_shift_samples")
    if (out_dir / PROVENANCE_FILE).exists():
        check_provenance(read_provenance(out_dir), prov, keys, f"{out_dir} already holds other features: it")
    if is_done(out_dir):
        logger.info("%s is complete; nothing to do", out_dir)
        return
    torch.set_num_threads(args.num_threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_provenance(out_dir, prov, overwrite=True)
    scp = read_kv(feats_dir / "feats.scp")
    ark_path = (out_dir / "feats.ark").resolve()
    lengths: dict[str, str] = {}
    begin = time.time()
    with atomic_path(out_dir / "feats.scp") as tmp_scp, \
            kaldiio.WriteHelper(f"ark,scp:{ark_path},{tmp_scp}") as writer:
        for i, (utt, path) in enumerate(sorted(scp.items()), 1):
            states = encoder.encode(kaldiio.load_mat(path))  # (T / stride, d_model)
            writer(utt, states)
            lengths[utt] = str(len(states))
            if i % 1000 == 0:
                logger.info("encoded %d / %d utterances", i, len(scp))
    write_kv(out_dir / "utt2num_frames", lengths)
    frames = sum(int(n) for n in lengths.values())
    mark_done(out_dir, info={"utterances": len(lengths), "frames": frames, "seconds": round(time.time() - begin, 1)})
    print(f"{out_dir}: {len(lengths)} utterances, {frames} frames of dim {encoder.config.d_model} "
          f"(unit encoder {info['hash']})")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
