"""zipper.corpora.libritts on a tiny fake LibriTTS tree: '-' ids, normalized text, skipped utterances, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fake_corpora import FakeCorpus, make_libritts, make_lm_text
from zipper.corpora.librispeech import CorpusError, PrepOptions, leakage_key
from zipper.corpora.libritts import (
    DEFAULT_TRAIN_SUBSETS, libritts_utt_id, prepare_libritts, read_exclude_list, scan_libritts_subset)
from zipper.data.kaldi_dir import read_kv, validate_data_dir

PAIRED = list(DEFAULT_TRAIN_SUBSETS)
ALL_TRAIN = ["train-clean-100", "train-clean-360", "train-other-500"]


def options(out_dir: Path, **kwargs) -> PrepOptions:
    base = dict(out_dir=out_dir, train_subsets=PAIRED, eval_subsets={"dev": "dev-clean", "test": "test-clean"},
                extra_eval_subsets={"dev_other": "dev-other", "test_other": "test-other"}, nj=1)
    base.update(kwargs)
    return PrepOptions(**base)


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> FakeCorpus:
    return make_libritts(tmp_path_factory.mktemp("corpus") / "LibriTTS")


@pytest.fixture(scope="module")
def prepared(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    return out, prepare_libritts(fake.root, options(out))


def test_sets_and_validation(prepared):
    out, made = prepared
    # dev-other / test-other are not in the fake tree, so they are left out
    assert made == [("dev", "paired"), ("test", "paired"), ("train_paired_100pct", "paired"),
                    ("train_paired_10pct", "paired"), ("train_paired_1pct", "paired"), ("train_speech", "speech"),
                    ("train_text", "text")]
    for name, kind in made:
        validate_data_dir(out / name, need_text=kind != "speech", need_wav=kind != "text", check_audio=True,
                          fs=24000 if kind != "text" else None)


def test_ids_use_dashes_and_sort_by_speaker(prepared, fake):
    out, _ = prepared
    utt2spk = read_kv(out / "train_paired_100pct" / "utt2spk")
    assert list(utt2spk)[:3] == ["103-1241-000001-000000", "103-1241-000001-000001", "1034-121119-000000-000000"]
    assert list(utt2spk) == sorted(utt2spk, key=lambda u: (utt2spk[u], u))
    assert all("_" not in u for u in utt2spk)
    assert libritts_utt_id("19_198_000000_000000") == "19-198-000000-000000"


def test_dev_exact_contents(prepared, fake):
    out, _ = prepared
    utts = fake.utts["dev-clean"]
    d = out / "dev"
    assert read_lines(d / "wav.scp") == [f"{u.utt} {u.audio}" for u in utts]
    assert read_lines(d / "text") == [f"{u.utt} {u.text}" for u in utts]  # the normalized text, as written
    assert read_lines(d / "utt2spk") == [f"{u.utt} 84" for u in utts]
    assert read_lines(d / "spk2utt") == ["84 " + " ".join(u.utt for u in utts)]
    assert read_lines(d / "utt2dur") == [f"{u.utt} {u.duration}" for u in utts]  # at 24 kHz
    assert read_lines(d / "utt2dur")[0] == "84-121123-000000-000000 0.100"
    assert set(read_kv(d / "utt2gender").values()) == {"f"}
    assert all(v.endswith(".wav") and "_" in Path(v).name for v in read_kv(d / "wav.scp").values())


def test_paired_skips_utterances_without_text(prepared, fake, caplog):
    out, _ = prepared
    text = read_kv(out / "train_paired_100pct" / "text")
    assert text == dict(sorted(fake.texts(*PAIRED).items()))
    assert not set(fake.skipped["train-clean-100"]) & set(text)
    assert len(fake.skipped["train-clean-100"]) == 2
    nested = [set(read_kv(out / f"train_paired_{t}" / "utt2spk")) for t in ("100pct", "10pct", "1pct")]
    assert nested[2] <= nested[1] <= nested[0] and len(nested[1]) == 1


def test_skips_are_counted_in_the_log(fake, caplog):
    with caplog.at_level(logging.INFO):
        scan_libritts_subset(fake.root, "train-clean-100")
    assert "skipped 1 wav files without .normalized.txt" in caplog.text
    assert "skipped 1 utterances whose .normalized.txt is empty" in caplog.text
    assert "1 .normalized.txt files have no wav (ignored)" in caplog.text


def test_train_speech_is_every_training_subset(prepared, fake):
    out, _ = prepared
    d = out / "train_speech"
    assert not (d / "text").exists()
    assert list(read_kv(d / "utt2spk")) == fake.ids(*ALL_TRAIN)
    assert read_kv(d / "utt2dur") == {u.utt: u.duration for s in ALL_TRAIN for u in fake.utts[s]}


def test_train_text_is_unpaired_normalized_text_without_dev_test(prepared, fake):
    out, _ = prepared
    text = list(read_kv(out / "train_text" / "text").values())
    unpaired = sorted(fake.utts["train-other-500"], key=lambda u: u.utt)
    # the first train-other-500 sentence is a dev-clean one in other case and punctuation: dropped
    assert leakage_key(unpaired[0].text) == leakage_key(fake.utts["dev-clean"][0].text)
    assert text == [u.text for u in unpaired[1:]]
    eval_keys = {leakage_key(u.text) for s in ("dev-clean", "test-clean") for u in fake.utts[s]}
    assert not {leakage_key(s) for s in text} & eval_keys


def test_lm_text_replaces_unpaired_transcripts(fake, tmp_path):
    lm = tmp_path / "lm.txt"
    lines = make_lm_text(lm, [fake.utts["test-clean"][2].text.upper().rstrip(".")], extra=4)
    prepare_libritts(fake.root, options(tmp_path / "data", lm_text=lm))
    assert list(read_kv(tmp_path / "data" / "train_text" / "text").values()) == lines[1:]


def test_exclude_list(fake, tmp_path, caplog):
    victim, other = fake.utts["train-clean-360"][1], fake.utts["dev-clean"][1]
    listing = tmp_path / "bad.txt"
    native = victim.audio.stem
    listing.write_text(f"# LibriTTS-R failures\n{native}\n"
                       f"dev-clean/84/121123/{other.audio.name}  extra fields\n\n", encoding="utf-8")
    assert read_exclude_list(listing) == {victim.utt, other.utt}
    with caplog.at_level(logging.INFO):
        prepare_libritts(fake.root, options(tmp_path / "data"), exclude_utts=listing)
    for name in ("train_paired_100pct", "train_speech", "dev"):
        assert not {victim.utt, other.utt} & set(read_kv(tmp_path / "data" / name / "utt2spk"))
    assert len(read_kv(tmp_path / "data" / "train_paired_100pct" / "utt2spk")) == len(fake.ids(*PAIRED)) - 1
    assert "LibriTTS train-clean-360: excluded 1 listed utterances" in caplog.text
    assert "LibriTTS dev-clean: excluded 1 listed utterances" in caplog.text
    with pytest.raises(CorpusError, match="exclusion list .*nope.txt does not exist"):
        prepare_libritts(fake.root, options(tmp_path / "data2"), exclude_utts=tmp_path / "nope.txt")


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_root_and_subset(fake, tmp_path):
    with pytest.raises(CorpusError, match=r"LibriTTS directory /no/LibriTTS does not exist \(check LIBRITTS in db.sh"):
        prepare_libritts("/no/LibriTTS", options(tmp_path))
    with pytest.raises(CorpusError, match="LibriTTS subset 'train-other-500' not found"):
        scan_libritts_subset(make_libritts(tmp_path / "small", {"dev-clean": {"84": {"121123": 1}}}).root,
                             "train-other-500")


def test_bad_utf8_normalized_text_names_file_and_line(tmp_path):
    small = make_libritts(tmp_path / "LibriTTS", {"dev-clean": {"84": {"121123": 2}}})
    bad = small.utts["dev-clean"][1].audio.with_suffix(".normalized.txt")
    bad.write_bytes(b"First line.\nCaf\xe9 au lait.")
    with pytest.raises(CorpusError, match=r"84_121123_000000_000001.normalized.txt:2: not valid UTF-8"):
        scan_libritts_subset(small.root, "dev-clean")


def test_unexpected_file_name(tmp_path):
    small = make_libritts(tmp_path / "LibriTTS", {"dev-clean": {"84": {"121123": 1}}})
    wav = small.utts["dev-clean"][0].audio
    wav.rename(wav.with_name("85_121123_000000_000000.wav"))
    with pytest.raises(CorpusError, match=r"85_121123_000000_000000.wav: unexpected file name"):
        scan_libritts_subset(small.root, "dev-clean")


def test_subset_with_no_usable_utterance(tmp_path):
    small = make_libritts(tmp_path / "LibriTTS", {"dev-clean": {"84": {"121123": 1}}})
    small.utts["dev-clean"][0].audio.with_suffix(".normalized.txt").unlink()
    with pytest.raises(CorpusError, match="no utterances found"):
        scan_libritts_subset(small.root, "dev-clean")
