"""The unit encoder (zipper/tokens/unit_encoder.py): preparation, states, files, provenance, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zipper.scoring.unit_judge import CharVocabulary, JudgeBatches, transcribe_all
from zipper.tokens.kmeans import position_basis
from zipper.tokens.unit_encoder import UnitEncoder, UnitEncoderConfig, average_frames, encoded_provenance

TINY = dict(d_model=16, n_heads=2, d_ff=32, n_layers=2, conv_kernel=3, dropout=0.0)


def test_frames_are_averaged_in_groups_and_none_is_dropped():
    x = torch.tensor([[1.0], [3.0], [5.0], [7.0], [10.0]])
    assert average_frames(x, 2).tolist() == [[2.0], [6.0], [10.0]]
    assert average_frames(x, 3).tolist() == [[3.0], [8.5]]
    assert average_frames(x, 1) is x
    assert average_frames(torch.zeros(0, 4), 2).shape == (0, 4)


def test_a_layer_outside_the_blocks_or_a_zero_stride_is_refused():
    with pytest.raises(ValueError, match="layer 3 is not one of its blocks 1..2"):
        UnitEncoderConfig(layer=3, **TINY)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        UnitEncoderConfig(stride=0, **TINY)
    with pytest.raises(ValueError, match="output 'logits' is not one of states, posteriors"):
        UnitEncoderConfig(output="logits", **TINY)


def test_posterior_output_is_the_square_root_of_what_greedy_ctc_reads():
    torch.manual_seed(0)
    feats = np.random.default_rng(2).standard_normal((11, 6)).astype(np.float32)
    enc = UnitEncoder(UnitEncoderConfig(stride=2, remove_position=0, output="posteriors", **TINY), 6, 5).eval()
    out = enc.encode(feats)
    assert out.shape == (6, 5) and enc.output_dim == 5 and out.dtype == np.float32
    assert np.allclose((out ** 2).sum(1), 1.0, atol=1e-5)  # unit vectors: k-means distance = Hellinger
    prepared = enc.prepare(feats)
    hidden, _ = enc.model.encode(prepared[None], torch.tensor([len(prepared)]))
    assert out.argmax(1).tolist() == enc.model.ctc.argmax(hidden)[0].tolist()
    assert enc.encode(feats[:0]).shape == (0, 5)


def test_preparation_removes_the_position_averages_and_standardises():
    rng = np.random.default_rng(0)
    frames = []
    weights = rng.standard_normal((17, 6))  # features = content + what sinusoids of the frame index make
    for n in (30, 41, 25):
        frames.append((rng.standard_normal((n, 6)) + 5 * position_basis(np.arange(n), 16).numpy() @ weights
                       ).astype(np.float32))
    enc = UnitEncoder(UnitEncoderConfig(stride=2, remove_position=16, layer=1, **TINY), input_dim=6, n_chars=5)
    before = np.concatenate([average_frames(torch.from_numpy(f), 2).numpy() for f in frames]).var(0).sum()
    enc.fit_preparation(frames)
    raw = torch.cat([enc.prepare(f, standardise=False) for f in frames])
    assert raw.var(0).sum() < 0.5 * before  # most of the positional variance is gone
    prepared = torch.cat([enc.prepare(f) for f in frames])
    assert len(enc.prepare(frames[1])) == 21  # ceil(41 / 2)
    assert torch.allclose(prepared.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(prepared.std(0), torch.ones(6), atol=1e-3)
    with pytest.raises(ValueError, match=r"shape \(3, 7\) do not fit a unit encoder of input dim 6"):
        enc.prepare(np.zeros((3, 7), np.float32))


def test_specaugment_masks_only_in_training_and_keeps_the_weights_file_unchanged(tmp_path):
    conf = {"freq_mask_width_range": [2, 3], "num_freq_mask": 1, "time_mask_width_range": [2, 3], "num_time_mask": 1}
    torch.manual_seed(0)
    plain = UnitEncoder(UnitEncoderConfig(remove_position=0, **TINY), 6, 5)
    torch.manual_seed(0)
    masked = UnitEncoder(UnitEncoderConfig(remove_position=0, specaug_conf=conf, **TINY), 6, 5)
    assert plain.specaug is None and masked.state_dict().keys() == plain.state_dict().keys()
    seen = []
    masked.model.forward = lambda x, lengths, *rest: seen.append(x.clone())  # what the CTC model is given
    x = torch.randn(2, 12, 6) + 5.0  # no frame is zero before masking
    lengths, chars, char_lengths = torch.tensor([12, 10]), torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    masked.train()(x, lengths, chars, char_lengths)
    zero_cols, zero_rows = (seen[0] == 0).all(1), (seen[0] == 0).all(2)  # (B, D) features, (B, T) frames masked
    assert zero_cols.sum(1).tolist() in ([2, 2], [3, 3], [2, 3], [3, 2])
    assert (zero_rows.sum(1) >= 2).all()
    masked.eval()(x, lengths, chars, char_lengths)
    assert torch.equal(seen[1], x)  # evaluation and stage 4 read the frames untouched
    identity = masked.save(tmp_path / "enc", ["<blank>", "a", "b", "c", "d"], {})
    loaded, info = UnitEncoder.load(tmp_path / "enc")
    assert info["config"]["specaug_conf"] == conf and loaded.specaug is not None
    assert identity != plain.save(tmp_path / "plain", ["<blank>", "a", "b", "c", "d"], {})


def test_states_are_the_chosen_blocks_output_and_survive_save_and_load(tmp_path):
    torch.manual_seed(0)
    feats = np.random.default_rng(1).standard_normal((9, 6)).astype(np.float32)
    encoders = {}
    for layer in (1, 2):
        torch.manual_seed(0)
        config = UnitEncoderConfig(stride=2, remove_position=0, layer=layer, **{**TINY, "n_layers": 3})
        encoders[layer] = UnitEncoder(config, 6, 5).eval()
    one, two = encoders[1].encode(feats), encoders[2].encode(feats)
    assert one.shape == two.shape == (5, 16) and one.dtype == np.float32
    assert not np.allclose(one, two)  # same weights, another block
    (_, per_block), _, _ = encoders[2].model.encoder(encoders[2].prepare(feats)[None], torch.tensor([5]),
                                                     return_all_hs=True)
    assert np.allclose(two, per_block[1][0].detach().numpy())  # the blocks above 2 are not run, nor needed
    assert len(per_block) == len(encoders[2].model.encoder.encoders) == 3  # all kept
    identity = encoders[2].save(tmp_path / "enc", ["<blank>", "a", "b", "c", "d"], {"feature_hash": "f00"})
    loaded, info = UnitEncoder.load(tmp_path / "enc")
    assert info["hash"] == identity and info["chars"][1] == "a" and info["provenance"] == {"feature_hash": "f00"}
    assert np.array_equal(loaded.encode(feats), two) and not loaded.training
    assert loaded.encode(np.zeros((0, 6), np.float32)).shape == (0, 16)
    with pytest.raises(FileNotFoundError, match="unit_encoder.json is missing: .* is not a finished unit encoder"):
        UnitEncoder.load(tmp_path / "nowhere")


def test_encoded_features_name_the_upstream_and_the_encoder():
    upstream = {"upstream": "whisper", "layer": -1, "feature_hash": "aaaa", "frame_shift_samples": 320,
                "data_hash": "d1"}
    info = {"hash": "1234abcd", "config": {"stride": 2, "layer": 2}}
    prov = encoded_provenance(upstream, info, "exp/unit_encoder_s_whisper")
    assert prov["upstream_feature_hash"] == "aaaa" and prov["frame_shift_samples"] == 640
    assert prov["feature_hash"] != "aaaa" and prov["data_hash"] == "d1" and prov["upstream"] == "whisper"
    assert prov["unit_encoder"] == {"hash": "1234abcd", "dir": "exp/unit_encoder_s_whisper", "layer": 2,
                                    "output": "states", "stride": 2}
    other = encoded_provenance(upstream, dict(info, hash="99999999"), "exp/unit_encoder_s_whisper")
    assert other["feature_hash"] != prov["feature_hash"]  # another encoder: other features


def test_the_encoder_learns_to_read_characters_from_frames():
    """Each character is a distinct frame pattern held for 4 frames: a few hundred updates and greedy CTC reads
    every training utterance back."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vocab = CharVocabulary.from_texts(["abc"])
    patterns = {c: rng.standard_normal(8).astype(np.float32) * 3 for c in "abc"}
    texts = ["ab", "ca", "bca", "cab", "abc", "ba"]
    feats = [np.concatenate([np.repeat(patterns[c][None], 4, 0) for c in t])
             + 0.1 * rng.standard_normal((4 * len(t), 8)).astype(np.float32) for t in texts]
    enc = UnitEncoder(UnitEncoderConfig(stride=2, remove_position=0, layer=1, **TINY), input_dim=8, n_chars=len(vocab))
    enc.fit_preparation(feats)
    prepared = [enc.prepare(f).numpy() for f in feats]
    batches = JudgeBatches(prepared, [vocab.encode(t)[0] for t in texts], batch_bins=1000, seed=0, shuffle=False)
    optim = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss, _, _ = enc(**batches.collate(list(range(len(texts)))))
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    hyps = transcribe_all(enc.model, vocab, {t: p for t, p in zip(texts, prepared)})
    assert hyps == {t: t for t in texts}
