"""Stages 7-8: pre-train one tower (speech units or text) with next-token prediction, or import an HF LM.

Writes to --output_dir: config.yaml (every option, resolved), checkpoint.pth (resumable), {N}epoch.pth,
valid.loss.best.pth, valid.loss.ave.pth (average of the n best), history.json, images/*.png, tensorboard/,
scores.json (dev perplexity of the averaged model beside the unigram perplexity of the same data) and a
replay run.sh.  Re-running continues an interrupted run; re-running with different options is refused
(a changed option must not silently mix two experiments) unless only harmless ones changed.
With `--tower hf --max_epoch 0` an HF LM is imported as the text tower without training (scored only).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from zipper.models.lm import TowerLM
from zipper.tasks.tower_task import (SequenceBatches, add_tower_arguments, build_tokenizer, build_tower,
                                     load_sequences, score_sequences, unigram_perplexity, vocab_size)
from zipper.train.trainer import Trainer, add_trainer_arguments, parameter_report
from zipper.train.experiment import begin_run
from zipper.utils.atomic import atomic_write_json, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)
def get_parser():
    parser = make_parser(__doc__, config=True)
    add_tower_arguments(parser)
    add_trainer_arguments(parser)
    parser.set_defaults(max_epoch=10)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    rank, world = begin_run(args, "zipper.bin.tower_train")
    output_dir = Path(args.output_dir)

    tokenizer = build_tokenizer(args)
    vocab = vocab_size(args, tokenizer)
    train_seqs = load_sequences(args, args.train_data, tokenizer)
    valid_seqs = load_sequences(args, args.valid_data, tokenizer)
    tokens = sum(len(s) for s in train_seqs)
    logger.info("data: train %d sequences / %d tokens (%s), valid %d sequences; vocabulary %d", len(train_seqs),
                tokens, args.train_data, len(valid_seqs), vocab)
    tower = build_tower(args, vocab)
    model = TowerLM(tower)
    logger.info("tower (%s, %s): %s", args.tower, args.modality, parameter_report(model))
    train = SequenceBatches(train_seqs, tokenizer.pad_id, args.batch_bins, args.seed, True, args.max_batch_size,
                            rank, world)
    valid = SequenceBatches(valid_seqs, tokenizer.pad_id, args.batch_bins, args.seed, False)
    trainer = Trainer(args, model, train, valid)
    if args.max_epoch > 0:
        trainer.run()
    if rank != 0:
        return

    # dev perplexity of the model later stages use (the n-best average), beside the unigram baseline
    averaged = output_dir / "valid.loss.ave.pth"
    if averaged.exists():
        model.load_state_dict(torch.load(averaged, map_location=trainer.device))
    stats = score_sequences(tower, valid_seqs, tokenizer.pad_id, args.batch_bins, trainer.device)
    scores = {"valid_data": args.valid_data, "model": averaged.name if averaged.exists() else "pretrained",
              "valid_loss": stats["loss"], "valid_ppl": stats["ppl"], "valid_acc": stats["acc"],
              "unigram_ppl": unigram_perplexity(train_seqs, valid_seqs, vocab), "uniform_ppl": float(vocab),
              "train_tokens": tokens}
    atomic_write_json(output_dir / "scores.json", scores)
    mark_done(output_dir, info={"valid_ppl": scores["valid_ppl"]})
    print(f"{output_dir}: dev perplexity {scores['valid_ppl']:.2f} (unigram {scores['unigram_ppl']:.2f}, "
          f"uniform {vocab}) with {scores['model']}")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
