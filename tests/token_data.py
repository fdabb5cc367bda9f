"""Tiny unit sets, token lists and text data dirs for tests of the towers and their training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zipper.data.kaldi_dir import spk2utt_from_utt2spk, write_kv
from zipper.tokens.text_tokenizer import train_sentencepiece
from zipper.tokens.token_list import unit_tokens, write_token_list
from zipper.tokens.units import INVENTORY_KEYS, UnitArkWriter
from zipper.utils.provenance import write_provenance

WORDS = "the cat sat on a mat and then it ran over hills to see what lies beyond our town".split()
INVENTORY = {"kmeans_tag": "fake_k12_0000", "upstream": "mfcc", "layer": -1, "n_clusters": 12, "seed": 0,
             "data_hash": "d0", "feature_hash": "f0"}
assert set(INVENTORY) == set(INVENTORY_KEYS)


def make_units(directory: Path, utts: list[str], seed: int = 0, k: int = 12) -> Path:
    """A unit set whose sequences follow a simple pattern (learnable): runs of u, u+1, u+2, ..."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "units.ark", "wb") as ark, open(directory / "units.scp", "w") as scp:
        writer = UnitArkWriter(ark, str((directory / "units.ark").resolve()), scp)
        for utt in utts:
            start = int(rng.integers(0, k))
            runs = [(start + i) % k for i in range(int(rng.integers(5, 12)))]
            writer[utt] = np.repeat(runs, rng.integers(1, 4, size=len(runs))).astype(np.int32)
    write_provenance(directory, dict(INVENTORY, set_data_hash="s0"), overwrite=True)
    return directory


def make_speech_token_list(directory: Path) -> Path:
    write_token_list(directory, unit_tokens(INVENTORY["n_clusters"]), dict(INVENTORY, kind="speech"))
    return directory


def make_text_dir(directory: Path, n: int, seed: int = 0, prefix: str = "text") -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    text = {f"{prefix}-{i:05d}": " ".join(rng.choice(WORDS, int(rng.integers(4, 9)))) for i in range(n)}
    write_kv(directory / "text", text)
    utt2spk = {u: prefix for u in text}
    write_kv(directory / "utt2spk", utt2spk)
    write_kv(directory / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return directory


def make_text_tokenizer(directory: Path, text_dir: Path, vocab_size: int = 40) -> Path:
    train_sentencepiece(text_dir / "text", directory, vocab_size=vocab_size)
    return directory
