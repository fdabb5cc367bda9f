"""Stage 9: fine-tune on aligned data for ASR and TTS - Zipper (two pre-trained towers fused with gated
cross-attention) or the single-decoder vocabulary-expansion baseline.

The exp dir has the layout tower_train's has (config.yaml, checkpoint.pth, {N}epoch.pth, valid.loss.ave.pth,
history.json, images/, tensorboard/, run.sh, scores.json).  The log starts with trainable and frozen parameter
counts per tower; Zipper's gate values per layer are logged with every training log line and saved in
gates.json.  Every validation also scores mismatched pairs (the conditioning side rolled by one row): the
"audio gain" per task (zipper.models.audio_gain) is in the log, history.json and scores.json, and plotted with
the gates against updates in images/fusion.png.  Resuming and refusing a changed experiment work as in
tower_train.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from zipper.tasks.fusion_task import PairedBatches, add_fusion_arguments, build_model, load_paired, position_scale
from zipper.tokens.token_list import TokenList
from zipper.train.experiment import begin_run
from zipper.train.fusion_curves import plot_fusion_history
from zipper.train.trainer import Trainer, add_trainer_arguments, load_model_state, parameter_report
from zipper.utils.atomic import atomic_write_json, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__, config=True)
    add_fusion_arguments(parser)
    add_trainer_arguments(parser)
    return parser


def log_gates(model, output_dir: Path | None = None) -> None:
    if not hasattr(model, "gate_report"):
        return
    report = model.gate_report()
    for name, layers in report.items():
        logger.info("gates %s: %s", name, " ".join(
            "/".join(f"{k}={v:+.3f}" for k, v in layer.items()) for layer in layers))
    if output_dir is not None:
        atomic_write_json(output_dir / "gates.json", report)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    rank, world = begin_run(args, "zipper.bin.zipper_train")
    output_dir = Path(args.output_dir)

    model, tokenizer = build_model(args)
    speech_tokens = TokenList(args.speech_token_list)
    train_data = load_paired(args.train_units, args.train_text, speech_tokens, tokenizer, args.dedup,
                             args.max_speech_len, args.max_text_len)
    valid_data = load_paired(args.valid_units, args.valid_text, speech_tokens, tokenizer, args.dedup,
                             args.max_speech_len, args.max_text_len)
    logger.info("data: %d aligned utterances for training (%s), %d for validation; tasks %s",
                len(train_data.utts), args.train_text, len(valid_data.utts), args.tasks)
    if getattr(model, "cross_rotary", False):
        scale = position_scale(train_data)
        model.set_position_scale(scale)
        logger.info("cross-attention positions: a text token spans %.2f speech units", scale["text"])
    if hasattr(model, "parameter_report"):
        for line in model.parameter_report():
            logger.info("%s", line)
    logger.info("model (%s): %s", args.model, parameter_report(model))
    log_gates(model)
    train = PairedBatches(train_data, args.tasks, tokenizer.pad_id, args.batch_bins, args.seed, True,
                          args.max_batch_size, rank, world, condition_noise=args.condition_noise,
                          vocab_sizes={"speech": len(speech_tokens), "text": len(tokenizer)},
                          history_noise=args.history_noise)
    valid = PairedBatches(valid_data, {t: 1.0 for t in args.tasks}, tokenizer.pad_id, args.batch_bins, args.seed,
                          False, measure_gain=True)
    trainer = Trainer(args, model, train, valid, on_epoch_end=lambda epoch, stats: log_gates(model, output_dir),
                      on_log=lambda step: log_gates(model),
                      epoch_extras=lambda: {"gates": model.gate_report()} if hasattr(model, "gate_report") else {})
    history = trainer.run()
    if rank != 0:
        return
    plot_fusion_history(history, output_dir / "images" / "fusion.png")
    averaged = output_dir / "valid.loss.ave.pth"
    load_model_state(model, torch.load(averaged, map_location=trainer.device))
    stats = trainer.validate()
    scores = {"model": args.model, "checkpoint": averaged.name, "valid": stats, "epochs": len(history),
              "train_utts": len(train_data.utts)}
    atomic_write_json(output_dir / "scores.json", scores)
    log_gates(model, output_dir)
    mark_done(output_dir, info={"valid_loss": stats.get("loss")})
    print(f"{output_dir}: " + " ".join(f"valid {k}={v:.4g}" for k, v in sorted(stats.items())))


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
