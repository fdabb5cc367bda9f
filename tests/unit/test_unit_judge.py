"""The unit-level TTS judge: its character inventory, greedy CTC decoding, and that it can learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zipper.data.kaldi_dir import write_kv
from zipper.scoring.unit_judge import (BLANK, CharVocabulary, JudgeBatches, JudgeConfig, LexiconCTCDecoder,
                                       UnitCTCJudge, lexicon_decoder, normalised_targets, transcribe_all)
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


def test_lexicon_holds_the_judge_to_known_words(tmp_path):
    vocab = CharVocabulary.from_texts(["a cat on a dog"])
    frames = ["c", "a", "g", "<space>", "d", "o", "g"]  # greedy reads "cag dog"; "t" is the runner-up at "g"
    log_probs = torch.full((1, len(frames), len(vocab)), -6.0)
    for t, symbol in enumerate(frames):
        log_probs[0, t, vocab.index[symbol]] = -0.1
    log_probs[0, 2, vocab.index["t"]] = -1.0
    greedy = vocab.decode(log_probs[0].argmax(-1).tolist())
    assert greedy == "cag dog"
    lexicon = LexiconCTCDecoder(vocab, ["cat", "dog", "on", "a", "zebra"])  # "zebra" cannot be spelt: ignored
    assert vocab.decode(lexicon(log_probs, torch.tensor([len(frames)]))[0]) == "cat dog"
    write_kv(tmp_path / "text", {"u1": "A cat!", "u2": "a dog"})
    assert lexicon_decoder({"lexicon": ""}, vocab) is None
    assert sorted(lexicon_decoder({"lexicon": str(tmp_path / "text"), "normalizer": {}}, vocab).spellable) == [
        "a", "cat", "dog"]  # normalised as the references are
    with pytest.raises(ValueError, match="no word of the lexicon can be spelt"):
        LexiconCTCDecoder(vocab, ["zebra"])


def test_time_masks_hide_spans_inside_each_utterance_while_training_only(monkeypatch):
    torch.manual_seed(0)
    model = UnitCTCJudge(JudgeConfig(n_units=4, n_chars=5, d_model=8, n_heads=2, d_ff=8, n_layers=1, time_masks=2,
                                     time_mask_ratio=0.25))
    assert model.encoder.embed[0].num_embeddings == 5  # the 4 units and the mask
    units, lengths = torch.randint(0, 4, (64, 12)), torch.tensor([12, 8, 3, 1] * 16)
    masked = model.mask_spans(units, lengths) == 4
    inside = torch.arange(12)[None, :] < lengths[:, None]
    assert not (masked & ~inside).any() and masked.any()
    widest = (lengths * 0.25).ceil()
    assert (masked.sum(1) <= 2 * widest).all()  # two spans of at most 25 % each
    seen = []
    monkeypatch.setattr(model, "encode", lambda u, n: (seen.append(u.clone()), model.encoder(u, n)[:2])[1])
    batch = {"units": units, "unit_lengths": lengths, "chars": torch.ones(64, 1, dtype=torch.long),
             "char_lengths": torch.ones(64, dtype=torch.long)}
    model.train()
    model(**batch)
    model.eval()
    model(**batch)
    assert (seen[0] == 4).any() and torch.equal(seen[1], units)  # masks in training, the units as given in eval


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
