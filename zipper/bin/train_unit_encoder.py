"""Stage 3 (with --unit_encoder_config): train the unit encoder, a CTC character model over the upstream's features
of the aligned pairs, whose block states stage 4 clusters into units (zipper/tokens/unit_encoder.py).

Reads the features (stage 3) and transcripts of the paired training set and of the validation set; writes to
--output_dir the experiment files of every trainer run (config.yaml, checkpoints, the n-best average, history,
images/, tensorboard/, run.sh), then the encoder itself (unit_encoder.json, unit_encoder.pth, from the n-best
average) and scores.json with the encoder's own greedy CER and WER on the validation set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import kaldiio
import numpy as np
import torch

from zipper.data.kaldi_dir import read_kv
from zipper.scoring.unit_judge import (CharVocabulary, JudgeBatches, add_ctc_data_arguments, normalised_targets,
                                       transcribe_all)
from zipper.scoring.wer import Normalizer, align, character_error_rate
from zipper.tokens.unit_encoder import UnitEncoder, UnitEncoderConfig
from zipper.train.experiment import begin_run
from zipper.train.trainer import Trainer, add_trainer_arguments, parameter_report
from zipper.utils.atomic import atomic_write_json, is_done, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main, yaml_value
from zipper.utils.provenance import ProvenanceError, read_provenance

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__, config=True)
    group = parser.add_argument_group("unit encoder")
    add_ctc_data_arguments(group, "feats", "dump/feats/<tag>/<set>, of the paired training set")
    group.add_argument("--encoder_conf", type=yaml_value, default={},
                       help="YAML dict of UnitEncoderConfig fields (stride, remove_position, layer, output, d_model, "
                            "n_heads, d_ff, n_layers, conv_kernel, dropout)")
    add_trainer_arguments(parser)
    parser.set_defaults(max_epoch=8, batch_bins=8000, lr=2e-3, warmup_steps=100, keep_nbest_models=2)
    return parser


def read_pairs(feats_dir: str, data_dir: str, vocab: CharVocabulary, normalizer: Normalizer
               ) -> tuple[list[str], list[np.ndarray], list[list[int]]]:
    """(utts, upstream frames, character ids) of the utterances that have both features and a transcript."""
    text_file = Path(data_dir) / "text"
    scp = read_kv(Path(feats_dir) / "feats.scp")
    texts = read_kv(text_file)
    missing = [u for u in texts if u not in scp]
    if missing:
        raise KeyError(f"{len(missing)} utterances of {text_file} have no features in {feats_dir}, e.g. '{missing[0]}'")
    utts, chars, dropped = normalised_targets(texts, vocab, normalizer, str(text_file))
    if dropped:
        logger.warning("%s: %d characters are not in the encoder's vocabulary and were left out", text_file, dropped)
    return utts, [np.asarray(kaldiio.load_mat(scp[u]), dtype=np.float32) for u in utts], chars


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    output_dir = Path(args.output_dir)
    if is_done(output_dir):
        logger.info("%s is complete; nothing to do", output_dir)
        return
    rank, world = begin_run(args, "zipper.bin.train_unit_encoder")
    feats_prov = read_provenance(args.train_feats)
    valid_prov = read_provenance(args.valid_feats)
    if valid_prov["feature_hash"] != feats_prov["feature_hash"]:
        raise ProvenanceError(f"{args.valid_feats} holds other features (hash {valid_prov['feature_hash']}) than "
                              f"{args.train_feats} (hash {feats_prov['feature_hash']})")

    normalizer = Normalizer(**(args.normalizer or {}))
    vocab = CharVocabulary.from_texts([normalizer(t) for t in read_kv(Path(args.train_text) / "text").values()])
    _, train_frames, train_chars = read_pairs(args.train_feats, args.train_text, vocab, normalizer)
    valid_utts, valid_frames, valid_chars = read_pairs(args.valid_feats, args.valid_text, vocab, normalizer)
    config = UnitEncoderConfig(**(args.encoder_conf or {}))
    model = UnitEncoder(config, input_dim=train_frames[0].shape[1], n_chars=len(vocab))
    model.fit_preparation(train_frames)  # deterministic: the same on a resumed run
    train_x = [model.prepare(f).numpy() for f in train_frames]
    valid_x = [model.prepare(f).numpy() for f in valid_frames]
    logger.info("data: train %d utterances / %d frames after a stride of %d, valid %d; %d characters",
                len(train_x), sum(len(x) for x in train_x), config.stride, len(valid_x), len(vocab))
    logger.info("unit encoder: %s", parameter_report(model))
    train = JudgeBatches(train_x, train_chars, args.batch_bins, args.seed, True, args.max_batch_size, rank, world)
    valid = JudgeBatches(valid_x, valid_chars, args.batch_bins, args.seed, False)
    trainer = Trainer(args, model, train, valid)
    trainer.run()
    if rank != 0:
        return

    model.load_state_dict(torch.load(output_dir / "valid.loss.ave.pth", map_location=trainer.device))
    valid_texts = read_kv(Path(args.valid_text) / "text")
    refs = {u: normalizer(valid_texts[u]) for u in valid_utts}
    hyps = transcribe_all(model.model, vocab, dict(zip(valid_utts, valid_x)), device=trainer.device)
    counts, _ = align(refs, hyps, normalizer)
    provenance = {k: feats_prov.get(k) for k in ("upstream", "layer", "feature_hash", "upstream_conf")}
    provenance.update(train_feats=args.train_feats, train_data_hash=feats_prov.get("data_hash"))
    identity = model.cpu().save(output_dir, vocab.symbols, provenance)
    scores = {"valid_feats": args.valid_feats, "valid_wer": counts.wer,
              "valid_cer": character_error_rate(refs, hyps), "utterances": len(valid_utts),
              "train_utterances": len(train_x), "hash": identity}
    atomic_write_json(output_dir / "scores.json", scores)
    mark_done(output_dir, info={"valid_cer": scores["valid_cer"], "hash": identity})
    print(f"{output_dir}: unit encoder {identity}, greedy CTC on {args.valid_feats}: CER {scores['valid_cer']:.1f}%, "
          f"WER {counts.wer:.1f}%")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
