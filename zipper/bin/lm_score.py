"""Perplexity of a trained tower on a data set, beside the unigram and uniform perplexities of the same data.

`--exp_dir` is a tower experiment (stages 7-8); the data set is read the way that tower was trained (units
dir for a speech tower, a data dir with `text` for a text tower).  Used after fusion too, to measure what
the towers kept.
"""

from __future__ import annotations

import json
import logging
from typing import Sequence

from zipper.tasks.tower_task import load_sequences, load_tower, score_sequences, unigram_perplexity, vocab_size
from zipper.utils.atomic import atomic_write_json
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", required=True, help="tower experiment dir (has config.yaml)")
    parser.add_argument("--data", required=True, help="units dir (speech) or data dir / text file (text)")
    parser.add_argument("--checkpoint", default="valid.loss.ave.pth", help="model file in exp_dir")
    parser.add_argument("--batch_bins", type=positive_int, default=8192, help="padded tokens per batch")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--output", default="", help="also write the scores to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_and_setup(get_parser(), argv)
    tower, tokenizer, config = load_tower(args.exp_dir, args.checkpoint, args.device)
    sequences = load_sequences(config, args.data, tokenizer)
    stats = score_sequences(tower, sequences, tokenizer.pad_id, args.batch_bins, args.device)
    vocab = vocab_size(config, tokenizer)
    train = load_sequences(config, config.train_data, tokenizer)
    scores = {"exp_dir": args.exp_dir, "checkpoint": args.checkpoint, "data": args.data, **stats,
              "unigram_ppl": unigram_perplexity(train, sequences, vocab), "uniform_ppl": float(vocab)}
    if args.output:
        atomic_write_json(args.output, scores)
    print(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
