"""The unit-level TTS judge: its character inventory, greedy CTC decoding, and that it can learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zipper.scoring.unit_judge import (BLANK, CharVocabulary, JudgeBatches, JudgeConfig, UnitCTCJudge,
                                       normalised_targets, transcribe_all)
from zipper.scoring.wer import Normalizer


def test_vocabulary_round_trip(tmp_path):
    vocab = CharVocabulary.from_texts(["it's a cat", "dog"])
    assert vocab.symbols[0] == BLANK and "<space>" in vocab.symbols and " " not in vocab.symbols
    ids, unknown = vocab.encode("a dog!")
    assert unknown == 1 and vocab.decode(ids) == "a dog"
    vocab.save(tmp_path / "tokens.txt")
    assert CharVocabulary.load(tmp_path / "tokens.txt").symbols == vocab.symbols
    with pytest.raises(ValueError, match="starts with <blank>"):
        CharVocabulary(["a", "b"])


def test_decode_squeezes_spaces():
    vocab = CharVocabulary.from_texts(["ab c"])
    space = vocab.index["<space>"]
    assert vocab.decode([space, vocab.index["a"], space, space, vocab.index["c"], space]) == "a c"


def test_greedy_ctc_merges_repeats_and_drops_blanks(monkeypatch):
    model = UnitCTCJudge(JudgeConfig(n_units=4, n_chars=5, d_model=8, n_heads=2, d_ff=8, n_layers=1))
    best = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3, 4],
                         [2, 0, 2, 2, 3, 4, 4, 4, 1, 1]])
    monkeypatch.setattr(model.ctc, "argmax", lambda hidden: best)
    out = model.transcribe(torch.zeros(2, 10, dtype=torch.long), torch.tensor([10, 6]))
    assert out == [[1, 1, 2, 3, 4], [2, 2, 3, 4]]  # the second row stops at its length (6 frames)


def test_empty_target_after_normalisation_names_the_utterance():
    vocab = CharVocabulary.from_texts(["abc"])
    with pytest.raises(ValueError, match="'u2' has no characters left"):
        normalised_targets({"u1": "abc", "u2": "?!"}, vocab, Normalizer(), "data/x/text")


def test_judge_learns_a_unit_to_character_code():
    """Each character is spoken as a run of its own unit: the judge must read the transcripts back exactly."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    texts = ["a cab", "bad cab", "dab", "cad a bad", "abc", "bead"]
    vocab = CharVocabulary.from_texts(texts)
    units, chars = [], []
    for text in texts:
        ids, _ = vocab.encode(text)
        units.append(np.repeat(np.asarray(ids), rng.integers(2, 4, size=len(ids))))  # unit = char id, repeated
        chars.append(ids)
    model = UnitCTCJudge(JudgeConfig(n_units=len(vocab), n_chars=len(vocab), d_model=32, n_heads=2, d_ff=64,
                                     n_layers=1, dropout=0.0))
    batches = JudgeBatches(units, chars, batch_bins=1000, seed=0, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(150):
        for indices in batches.batches(step):
            loss, stats, weight = model(**batches.collate(indices))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < first / 10  # nats per character
    hyps = transcribe_all(model, vocab, {f"u{i}": u for i, u in enumerate(units)})
    assert hyps == {f"u{i}": t for i, t in enumerate(texts)}
