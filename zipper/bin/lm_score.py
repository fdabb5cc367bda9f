"""Perplexity of a trained tower on a data set, beside the unigram and uniform perplexities of the same data.

`--exp_dir` is a tower experiment (stages 7-8); the data set is read the way that tower was trained (units
dir for a speech tower, a data dir with `text` for a text tower).  After fusion, `--exp_dir` may be a
Zipper or baseline experiment (stage 9) with `--modality speech|text`: the fused model is scored on that
modality alone, beside the perplexity of the pre-trained tower it started from (what fusion cost).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import yaml

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
    parser.add_argument("--modality", default="", choices=["", "speech", "text"],
                        help="with a fusion experiment: which modality to score")
    parser.add_argument("--output", default="", help="also write the scores to this JSON file")
    return parser


def fused_scores(args) -> dict:
    from zipper.inference.api import load_fused
    from zipper.tasks.fusion_task import unimodal_scores

    if not args.modality:
        raise ValueError(f"{args.exp_dir} is a fusion experiment: say which --modality to score")
    model, tokenizer, train_args = load_fused(args.exp_dir, args.checkpoint, args.device)
    after = unimodal_scores(model, tokenizer, train_args, args.modality, args.data, args.batch_bins, args.device)
    tower_exp = train_args.text_tower_exp if args.modality == "text" else train_args.speech_tower_exp
    before = lm_scores(tower_exp, train_args.tower_checkpoint, args.data, args.batch_bins, args.device)
    return {"exp_dir": args.exp_dir, "checkpoint": args.checkpoint, "data": args.data, "modality": args.modality,
            **after, "tower_exp": tower_exp, "tower_ppl": before["ppl"], "unigram_ppl": before["unigram_ppl"],
            "uniform_ppl": before["uniform_ppl"]}


def lm_scores(exp_dir: str, checkpoint: str, data: str, batch_bins: int, device: str) -> dict:
    tower, tokenizer, config = load_tower(exp_dir, checkpoint, device)
    sequences = load_sequences(config, data, tokenizer)
    stats = score_sequences(tower, sequences, tokenizer.pad_id, batch_bins, device)
    vocab = vocab_size(config, tokenizer)
    train = load_sequences(config, config.train_data, tokenizer)
    return {"exp_dir": exp_dir, "checkpoint": checkpoint, "data": data, **stats,
            "unigram_ppl": unigram_perplexity(train, sequences, vocab), "uniform_ppl": float(vocab)}


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_and_setup(get_parser(), argv)
    with open(Path(args.exp_dir) / "config.yaml", encoding="utf-8") as f:
        is_fusion = "model" in (yaml.safe_load(f) or {})
    if is_fusion:
        scores = fused_scores(args)
    else:
        scores = lm_scores(args.exp_dir, args.checkpoint, args.data, args.batch_bins, args.device)
    if args.output:
        atomic_write_json(args.output, scores)
    print(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
