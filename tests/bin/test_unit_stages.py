"""Stages 2-6 through their CLIs on tiny data: outputs, resumption, refusals, and errors that name the culprit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

from audio_factory import make_data_dir
from zipper.bin import (dump_units, encode_feats, extract_feats, format_audio, make_unit_token_list, subset_units,
                        train_kmeans, train_text_tokenizer, train_unit_encoder)
from zipper.data.kaldi_dir import DataDirError, read_kv, validate_data_dir, write_kv
from zipper.tokens.kmeans import KMeansModel, position_basis
from zipper.tokens.token_list import NUM_SPECIAL, TokenList
from zipper.tokens.units import UnitSet
from zipper.utils.provenance import ProvenanceError, write_provenance

REPO = Path(__file__).resolve().parents[2]
MFCC20 = ["--upstream", "mfcc", "--upstream_conf", "{kaldi: {mfcc: {frame_shift: 20.0}}}"]


def run_sharded(main, args, nj=2):
    for job in range(1, nj + 1):
        main(args + ["--nj", str(nj), "--job", str(job)])
    main(args + ["--nj", str(nj), "--merge", "true"])


def formatted(tmp_path, name="train", n=6, **kw):
    data = make_data_dir(tmp_path, name, n, **kw)
    out = tmp_path / "dump" / "audio" / name
    run_sharded(format_audio.main, ["--in_dir", str(data), "--out_dir", str(out)])
    return data, out


def test_format_audio_references_good_files_and_filters_duration(tmp_path):
    data = make_data_dir(tmp_path, "train", 6, seconds=(0.5, 1.5))
    out = tmp_path / "out"
    run_sharded(format_audio.main, ["--in_dir", str(data), "--out_dir", str(out), "--min_duration", "1.0"])
    durations = {u: soundfile.info(p).duration for u, p in read_kv(data / "wav.scp").items()}
    kept = {u for u, d in durations.items() if d >= 1.0}
    assert 0 < len(kept) < 6
    assert set(read_kv(out / "wav.scp")) == kept == set(read_kv(out / "text"))
    assert read_kv(out / "wav.scp") == {u: p for u, p in read_kv(data / "wav.scp").items() if u in kept}
    for u, n in read_kv(out / "utt2num_samples").items():
        assert int(n) == soundfile.info(read_kv(data / "wav.scp")[u]).frames
    assert validate_data_dir(out) == len(kept)
    assert (out / ".done").exists()


def test_format_audio_wrong_rate_is_an_error_naming_the_line_unless_resampling(tmp_path):
    data = make_data_dir(tmp_path, "tts", 3, fs=24000)
    with pytest.raises(DataDirError) as err:
        format_audio.main(["--in_dir", str(data), "--out_dir", str(tmp_path / "o")])
    assert f"{data / 'wav.scp'}:1: utterance 'spk0-tts-0000': sample rate 24000 Hz, expected 16000 Hz" in str(err.value)
    out = tmp_path / "o2"
    run_sharded(format_audio.main, ["--in_dir", str(data), "--out_dir", str(out), "--resample", "true"], nj=1)
    for utt, path in read_kv(out / "wav.scp").items():
        info = soundfile.info(path)
        assert info.samplerate == 16000 and path.startswith(str(out / "data"))
        assert abs(info.duration - soundfile.info(read_kv(data / "wav.scp")[utt]).duration) < 1e-3


def test_format_audio_missing_file_and_pipe(tmp_path):
    data = make_data_dir(tmp_path, "train", 3)
    wav = read_kv(data / "wav.scp")
    first = sorted(wav)[0]
    wav[sorted(wav)[1]] = f"cat {wav[sorted(wav)[1]]} |"
    wav[sorted(wav)[2]] = str(tmp_path / "nowhere.wav")
    write_kv(data / "wav.scp", wav)
    with pytest.raises(DataDirError) as err:
        format_audio.main(["--in_dir", str(data), "--out_dir", str(tmp_path / "o")])
    assert f"wav.scp:3: utterance '{sorted(wav)[2]}'" in str(err.value) and "nowhere.wav" in str(err.value)
    del wav[sorted(wav)[2]]
    write_kv(data / "wav.scp", wav)
    for f in ("text", "utt2spk"):
        write_kv(data / f, {u: v for u, v in read_kv(data / f).items() if u in wav})
    write_kv(data / "spk2utt", {"spk0": first, "spk1": sorted(wav)[1]})
    out = tmp_path / "o3"
    run_sharded(format_audio.main, ["--in_dir", str(data), "--out_dir", str(out)], nj=1)
    piped = read_kv(out / "wav.scp")[sorted(wav)[1]]
    assert piped.startswith(str(out / "data")) and soundfile.info(piped).samplerate == 16000


def test_feature_jobs_resume_and_refuse_other_features(tmp_path, capsys):
    _, audio = formatted(tmp_path)
    feats = tmp_path / "feats"
    args = ["--data_dir", str(audio), "--out_dir", str(feats)] + MFCC20
    extract_feats.main(args + ["--nj", "2", "--job", "1"])
    ark = feats / "split2" / "job1" / "feats.ark"
    mtime = ark.stat().st_mtime_ns
    capsys.readouterr()
    extract_feats.main(args + ["--nj", "2", "--job", "1"])  # finished: not redone
    assert "job 1/2 already finished" in capsys.readouterr().err and ark.stat().st_mtime_ns == mtime
    with pytest.raises(RuntimeError, match="1 job\\(s\\) did not finish"):
        extract_feats.main(args + ["--nj", "2", "--merge", "true"])
    extract_feats.main(args + ["--nj", "2", "--job", "2"])
    extract_feats.main(args + ["--nj", "2", "--merge", "true"])
    scp = read_kv(feats / "feats.scp")
    assert set(scp) == set(read_kv(audio / "wav.scp"))
    for utt, n in read_kv(audio / "utt2num_samples").items():
        mat = kaldiio.load_mat(scp[utt])
        assert mat.shape == (1 + (int(n) - 400) // 320, 39) and mat.dtype == np.float32
    prov = json.loads((feats / "provenance.json").read_text())
    assert prov["upstream"] == "mfcc" and prov["frame_shift_samples"] == 320 and prov["num_utts"] == 6
    with pytest.raises(ProvenanceError, match="already holds other features"):
        extract_feats.main(["--data_dir", str(audio), "--out_dir", str(feats), "--upstream", "fbank",
                            "--nj", "1", "--job", "1"])


def test_config_file_sets_options(tmp_path, capsys):
    config = tmp_path / "feats.yaml"
    config.write_text("upstream: fbank\nlayer: -1\nbatch_seconds: 7\n")
    with pytest.raises(SystemExit):
        extract_feats.main(["--config", str(config), "--data_dir", "d", "--out_dir", "o", "--print_config"])
    printed = capsys.readouterr().out
    assert "upstream: fbank" in printed and "batch_seconds: 7" in printed
    config.write_text("upstream: fbank\nno_such_option: 1\n")
    with pytest.raises(SystemExit):
        extract_feats.main(["--config", str(config), "--data_dir", "d", "--out_dir", "o"])
    assert "unknown option(s) no_such_option" in capsys.readouterr().err


def units_pipeline(tmp_path):
    _, audio = formatted(tmp_path, "train", 8, n_speakers=2)
    feats = tmp_path / "feats" / "train"
    run_sharded(extract_feats.main, ["--data_dir", str(audio), "--out_dir", str(feats)] + MFCC20)
    km_args = ["--feats_dir", str(feats), "--feat_tag", "mfcc", "--exp_root", str(tmp_path / "km"),
               "--n_clusters", "8", "--portion", "0.5"]
    return audio, feats, km_args


def test_kmeans_units_and_token_lists(tmp_path, capsys):
    audio, feats, km_args = units_pipeline(tmp_path)
    train_kmeans.main(km_args + ["--print_tag", "true"])
    tag = capsys.readouterr().out.strip()
    assert tag.startswith("mfcc_k8_")
    train_kmeans.main(km_args)
    km_dir = tmp_path / "km" / tag
    assert np.load(km_dir / "centroids.npy").shape == (8, 39)
    assert (km_dir / "cluster_sizes.png").stat().st_size > 1000
    prov = json.loads((km_dir / "provenance.json").read_text())
    assert (prov["n_clusters"], prov["upstream"], prov["layer"], prov["seed"]) == (8, "mfcc", -1, 0)

    units_dir = tmp_path / "units" / "train"
    run_sharded(dump_units.main, ["--feats_dir", str(feats), "--kmeans_dir", str(km_dir), "--out_dir", str(units_dir)])
    units = UnitSet(units_dir)
    centroids = np.load(km_dir / "centroids.npy")
    for utt, path in read_kv(feats / "feats.scp").items():
        x = kaldiio.load_mat(path)
        expected = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        assert units[utt].dtype == np.int32 and units[utt].tolist() == expected.tolist()
    assert units.provenance["kmeans_tag"] == tag and units.provenance["n_clusters"] == 8

    # a subset's units come from the superset's
    sub_data = tmp_path / "data" / "sub"
    keep = sorted(read_kv(audio / "utt2spk"))[:3]
    write_kv(sub_data / "utt2spk", {u: v for u, v in read_kv(audio / "utt2spk").items() if u in keep})
    subset_units.main(["--src_dir", str(units_dir), "--data_dir", str(sub_data), "--out_dir", str(tmp_path / "sub")])
    assert sorted(UnitSet(tmp_path / "sub").keys()) == keep

    token_dir = tmp_path / "tokens"
    make_unit_token_list.main(["--kmeans_dir", str(km_dir), "--out_dir", str(token_dir), "--units_dirs",
                               str(units_dir), str(tmp_path / "sub")])
    assert len(TokenList(token_dir)) == NUM_SPECIAL + 8

    # units from another codebook are refused
    other = km_args[:-1] + ["0.9"]
    train_kmeans.main(other)
    train_kmeans.main(other + ["--print_tag", "true"])
    other_tag = capsys.readouterr().out.strip().splitlines()[-1]
    assert other_tag != tag
    with pytest.raises(ProvenanceError, match="kmeans_tag"):
        make_unit_token_list.main(["--kmeans_dir", str(tmp_path / "km" / other_tag), "--out_dir",
                                   str(tmp_path / "tokens2"), "--units_dirs", str(units_dir)])
    with pytest.raises(ProvenanceError, match="already holds other units"):
        dump_units.main(["--feats_dir", str(feats), "--kmeans_dir", str(tmp_path / "km" / other_tag),
                         "--out_dir", str(units_dir), "--nj", "1", "--job", "1"])


def test_text_tokenizer_cli(tmp_path):
    data = make_data_dir(tmp_path, "train_text", 200, with_audio=False, n_speakers=1)
    out = tmp_path / "tok"
    train_text_tokenizer.main(["--text", str(data / "text"), "--out_dir", str(out), "--vocab_size", "30"])
    tokens = (out / "tokens.txt").read_text().split("\n")[:-1]
    assert len(tokens) == 30 and tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    before = (out / "sentencepiece.model").stat().st_mtime_ns
    train_text_tokenizer.main(["--text", str(data / "text"), "--out_dir", str(out), "--vocab_size", "30"])
    assert (out / "sentencepiece.model").stat().st_mtime_ns == before  # same inputs: nothing redone


def test_kmeans_with_the_position_removed_assigns_each_utterance_from_its_own_frame_indices(tmp_path, capsys):
    _, feats, km_args = units_pipeline(tmp_path)
    km_args = km_args + ["--remove_position", "8"]
    train_kmeans.main(km_args + ["--print_tag", "true"])
    tag = capsys.readouterr().out.strip()
    train_kmeans.main(km_args)
    km_dir = tmp_path / "km" / tag
    assert np.load(km_dir / "position.npy").shape == (9, 39)
    assert json.loads((km_dir / "provenance.json").read_text())["remove_position"] == 8
    units_dir = tmp_path / "units" / "train"
    run_sharded(dump_units.main, ["--feats_dir", str(feats), "--kmeans_dir", str(km_dir), "--out_dir", str(units_dir)])
    model = KMeansModel(km_dir)
    units = UnitSet(units_dir)
    centroids, weights = np.load(km_dir / "centroids.npy"), np.load(km_dir / "position.npy")
    for utt, path in read_kv(feats / "feats.scp").items():
        x = kaldiio.load_mat(path)
        assert units[utt].tolist() == model(x).tolist()  # batched in dump_units, one utterance here
        x = x - position_basis(np.arange(len(x)), 8).numpy() @ weights
        expected = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        assert units[utt].tolist() == expected.tolist()


def test_unit_encoder_stage_writes_encoded_features_once_and_refuses_other_features(tmp_path, capsys):
    audio, feats, km_args = units_pipeline(tmp_path)
    config = str(REPO / "conf" / "unit_encoder_debug.yaml")
    exp = tmp_path / "exp" / "unit_encoder"
    encoder_args = ["--config", config, "--train_feats", str(feats), "--train_text", str(audio), "--valid_feats",
                    str(feats), "--valid_text", str(audio), "--output_dir", str(exp)]
    train_unit_encoder.main(encoder_args)
    scores = json.loads((exp / "scores.json").read_text())
    assert 0 <= scores["valid_cer"] and scores["train_utterances"] == 8 and (exp / ".done").exists()
    assert "unit encoder" in capsys.readouterr().out
    weights = (exp / "unit_encoder.pth").stat().st_mtime_ns
    train_unit_encoder.main(encoder_args)  # finished: nothing redone
    assert (exp / "unit_encoder.pth").stat().st_mtime_ns == weights

    out = tmp_path / "feats_ue" / "train"
    encode_feats.main(["--encoder_dir", str(exp), "--feats_dir", str(feats), "--out_dir", str(out)])
    prov, upstream = json.loads((out / "provenance.json").read_text()), json.loads((feats / "provenance.json").read_text())
    assert prov["frame_shift_samples"] == 2 * upstream["frame_shift_samples"]  # the debug preset's stride
    assert prov["upstream_feature_hash"] == upstream["feature_hash"] != prov["feature_hash"]
    frames = read_kv(feats / "utt2num_frames")
    for utt, path in read_kv(out / "feats.scp").items():
        assert kaldiio.load_mat(path).shape == ((int(frames[utt]) + 1) // 2, 16)
    before = (out / "feats.scp").stat().st_mtime_ns
    encode_feats.main(["--encoder_dir", str(exp), "--feats_dir", str(feats), "--out_dir", str(out)])
    assert (out / "feats.scp").stat().st_mtime_ns == before  # done: left as it is

    # k-means on the states keeps a copy of the encoder: the codebook dir alone turns upstream frames into units
    train_kmeans.main(["--feats_dir", str(out), "--feat_tag", "mfcc_ue", "--exp_root", str(tmp_path / "km"),
                       "--n_clusters", "8", "--portion", "1.0"])
    km_dir = next((tmp_path / "km").iterdir())
    assert (km_dir / "unit_encoder" / "unit_encoder.pth").read_bytes() == (exp / "unit_encoder.pth").read_bytes()
    units_dir = tmp_path / "units" / "train"
    run_sharded(dump_units.main, ["--feats_dir", str(out), "--kmeans_dir", str(km_dir), "--out_dir", str(units_dir)])
    model = KMeansModel(km_dir)
    for utt, path in read_kv(feats / "feats.scp").items():
        assert model.from_upstream(kaldiio.load_mat(path)).tolist() == UnitSet(units_dir)[utt].tolist()

    # the states of other features, or into a dir that holds another encoder's, are refused
    other = tmp_path / "feats_other"
    shutil.copytree(feats, other)
    write_provenance(other, dict(upstream, feature_hash="0ther"), overwrite=True)
    with pytest.raises(ProvenanceError, match="not the features the unit encoder .* was trained on"):
        encode_feats.main(["--encoder_dir", str(exp), "--feats_dir", str(other), "--out_dir", str(tmp_path / "x")])
    write_provenance(out, dict(prov, feature_hash="elsewhere"), overwrite=True)
    with pytest.raises(ProvenanceError, match="already holds other features"):
        encode_feats.main(["--encoder_dir", str(exp), "--feats_dir", str(feats), "--out_dir", str(out)])
