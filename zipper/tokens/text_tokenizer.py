"""The text tower's tokenizer: a sentencepiece model whose ids are the token list's ids.

sentencepiece is trained with our reserved slots as its pad/unk/bos/eos ids and control symbols, so
`TextTokenizer.encode` ids index the token list directly (no remapping table to get out of sync).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import sentencepiece as spm

from zipper.data.kaldi_dir import read_kv
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL, PAD, SPECIAL_TOKENS, TokenList, write_token_list
from zipper.utils.atomic import atomic_path
from zipper.utils.provenance import ProvenanceError, check_provenance, hash_file, hash_lines

logger = logging.getLogger(__name__)
MODEL_FILE = "sentencepiece.model"


def train_sentencepiece(text_file: str | os.PathLike, out_dir: str | os.PathLike, vocab_size: int,
                        model_type: str = "unigram", character_coverage: float = 1.0, seed: int = 0,
                        max_sentences: int = 2_000_000, num_threads: int = 2, force: bool = False) -> dict[str, Any]:
    """Train on the transcripts of a Kaldi `text` file; write the model, tokens.txt and provenance.json."""
    out_dir = Path(out_dir)
    sentences = list(read_kv(text_file).values())
    if not sentences:
        raise ValueError(f"{text_file}: no sentences to train a tokenizer on")
    provenance = {
        "kind": "text", "tokenizer": "sentencepiece", "model_type": model_type, "vocab_size": vocab_size,
        "character_coverage": character_coverage, "seed": seed, "max_sentences": max_sentences,
        "train_text": str(text_file), "train_data_hash": hash_lines(sentences), "specials": list(SPECIAL_TOKENS),
    }
    if (out_dir / MODEL_FILE).exists() and not force:
        old = TokenList(out_dir).provenance
        check_provenance(old, provenance, ["model_type", "vocab_size", "character_coverage", "seed",
                                           "max_sentences", "train_data_hash"],
                         f"the tokenizer in {out_dir} (pass --force true to rebuild it; models trained on the "
                         "old one would then mis-decode) vs the one asked for: it")
        return old
    out_dir.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "text.txt"
        corpus.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "m"), vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, num_threads=num_threads, minloglevel=2,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=SPECIAL_TOKENS[0], unk_piece=SPECIAL_TOKENS[1],
            bos_piece=SPECIAL_TOKENS[2], eos_piece=SPECIAL_TOKENS[3],
            control_symbols=",".join(SPECIAL_TOKENS[4:]))
        with atomic_path(out_dir / MODEL_FILE, suffix=".model") as dst:
            os.replace(Path(tmp) / "m.model", dst)
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / MODEL_FILE))
    tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if model_type == "char":
        # A char model's vocab_size only truncates: characters beyond it would silently become <unk>.
        missing = sorted(c for c in set("".join(sentences)) - {" "} if sp.unk_id() in sp.encode(c))
        if missing:
            (out_dir / MODEL_FILE).unlink()
            raise ValueError(f"{text_file}: a char tokenizer of vocab_size {vocab_size} leaves out the characters "
                             f"{''.join(missing)!r}: vocab_size {len(tokens) + len(missing)} keeps them all")
    provenance["model_hash"] = hash_file(out_dir / MODEL_FILE)
    write_token_list(out_dir, tokens, provenance, force=True)
    return provenance


class TextTokenizer:
    """Text <-> token ids of the text tower (ids index `<dir>/tokens.txt`)."""

    bos_id, eos_id, pad_id = BOS, EOS, PAD

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.token_list = TokenList(directory)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.directory / MODEL_FILE))
        if hash_file(self.directory / MODEL_FILE) != self.token_list.provenance.get("model_hash"):
            raise ProvenanceError(f"{self.directory / MODEL_FILE} is not the model its token list was made from")
        if self.sp.get_piece_size() != len(self.token_list):
            raise ProvenanceError(f"{self.directory}: tokenizer has {self.sp.get_piece_size()} pieces, "
                                  f"token list {len(self.token_list)}")

    def __len__(self) -> int:
        return len(self.token_list)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([i for i in ids if i >= NUM_SPECIAL])
