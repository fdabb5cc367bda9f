"""Use a trained model: pack it, open it elsewhere, transcribe and synthesize from the shell and from Python, and
get stage 10's outputs; bad inputs get errors that name them.

A tiny model is trained through the real stages on synthetic audio (format_audio, extract_feats (MFCC, 20 ms),
train_kmeans, dump_units, token lists, towers, zipper_train, vocoder_train: debug presets, seconds each).
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audio_factory import make_data_dir
from zipper.bin import (dump_units, encode_feats, extract_feats, format_audio, make_unit_token_list, pack,
                        synthesize, tower_train, train_kmeans, train_text_tokenizer, train_unit_encoder, transcribe,
                        vocoder_synthesize, vocoder_train, zipper_inference, zipper_train)
from zipper.data.format_audio import resample
from zipper.data.kaldi_dir import read_kv
from zipper.inference.api import InputError, Speech2Text, Text2Speech
from zipper.inference.packing import PackError
from zipper.tokens.units import UnitSet
from zipper.utils.provenance import ProvenanceError, read_provenance, write_provenance

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
MFCC20 = ["--upstream", "mfcc", "--upstream_conf", "{kaldi: {mfcc: {frame_shift: 20.0}}}"]
# the text search keeps to the training text's words: a packed model must carry them (the path is the recipe dir's)
DECODE = ("{text: {method: beam, beam_size: 2, max_len: 12, lexicon: data/train/text}, "
          "speech: {method: sample, top_k: 5, max_len: 30}}")


def stage(main, args):
    main(args + ["--nj", "1", "--job", "1"])
    main(args + ["--nj", "1", "--merge", "true"])


@pytest.fixture(scope="module", params=["features", "unit_encoder"])
def recipe(request, tmp_path_factory) -> Path:
    """A recipe-like dir after stages 2-11 on a tiny corpus: data/, dump/, exp/{kmeans,zipper,vocoder_debug}; the
    units are k-means of the MFCC frames, or (stage 3's --unit_encoder_config) of a unit encoder's states of
    them, with the k-means position map on (everything a packed model must carry to turn audio into units)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("recipe")
    for name, n, seed in (("train", 16, 0), ("dev", 4, 1), ("test", 4, 2)):
        make_data_dir(root, name, n, seed=seed, seconds=(0.6, 1.0))
        stage(format_audio.main, ["--in_dir", str(root / "data" / name), "--out_dir", str(root / "dump/audio" / name)])
        stage(extract_feats.main, ["--data_dir", str(root / "dump/audio" / name), "--out_dir",
                                   str(root / "dump/feats" / name)] + MFCC20)
    feats, km_opts = root / "dump/feats", []
    if request.param == "unit_encoder":
        train_unit_encoder.main(["--config", str(CONF / "unit_encoder_debug.yaml"), "--train_feats",
                                 str(feats / "train"), "--train_text", str(root / "data/train"), "--valid_feats",
                                 str(feats / "dev"), "--valid_text", str(root / "data/dev"), "--output_dir",
                                 str(root / "exp/unit_encoder")])
        for name in ("train", "dev", "test"):
            encode_feats.main(["--encoder_dir", str(root / "exp/unit_encoder"), "--feats_dir", str(feats / name),
                               "--out_dir", str(root / "dump/feats_ue" / name)])
        feats, km_opts = root / "dump/feats_ue", ["--remove_position", "4"]
    train_kmeans.main(["--feats_dir", str(feats / "train"), "--feat_tag", "mfcc", "--exp_root",
                       str(root / "exp/kmeans"), "--n_clusters", "12", "--portion", "1.0", *km_opts])
    km = next((root / "exp/kmeans").iterdir())
    for name in ("train", "dev", "test"):
        stage(dump_units.main, ["--feats_dir", str(feats / name), "--kmeans_dir", str(km),
                                "--out_dir", str(root / "dump/units" / name)])
    speech_tokens, text_tokens = root / "data/token_list/speech", root / "data/token_list/text"
    make_unit_token_list.main(["--kmeans_dir", str(km), "--out_dir", str(speech_tokens)])
    train_text_tokenizer.main(["--text", str(root / "data/train/text"), "--out_dir", str(text_tokens),
                               "--vocab_size", "30"])
    units, data = root / "dump/units", root / "data"
    tower = str(CONF / "tower_debug.yaml")
    tower_train.main(["--config", tower, "--modality", "speech", "--train_data", str(units / "train"),
                      "--valid_data", str(units / "dev"), "--token_list", str(speech_tokens), "--output_dir",
                      str(root / "exp/tower_speech")])
    tower_train.main(["--config", tower, "--modality", "text", "--train_data", str(data / "train"), "--valid_data",
                      str(data / "dev"), "--token_list", str(text_tokens), "--output_dir",
                      str(root / "exp/tower_text")])
    zipper_train.main(["--config", str(CONF / "zipper_debug.yaml"), "--text_tower_exp", str(root / "exp/tower_text"),
                       "--speech_tower_exp", str(root / "exp/tower_speech"), "--speech_token_list", str(speech_tokens),
                       "--train_units", str(units / "train"), "--train_text", str(data / "train"), "--valid_units",
                       str(units / "dev"), "--valid_text", str(data / "dev"), "--output_dir", str(root / "exp/zipper")])
    # the debug HiFi-GAN upsamples 20 ms units; the unit encoder's 40 ms ones go through the WORLD vocoder
    vocoder = ["--vocoder", "world"] if request.param == "unit_encoder" else []
    vocoder_train.main(["--config", str(CONF / "vocoder_debug.yaml"), "--train_units", str(units / "train"),
                        "--train_audio", str(root / "dump/audio/train"), "--valid_units", str(units / "dev"),
                        "--valid_audio", str(root / "dump/audio/dev"), "--output_dir", str(root / "exp/vocoder_debug"),
                        *vocoder])
    cwd = os.getcwd()
    os.chdir(root)  # stage 10 runs in the recipe dir
    try:
        for task in ("asr", "tts"):
            stage(zipper_inference.main, ["--exp_dir", str(root / "exp/zipper"), "--task", task, "--units_dir",
                                          str(units / "test"), "--data_dir", str(data / "test"), "--output_dir",
                                          str(root / f"exp/zipper/decode_{task}/test"), "--decode_config", DECODE])
    finally:
        os.chdir(cwd)
    words = {w for line in read_kv(data / "train/text").values() for w in line.split()}
    assert {w for line in read_kv(root / "exp/zipper/decode_asr/test/text", allow_empty_value=True).values()
            for w in line.split()} <= words
    vocoder_synthesize.main(["--vocoder_dir", str(root / "exp/vocoder_debug"), "--units_dir",
                             str(root / "exp/zipper/decode_tts/test")])  # stage 11
    return root


@pytest.fixture(scope="module")
def packed(recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "model.zip"
    pack.main(["--exp_dir", str(recipe / "exp/zipper"), "--output", str(out), "--require_vocoder", "true"])
    return out


def test_packed_model_elsewhere_gives_stage_10s_outputs(recipe, packed, tmp_path, monkeypatch, capsys):
    test_wavs = read_kv(recipe / "dump/audio/test/wav.scp")  # stage 10's order: the data dir's
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "audio").mkdir(parents=True)
    shutil.copy(packed, elsewhere / "model.zip")
    wavs = [shutil.copy(p, elsewhere / "audio" / Path(p).name) for p in test_wavs.values()]
    texts = read_kv(recipe / "data/test/text")
    asr_ref = read_kv(recipe / "exp/zipper/decode_asr/test/text", allow_empty_value=True)
    tts_ref = UnitSet(recipe / "exp/zipper/decode_tts/test")
    wav_ref = read_kv(recipe / "exp/zipper/decode_tts/test/wav.scp")
    tts_ref_units = {u: tts_ref[u] for u in tts_ref.keys()}
    wav_ref_samples = {u: soundfile.read(p, dtype="int16")[0] for u, p in wav_ref.items()}
    (elsewhere / "texts.txt").write_text("".join(texts[u] + "\n" for u in texts), encoding="utf-8")

    hidden = recipe.with_name(recipe.name + "_hidden")  # no recipe dir, no exp/: only the packed file
    os.rename(recipe, hidden)
    try:
        monkeypatch.chdir(elsewhere)
        asr = Speech2Text.from_pretrained("model.zip")
        assert asr([str(w) for w in wavs]) == [asr_ref[u] for u in test_wavs]
        assert asr(str(wavs[0])) == asr_ref[next(iter(test_wavs))]
        transcribe.main(["--model", "model.zip"] + [str(w) for w in wavs])
        printed = capsys.readouterr().out.splitlines()
        assert printed == [f"{w} {asr_ref[u]}".rstrip() for w, u in zip(wavs, test_wavs)]

        tts = Text2Speech.from_pretrained("model.zip")
        speech = tts([texts[u] for u in texts])
        for utt, out in zip(texts, speech):
            assert out.units.tolist() == tts_ref_units[utt].tolist()
            assert out.sample_rate == 16000
            pcm = np.clip(np.round(out.waveform * 32768), -32768, 32767).astype(np.int16)
            assert np.abs(pcm.astype(int) - wav_ref_samples[utt]).max() <= 1
        synthesize.main(["--model", "model.zip", "--text_file", "texts.txt", "--output_dir", "wavs"])
        written = read_kv(elsewhere / "wavs/wav.scp")
        assert len(written) == len(texts)
        for path, utt in zip(written.values(), texts):
            assert np.abs(soundfile.read(path, dtype="int16")[0].astype(int) - wav_ref_samples[utt]).max() <= 1
    finally:
        os.rename(hidden, recipe)


def test_transcribe_a_wav_scp_from_the_experiment_dir_as_stage_10(recipe, tmp_path):
    """What a recipe dir allows after the main job: `transcribe --wav_scp dump/audio/test/wav.scp` = stage 10."""
    out = tmp_path / "hyp" / "text"
    transcribe.main(["--model", str(recipe / "exp/zipper"), "--wav_scp", str(recipe / "dump/audio/test/wav.scp"),
                     "--output_text", str(out)])
    assert read_kv(out, allow_empty_value=True) == read_kv(recipe / "exp/zipper/decode_asr/test/text",
                                                           allow_empty_value=True)
    greedy = Speech2Text.from_pretrained(recipe / "exp/zipper", method="greedy", max_len=3)
    assert greedy.configs["text"].method == "greedy" and greedy.configs["text"].max_len == 3
    assert greedy.configs["speech"].top_k == 5  # the rest is stage 10's


def test_every_weight_is_packed_once(recipe, packed, tmp_path):
    """The speech tower fusion trained is in its tower file only; the frozen text tower is its experiment's."""
    with zipfile.ZipFile(packed) as z:
        z.extractall(tmp_path)
    fusion = torch.load(tmp_path / "model/model.pth")
    assert fusion and not any(k.startswith("towers.") for k in fusion)
    trained = torch.load(recipe / "exp/zipper/valid.loss.ave.pth")
    speech = torch.load(tmp_path / "towers/speech/model.pth")
    assert speech.keys() == {k[len("towers.speech."):] for k in trained if k.startswith("towers.speech.")}
    assert all(torch.equal(v, trained[f"towers.speech.{k}"]) for k, v in speech.items())
    assert (tmp_path / "towers/text/model.pth").read_bytes() == \
        (recipe / "exp/tower_text/valid.loss.ave.pth").read_bytes()


def test_an_unzipped_pack_and_the_experiment_dir_give_the_same(recipe, packed, tmp_path):
    with zipfile.ZipFile(packed) as z:
        z.extractall(tmp_path / "unzipped")
    wav = next(iter(read_kv(recipe / "dump/audio/test/wav.scp").values()))
    from_exp = Speech2Text.from_pretrained(recipe / "exp/zipper")  # k-means found in exp/kmeans
    assert Speech2Text.from_pretrained(tmp_path / "unzipped")(wav) == from_exp(wav) == \
        Speech2Text.from_pretrained(packed)(wav)


def test_any_rate_and_channels_give_the_same_units(recipe, packed, tmp_path, caplog):
    utt, wav = next(iter(read_kv(recipe / "dump/audio/test/wav.scp").items()))
    samples, fs = soundfile.read(wav, dtype="float32")
    stereo = np.stack([resample(samples, fs, 44100)] * 2, axis=1)  # (N, 2)
    soundfile.write(tmp_path / "x.flac", stereo, 44100)
    asr = Speech2Text.from_pretrained(packed)
    with caplog.at_level(logging.WARNING):
        resampled = asr.units_of(str(tmp_path / "x.flac"))
    assert "2 channels: averaged to mono" in caplog.text
    original = UnitSet(recipe / "dump/units/test")[utt]
    assert asr.units_of(wav).tolist() == original.tolist()  # stage 5's units
    assert len(resampled) == len(original) and np.mean(resampled == original) > 0.9
    assert asr((stereo, 44100)) == asr(str(tmp_path / "x.flac")) == asr(wav)


def test_bad_audio_is_refused_naming_the_file(packed, tmp_path):
    asr = Speech2Text.from_pretrained(packed)
    with pytest.raises(InputError, match="nowhere.wav.*no such file"):
        asr(str(tmp_path / "nowhere.wav"))
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(InputError, match="cannot read audio .*junk.wav"):
        asr(str(tmp_path / "junk.wav"))
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="empty.wav' is empty"):
        asr(str(tmp_path / "empty.wav"))
    soundfile.write(tmp_path / "click.wav", np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="click.wav is too short"):
        asr(str(tmp_path / "click.wav"))
    soundfile.write(tmp_path / "long.wav", 0.3 * np.random.default_rng(0).standard_normal(16000 * 3), 16000)
    asr.fused.train_args.max_speech_len = 20  # the model's limit, made small
    with pytest.raises(InputError, match=r"long.wav is too long .*units, the model takes at most 18"):
        asr(str(tmp_path / "long.wav"))
    with pytest.raises(InputError, match="sample rate"):
        asr(np.zeros(1600, dtype=np.float32))
    with pytest.raises(ValueError, match="--wav_scp"):
        transcribe.main(["--model", str(packed)])


def test_bad_text_is_refused_or_read_as_unk(packed, caplog):
    tts = Text2Speech.from_pretrained(packed)
    for text in ("", "  ?!... ,;"):
        with pytest.raises(InputError, match="nothing to say"):
            tts(text)
    with caplog.at_level(logging.WARNING):
        out = tts("the cat ß€ sat")
    assert "read as <unk>: 'ß' '€'" in caplog.text and out.waveform is not None


def test_a_damaged_or_altered_pack_is_refused_naming_the_member(packed, tmp_path):
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(PackError, match="truncated"):
        Speech2Text.from_pretrained(truncated)
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(packed) as src, zipfile.ZipFile(altered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "kmeans/centroids.npy":
                data = data[:-4] + b"\0\0\0\0"
            dst.writestr(item, data)
    with pytest.raises(PackError, match="member kmeans/centroids.npy does not match its checksum"):
        Text2Speech.from_pretrained(altered)
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(packed) as z:
        z.extractall(unzipped)
    (unzipped / "model/config.yaml").write_text((unzipped / "model/config.yaml").read_text() + "# edited\n")
    with pytest.raises(PackError, match="member model/config.yaml does not match"):
        Speech2Text.from_pretrained(unzipped)


def test_a_feature_config_or_codebook_that_does_not_match_the_units_is_refused(recipe, packed, tmp_path):
    km = next((recipe / "exp/kmeans").iterdir())
    other = tmp_path / "km_other"
    shutil.copytree(km, other)
    provenance = read_provenance(other)
    write_provenance(other, dict(provenance, n_clusters=99), overwrite=True)
    with pytest.raises(ProvenanceError, match="n_clusters"):
        Speech2Text.from_pretrained(packed, kmeans_dir=str(other))
    conf = dict(provenance["upstream_conf"])
    conf["kaldi"] = dict(conf["kaldi"], mfcc=dict(conf["kaldi"]["mfcc"], frame_shift=10.0))
    write_provenance(other, dict(provenance, upstream_conf=conf), overwrite=True)  # features of another config
    with pytest.raises(ProvenanceError, match="feature config does not match the model's units"):
        Speech2Text.from_pretrained(recipe / "exp/zipper", kmeans_dir=str(other))


def test_help_shows_examples(capsys):
    examples = {transcribe.main: "python -m zipper.bin.transcribe --model model.zip a.wav b.flac",
                synthesize.main: "python -m zipper.bin.synthesize --model model.zip --text_file lines.txt",
                pack.main: ("python -m zipper.bin.pack --exp_dir exp/zipper_xs_rope_train_paired_100pct "
                            "--output model.zip")}
    for main, example in examples.items():
        with pytest.raises(SystemExit):
            main(["--help"])
        assert example in capsys.readouterr().out


def test_the_vocabulary_expansion_baseline_packs_and_runs_too(recipe, tmp_path):
    """One tower (no speech tower): packed, opened elsewhere, the same transcripts and units as its experiment."""
    units, data = recipe / "dump/units", recipe / "data"
    exp = tmp_path / "exp" / "vocabexp"
    zipper_train.main(["--config", str(CONF / "vocabexp_debug.yaml"), "--text_tower_exp",
                       str(recipe / "exp/tower_text"),
                       "--speech_token_list", str(data / "token_list/speech"), "--train_units", str(units / "train"),
                       "--train_text", str(data / "train"), "--valid_units", str(units / "dev"), "--valid_text",
                       str(data / "dev"), "--output_dir", str(exp)])
    km = next((recipe / "exp/kmeans").iterdir())
    model = tmp_path / "vocabexp.zip"
    pack.main(["--exp_dir", str(exp), "--kmeans_dir", str(km), "--vocoder_dir", str(recipe / "exp/vocoder_debug"),
               "--decode_config", DECODE.replace("data/train/text", str(data / "train/text")), "--output", str(model)])
    with zipfile.ZipFile(model) as z:
        assert not any(n.startswith("towers/speech/") for n in z.namelist())
    wavs = list(read_kv(recipe / "dump/audio/test/wav.scp").values())
    decode = {"text": {"method": "beam", "beam_size": 2, "max_len": 12, "lexicon": str(data / "train/text")}}
    assert Speech2Text.from_pretrained(model)(wavs) == \
        Speech2Text.from_pretrained(exp, kmeans_dir=str(km), decode_config=decode)(wavs)
    speech = Text2Speech.from_pretrained(model)("the cat sat")
    assert speech.units.size > 0 and speech.waveform is not None and speech.sample_rate == 16000
