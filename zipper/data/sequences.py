"""Token sequences for training: where they come from, how they are batched, how a batch is padded.

A `SequenceSource` turns a data set into token-id sequences of one tower's vocabulary:
  * `UnitSequences` - speech units from `units.scp` (stage 5), optionally deduplicated at load time, shifted
    past the reserved special slots (unit u -> token NUM_SPECIAL + u), after checking the units come from
    the codebook the token list was made for;
  * `TextSequences` - a Kaldi `text` file through a tokenizer (sentencepiece or a Hugging Face tokenizer).
Batches are formed ESPnet-style by `batch_bins` (padded tokens per batch) over length-sorted buckets, shuffled
per epoch with a seed, so that an interrupted epoch can resume at the exact batch it stopped at.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from zipper.data.kaldi_dir import read_kv
from zipper.tokens.token_list import NUM_SPECIAL, TokenList
from zipper.tokens.units import UnitSet, dedup

logger = logging.getLogger(__name__)


class Tokenizer(Protocol):
    bos_id: int
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def __len__(self) -> int: ...


class UnitSequences:
    """Unit token sequences of a unit set, keyed by utterance id."""

    def __init__(self, units_dir: str | Path, token_list: TokenList, dedup_runs: bool = True,
                 utts: Sequence[str] | None = None):
        units = UnitSet(units_dir)
        units.check_inventory(token_list.provenance, f"the speech token list {token_list.directory}")
        keys = list(units.keys()) if utts is None else list(utts)
        missing = [u for u in keys if u not in units.scp]
        if missing:
            raise KeyError(f"{len(missing)} utterances have no units in {units_dir}, e.g. '{missing[0]}'")
        self.keys = keys
        self.sequences: list[np.ndarray] = []
        self.durations: list[np.ndarray] = []
        for utt in keys:
            raw = units[utt]
            values, durations = dedup(raw) if dedup_runs else (raw, np.ones(len(raw), dtype=np.int32))
            self.sequences.append((values + NUM_SPECIAL).astype(np.int64))
            self.durations.append(durations)


class TextSequences:
    """Token sequences of a Kaldi `text` file."""

    def __init__(self, text_file: str | Path, tokenizer: Tokenizer, utts: Sequence[str] | None = None):
        table = read_kv(text_file)
        keys = list(table) if utts is None else list(utts)
        missing = [u for u in keys if u not in table]
        if missing:
            raise KeyError(f"{len(missing)} utterances have no text in {text_file}, e.g. '{missing[0]}'")
        self.keys = keys
        self.sequences = [np.asarray(tokenizer.encode(table[u]), dtype=np.int64) for u in keys]
        empty = [u for u, s in zip(keys, self.sequences) if len(s) == 0]
        if empty:
            raise ValueError(f"{text_file}: utterance '{empty[0]}' encodes to no tokens")


def with_bos_eos(sequence: np.ndarray, bos: int, eos: int, max_len: int) -> np.ndarray:
    """[bos] + sequence + [eos], cut to max_len tokens (the eos is lost when cut)."""
    return np.concatenate(([bos], sequence, [eos]))[:max_len]


class LengthBatchSampler:
    """Batches of indices whose padded size (count x longest) stays within `batch_bins` tokens.

    Utterances are sorted by length, cut into batches, and the batches shuffled with `seed + epoch`, so that
    every epoch's order is reproducible: `batches(epoch)[k:]` is where a resumed epoch continues.  With
    several ranks, rank r takes batches r, r + world, ... of an order padded to a multiple of world.
    """

    def __init__(self, lengths: Sequence[int], batch_bins: int, seed: int = 0, shuffle: bool = True,
                 max_batch_size: int = 0, rank: int = 0, world_size: int = 1):
        self.lengths = list(lengths)
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
        self._batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            longest = self.lengths[i]  # ascending order: the newcomer is the longest
            if current and ((len(current) + 1) * longest > batch_bins
                            or (max_batch_size and len(current) >= max_batch_size)):
                self._batches.append(current)
                current = []
            current.append(i)
        if current:
            self._batches.append(current)
        if not self._batches:
            raise ValueError("no data to batch")

    def batches(self, epoch: int) -> list[list[int]]:
        batches = list(self._batches)
        if self.shuffle:
            random.Random(self.seed + epoch).shuffle(batches)
        return rank_share(batches, self.rank, self.world_size)

    def __len__(self) -> int:
        return math.ceil(len(self._batches) / self.world_size)


def rank_share(batches: list, rank: int, world_size: int) -> list:
    """Rank r's batches r, r + world, ... of the list padded (by repeating) to a multiple of world."""
    if world_size <= 1:
        return batches
    per_rank = math.ceil(len(batches) / world_size)
    return (batches * world_size)[:per_rank * world_size][rank::world_size]


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to (B, T) int64 tokens and (B,) lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(sequences):
        tokens[i, :len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
    return tokens, lengths


def iterate_batches(sequences: Sequence[np.ndarray], batches: list[list[int]], pad_id: int,
                    start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(batch number, tokens (B, T), lengths (B,)) from batch `start` on."""
    for k in range(start, len(batches)):
        yield k, *pad_batch([sequences[i] for i in batches[k]], pad_id)
