"""Stage 12: train the unit-level TTS judge (a CTC character recogniser over units) on gold units.

Reads units (stage 5) and transcripts of the aligned training set, normalised the way scoring normalises
them; writes to --output_dir the experiment files of every trainer run (config.yaml, checkpoints, the n-best
average, history, images/, tensorboard/, run.sh), the character list `tokens.txt`, and scores.json with the
judge's CER and WER on the gold units of the validation set (its own accuracy: the oracle of TTS judging).
One judge is trained per unit inventory and reused by every TTS evaluation of the recipe.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zipper.data.kaldi_dir import read_kv
from zipper.scoring.unit_judge import (CharVocabulary, JudgeBatches, JudgeConfig, UnitCTCJudge, add_ctc_data_arguments,
                                       inventory_of, lexicon_decoder, load_units, normalised_targets, transcribe_all)
from zipper.scoring.wer import Normalizer, align, character_error_rate
from zipper.train.experiment import begin_run
from zipper.train.trainer import Trainer, add_trainer_arguments, parameter_report
from zipper.utils.atomic import atomic_write_json, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool, yaml_value
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__, config=True)
    group = parser.add_argument_group("judge")
    add_ctc_data_arguments(group, "units", "dump/units/<km>/<set>")
    group.add_argument("--judge_conf", type=yaml_value, default={},
                       help="YAML dict of JudgeConfig fields (d_model, n_heads, d_ff, n_layers, conv_kernel, dropout)")
    group.add_argument("--dedup", type=str2bool, default=False,
                       help="collapse runs of repeated units (generated units are judged the same way)")
    group.add_argument("--lexicon", default="",
                       help="Kaldi text file whose words are the only ones the judge may read (a lexicon beam "
                            "search over its CTC posteriors, here and wherever it judges); '': greedy spelling")
    add_trainer_arguments(parser)
    parser.set_defaults(max_epoch=20, batch_bins=12000, lr=2e-3, warmup_steps=200, keep_nbest_models=3)
    return parser


def read_pairs(units_dir: str, data_dir: str, vocab: CharVocabulary, normalizer: Normalizer, dedup_runs: bool,
               inventory: dict) -> tuple[list[np.ndarray], list[list[int]], dict[str, str]]:
    text_file = Path(data_dir) / "text"
    texts = read_kv(text_file)
    utts, chars, dropped = normalised_targets(texts, vocab, normalizer, str(text_file))
    if dropped:
        logger.warning("%s: %d characters are not in the judge's vocabulary and were left out", text_file, dropped)
    units = load_units(units_dir, utts, dedup_runs, inventory)
    return [units[u] for u in utts], chars, {u: normalizer(texts[u]) for u in utts}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    rank, world = begin_run(args, "zipper.bin.judge_train")
    output_dir = Path(args.output_dir)

    normalizer = Normalizer(**(args.normalizer or {}))
    train_texts = read_kv(Path(args.train_text) / "text")
    vocab = CharVocabulary.from_texts([normalizer(t) for t in train_texts.values()])
    if rank == 0:
        vocab.save(output_dir / "tokens.txt")
    inventory = inventory_of(args.train_units)
    train_units, train_chars, _ = read_pairs(args.train_units, args.train_text, vocab, normalizer, args.dedup,
                                             inventory)
    valid_units, valid_chars, valid_refs = read_pairs(args.valid_units, args.valid_text, vocab, normalizer,
                                                      args.dedup, inventory)
    n_units = int(inventory["n_clusters"])
    model = UnitCTCJudge(JudgeConfig(n_units=n_units, n_chars=len(vocab), **(args.judge_conf or {})))
    logger.info("data: train %d utterances / %d units, valid %d; %d characters; %d unit types",
                len(train_units), sum(len(u) for u in train_units), len(valid_units), len(vocab), n_units)
    logger.info("judge: %s", parameter_report(model))
    train = JudgeBatches(train_units, train_chars, args.batch_bins, args.seed, True, args.max_batch_size, rank, world)
    valid = JudgeBatches(valid_units, valid_chars, args.batch_bins, args.seed, False)
    trainer = Trainer(args, model, train, valid)
    trainer.run()
    if rank != 0:
        return

    averaged = output_dir / "valid.loss.ave.pth"
    model.load_state_dict(torch.load(averaged, map_location=trainer.device))
    keys = list(valid_refs)
    hyps = transcribe_all(model, vocab, dict(zip(keys, valid_units)), device=trainer.device,
                          lexicon=lexicon_decoder(vars(args), vocab))
    counts, _ = align(valid_refs, hyps, normalizer)
    scores = {"valid_units": args.valid_units, "model": averaged.name, "valid_wer": counts.wer,
              "valid_cer": character_error_rate(valid_refs, hyps), "utterances": len(keys),
              "train_utterances": len(train_units)}
    atomic_write_json(output_dir / "scores.json", scores)
    mark_done(output_dir, info={"valid_wer": counts.wer, "valid_cer": scores["valid_cer"]})
    print(f"{output_dir}: judge on gold units of {args.valid_units}: WER {counts.wer:.1f}%, "
          f"CER {scores['valid_cer']:.1f}%")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
