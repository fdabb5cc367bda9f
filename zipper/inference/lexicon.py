"""A closed-vocabulary constraint on text search: only words of a word list may be generated.

With a character (or small word-piece) text vocabulary the beam spells words, and a quarter of the words it
spelt on synth_en were not words at all (docs/learning.md, row 29).  This mask lets a hypothesis continue only
along the spellings of known words, end a word only where a known word ends, and end the text only after a
whole word: the prefix-tree search of lexicon-constrained CTC decoders (flashlight's, torchaudio's), applied to
our own beam over any sentencepiece vocabulary.  Hand-written because those decoders search CTC outputs, not an
autoregressive decoder's steps; the word list comes from text the towers already learn from (no transcripts).
"""

from __future__ import annotations

import functools
import os
from typing import Iterable, Sequence

import torch

from zipper.data.kaldi_dir import read_kv

WORD_BOUNDARY = "\u2581"  # sentencepiece's mark of a piece that starts a word


def read_words(path: str | os.PathLike) -> set[str]:
    """The words of a Kaldi `text` file (utterance id, then the words)."""
    words = {w for line in read_kv(path).values() for w in line.split()}
    if not words:
        raise ValueError(f"{path}: no words for a lexicon")
    return words


class LexiconConstraint:
    """history (N, t) of generated ids -> (N, V) bool: which next ids keep every word within the lexicon."""

    def __init__(self, pieces: Sequence[str], words: Iterable[str], eos: int, first_piece: int):
        self.words = set(words)
        self.prefixes = {w[:i] for w in self.words for i in range(len(w) + 1)}
        self.pieces = list(pieces)
        self.eos, self.first_piece = eos, first_piece
        self._masks: dict[tuple[bool, str], torch.Tensor] = {}

    def state(self, row: Sequence[int]) -> tuple[bool, str]:
        """(a word has begun, the letters of the word being spelt) after the ids of one row."""
        letters: list[str] = []
        for token in reversed(row):
            if token < self.first_piece:
                continue  # <eos> (rows that ended keep being fed it) and other specials spell nothing
            piece = self.pieces[token]
            if piece.startswith(WORD_BOUNDARY):
                letters.append(piece[len(WORD_BOUNDARY):])
                return True, "".join(reversed(letters))
            letters.append(piece)
        return False, "".join(reversed(letters))

    def mask(self, begun: bool, partial: str) -> torch.Tensor:
        key = (begun, partial)
        if key not in self._masks:
            complete = begun and partial in self.words
            allowed = torch.zeros(len(self.pieces), dtype=torch.bool)
            if partial not in self.prefixes:  # a beam that died (score -inf) picked anything: let it just end
                allowed[self.eos] = True
                self._masks[key] = allowed
                return allowed
            for token in range(self.first_piece, len(self.pieces)):
                piece = self.pieces[token]
                if piece.startswith(WORD_BOUNDARY):  # a new word: the current one must be whole (or none yet)
                    ok = (complete or not begun) and piece[len(WORD_BOUNDARY):] in self.prefixes
                else:
                    ok = begun and partial + piece in self.prefixes
                allowed[token] = ok
            allowed[self.eos] = complete
            self._masks[key] = allowed
        return self._masks[key]

    def __call__(self, history: torch.Tensor) -> torch.Tensor:
        rows = history.tolist()
        masks = [self.mask(*self.state(row)) for row in rows]
        if not masks:
            return torch.zeros(0, len(self.pieces), dtype=torch.bool, device=history.device)
        return torch.stack(masks).to(history.device)  # (N, V)


@functools.lru_cache(maxsize=16)
def lexicon_constraint(lexicon: str, pieces: tuple[str, ...], eos: int, first_piece: int) -> LexiconConstraint:
    """Built once per (word list, vocabulary): stage 10 decodes many batches with the same one."""
    return LexiconConstraint(pieces, read_words(lexicon), eos, first_piece)
