"""Stage 6 (text): train the text tower's sentencepiece model on the unpaired text; write its token list.

Refuses to replace an existing tokenizer made from other data or options (--force true rebuilds it).
"""

from __future__ import annotations

import logging
from typing import Sequence

from zipper.tokens.text_tokenizer import train_sentencepiece
from zipper.tokens.token_list import TokenList
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main, str2bool
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--text", required=True, help="Kaldi text file to train on (data/<text set>/text)")
    parser.add_argument("--out_dir", required=True, help="token list dir (data/token_list/text_<type><size>)")
    parser.add_argument("--vocab_size", type=positive_int, default=1000, help="vocabulary size incl. specials")
    parser.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"],
                        help="sentencepiece model type")
    parser.add_argument("--character_coverage", type=float, default=1.0, help="sentencepiece character coverage")
    parser.add_argument("--max_sentences", type=positive_int, default=2_000_000,
                        help="sentences sampled for training (sentencepiece input_sentence_size)")
    parser.add_argument("--seed", type=int, default=0, help="sentencepiece random seed")
    parser.add_argument("--num_threads", type=positive_int, default=2, help="training threads")
    parser.add_argument("--force", type=str2bool, default=False, help="replace an existing different tokenizer")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    prov = train_sentencepiece(args.text, args.out_dir, args.vocab_size, args.model_type, args.character_coverage,
                               args.seed, args.max_sentences, args.num_threads, args.force)
    logger.info("%s: sentencepiece %s, %d tokens, trained on %s (data hash %s)", args.out_dir, prov["model_type"],
                len(TokenList(args.out_dir)), prov["train_text"], prov["train_data_hash"])


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, ValueError, FileNotFoundError, RuntimeError))
