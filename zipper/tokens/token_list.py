"""Token lists: one token per line, the id is the line number, special symbols in fixed low slots.

Both towers' vocabularies start with the same reserved slots, which never move (ESPnet speechlm habit):
ids 0-7 are `<pad> <unk> <bos> <eos> <asr> <tts>` and two spares.  For the speech tower `<bos>/<eos>` are
begin/end of audio (the paper's 1024 + 2), and unit u is token `NUM_SPECIAL + u`.  Every list carries a
provenance.json; writing a different list over an existing one is refused, and consumers check that the
units or tokenizer they are given match the list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from zipper.utils.atomic import atomic_write_text
from zipper.utils.provenance import ProvenanceError, read_provenance, write_provenance

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>", "<asr>", "<tts>", "<spare6>", "<spare7>")
PAD, UNK, BOS, EOS, ASR, TTS = range(6)
NUM_SPECIAL = len(SPECIAL_TOKENS)
TOKENS_FILE = "tokens.txt"


class TokenList:
    """A vocabulary read from `<dir>/tokens.txt` with its provenance."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / TOKENS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: stage 6 (token lists) has not finished")
        self.tokens = path.read_text(encoding="utf-8").split("\n")[:-1]
        if tuple(self.tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise ProvenanceError(f"{path}: the first {NUM_SPECIAL} tokens must be {' '.join(SPECIAL_TOKENS)}, "
                                  f"found {' '.join(self.tokens[:NUM_SPECIAL])}")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ProvenanceError(f"{path}: duplicate tokens")
        self.provenance = read_provenance(directory)

    def __len__(self) -> int:
        return len(self.tokens)


def write_token_list(directory: str | os.PathLike, tokens: Sequence[str], provenance: dict[str, Any],
                     force: bool = False) -> None:
    """Write tokens.txt + provenance.json, refusing to replace a different list unless `force`."""
    directory = Path(directory)
    path = directory / TOKENS_FILE
    if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
        raise ValueError(f"a token list must start with {SPECIAL_TOKENS}")
    if path.exists() and not force:
        old = path.read_text(encoding="utf-8").split("\n")[:-1]
        if old != list(tokens):
            raise ProvenanceError(f"{path} already holds a different token list ({len(old)} tokens, new one "
                                  f"{len(tokens)}); refusing to overwrite it: models trained on it would "
                                  "mis-decode. Remove the directory or pass --force true to rebuild it.")
    write_provenance(directory, provenance, overwrite=force)
    atomic_write_text(path, "".join(t + "\n" for t in tokens))


def unit_tokens(n_clusters: int) -> list[str]:
    return list(SPECIAL_TOKENS) + [str(u) for u in range(n_clusters)]
