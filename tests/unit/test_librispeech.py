"""zipper.corpora.librispeech on a tiny fake LibriSpeech tree: exact data-dir contents, nesting, leakage, errors."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from fake_corpora import (
    FakeCorpus, librispeech_transcript, make_librilight, make_librispeech, make_lm_text)
from zipper.corpora.librispeech import (
    CorpusError, PrepOptions, check_root, leakage_key, prepare_librispeech, read_speaker_genders,
    sample_in_order, scan_librispeech_subset)
from zipper.data.kaldi_dir import read_kv, validate_data_dir
from zipper.data.subset import nested_fractions

TRAIN = ["train-clean-100", "train-clean-360", "train-other-500"]
EVAL = {"dev": "dev-clean", "test": "test-clean", "dev_other": "dev-other", "test_other": "test-other"}


def options(out_dir: Path, **kwargs) -> PrepOptions:
    base = dict(out_dir=out_dir, train_subsets=TRAIN, eval_subsets={"dev": "dev-clean", "test": "test-clean"},
                extra_eval_subsets={"dev_other": "dev-other", "test_other": "test-other"}, nj=1)
    base.update(kwargs)
    return PrepOptions(**base)


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> FakeCorpus:
    return make_librispeech(tmp_path_factory.mktemp("corpus") / "LibriSpeech")


@pytest.fixture(scope="module")
def lm_text(fake: FakeCorpus, tmp_path_factory) -> tuple[Path, list[str]]:
    """An LM corpus holding a dev-clean sentence, a test-other one in other case/spacing, and 30 others."""
    path = tmp_path_factory.mktemp("lm") / "librispeech-lm-norm.txt"
    dev_sentence = fake.utts["dev-clean"][1].text
    test_sentence = "  " + fake.utts["test-other"][1].text.lower().replace(" ", "   ") + " "
    lines = make_lm_text(path, ["FIRST LINE OF THE BOOK", dev_sentence, test_sentence, ""], extra=30)
    return path, lines


@pytest.fixture(scope="module")
def prepared(fake: FakeCorpus, lm_text, tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    out = tmp_path_factory.mktemp("data")
    made = prepare_librispeech(fake.root, options(out, lm_text=lm_text[0], max_text_sentences=0))
    return out, made


def test_makes_every_set_and_they_validate(prepared):
    out, made = prepared
    assert made == [("dev", "paired"), ("test", "paired"), ("dev_other", "paired"), ("test_other", "paired"),
                    ("train_paired_100pct", "paired"), ("train_paired_10pct", "paired"),
                    ("train_paired_1pct", "paired"), ("train_speech", "speech"), ("train_text", "text")]
    for name, kind in made:
        validate_data_dir(out / name, need_text=kind != "speech", need_wav=kind != "text", check_audio=True,
                          fs=16000 if kind != "text" else None)
        assert (out / name / ".done").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(name for name, _ in made)  # no temporary leftovers


@pytest.mark.parametrize("set_name", list(EVAL))
def test_eval_sets_exact_contents(prepared, fake, set_name):
    out, _ = prepared
    utts = sorted(fake.utts[EVAL[set_name]], key=lambda u: u.utt)
    d = out / set_name
    assert read_lines(d / "wav.scp") == [f"{u.utt} {u.audio}" for u in utts]
    assert read_lines(d / "text") == [f"{u.utt} {u.text}" for u in utts]
    assert read_lines(d / "utt2spk") == [f"{u.utt} {u.spk}" for u in utts]
    assert read_lines(d / "utt2dur") == [f"{u.utt} {u.duration}" for u in utts]
    speakers = sorted({u.spk for u in utts})
    assert read_lines(d / "spk2utt") == [f"{s} " + " ".join(u.utt for u in utts if u.spk == s) for s in speakers]
    assert set(read_kv(d / "utt2gender").values()) <= {"m", "f"}


def test_dev_has_known_ids_and_genders(prepared):
    out, _ = prepared
    assert list(read_kv(out / "dev" / "utt2spk")) == [
        "174-50561-0000", "174-50561-0001", "84-121123-0000", "84-121123-0001", "84-121123-0002"]
    assert read_kv(out / "dev" / "utt2gender")["174-50561-0000"] == "m"
    assert read_kv(out / "dev" / "utt2gender")["84-121123-0000"] == "f"
    assert read_lines(out / "dev" / "spk2utt")[0] == "174 174-50561-0000 174-50561-0001"


def test_paired_100pct_is_every_training_subset(prepared, fake):
    out, _ = prepared
    d = out / "train_paired_100pct"
    assert read_kv(d / "text") == dict(sorted(fake.texts(*TRAIN).items()))
    assert list(read_kv(d / "utt2spk")) == fake.ids(*TRAIN)
    # sorting by utterance equals sorting by (speaker, utterance), though '103' < '1034' < '19' as strings
    utt2spk = read_kv(d / "utt2spk")
    assert list(utt2spk) == sorted(utt2spk, key=lambda u: (utt2spk[u], u))
    assert list(read_kv(d / "spk2utt")) == ["103", "1034", "14", "16", "19", "20"]


def test_paired_fractions_are_nested_and_seeded(prepared, fake):
    out, _ = prepared
    ids = {tag: list(read_kv(out / f"train_paired_{tag}" / "utt2spk")) for tag in ("100pct", "10pct", "1pct")}
    n = len(ids["100pct"])
    assert n == 28
    assert len(ids["10pct"]) == round(0.1 * n) and len(ids["1pct"]) == 1
    assert set(ids["1pct"]) <= set(ids["10pct"]) <= set(ids["100pct"])
    expected = nested_fractions(ids["100pct"], [1.0, 0.1, 0.01], seed=1)
    assert ids["10pct"] == expected[0.1] and ids["1pct"] == expected[0.01]
    full = read_kv(out / "train_paired_100pct" / "text")
    for tag in ("10pct", "1pct"):
        d = out / f"train_paired_{tag}"
        assert read_kv(d / "text") == {u: full[u] for u in ids[tag]}
        assert set(read_kv(d / "utt2dur")) == set(ids[tag])


def test_train_speech_is_training_audio_without_text(prepared, fake):
    out, _ = prepared
    d = out / "train_speech"
    assert not (d / "text").exists()
    assert read_kv(d / "wav.scp") == read_kv(out / "train_paired_100pct" / "wav.scp")
    assert read_kv(d / "utt2dur") == {u.utt: u.duration for s in TRAIN for u in fake.utts[s]}


def test_train_text_is_lm_text_without_eval_sentences(prepared, fake, lm_text):
    out, _ = prepared
    _, lines = lm_text
    eval_keys = {leakage_key(u.text) for s in EVAL.values() for u in fake.utts[s]}
    expected = [" ".join(line.split()) for line in lines if line.strip() and leakage_key(line) not in eval_keys]
    assert len(expected) == len(lines) - 3  # the dev sentence, the test-other one, the empty line
    d = out / "train_text"
    assert not (d / "wav.scp").exists()
    text = read_kv(d / "text")
    assert list(text) == [f"text-{i:08d}" for i in range(1, len(expected) + 1)]
    assert list(text.values()) == expected
    assert set(read_kv(d / "utt2spk").values()) == {"text"}
    assert read_lines(d / "spk2utt") == ["text " + " ".join(text)]
    assert not {leakage_key(s) for s in text.values()} & eval_keys


def test_rerun_is_a_noop_and_force_redoes(prepared, fake, lm_text, caplog):
    out, made = prepared
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO):
        again = prepare_librispeech(fake.root, options(out, lm_text=lm_text[0], max_text_sentences=0))
    assert again == made
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    assert "already prepared" in caplog.text and "LibriSpeech train-clean-100:" not in caplog.text  # no rescan


def test_changed_options_need_force(fake, lm_text, tmp_path):
    prepare_librispeech(fake.root, options(tmp_path, lm_text=lm_text[0], max_text_sentences=5))
    first = read_kv(tmp_path / "train_paired_10pct" / "utt2spk")
    with pytest.raises(CorpusError,
                       match=r"train_paired_100pct was prepared with other options \(seed differ.*--force"):
        prepare_librispeech(fake.root, options(tmp_path, lm_text=lm_text[0], max_text_sentences=5, seed=7))
    prepare_librispeech(fake.root, options(tmp_path, lm_text=lm_text[0], max_text_sentences=5, seed=7, force=True))
    marker = json.loads((tmp_path / "train_paired_10pct" / ".done").read_text())
    assert marker["params"]["seed"] == 7 and marker["utterances"] == 3
    second = list(read_kv(tmp_path / "train_paired_10pct" / "utt2spk"))
    assert list(first) == nested_fractions(fake.ids(*TRAIN), [0.1], seed=1)[0.1]
    assert second == nested_fractions(fake.ids(*TRAIN), [0.1], seed=7)[0.1]


def test_max_text_sentences_is_a_seeded_sample_in_corpus_order(fake, lm_text, tmp_path):
    prepare_librispeech(fake.root, options(tmp_path / "a", lm_text=lm_text[0], max_text_sentences=5))
    prepare_librispeech(fake.root, options(tmp_path / "b", lm_text=lm_text[0], max_text_sentences=5))
    prepare_librispeech(fake.root, options(tmp_path / "c", lm_text=lm_text[0], max_text_sentences=5, seed=2))
    a, b, c = (list(read_kv(tmp_path / x / "train_text" / "text").values()) for x in "abc")
    assert len(a) == 5 and a == b and a != c
    lines = [" ".join(line.split()) for line in lm_text[1]]
    positions = [lines.index(s) for s in a]
    assert positions == sorted(positions)


def test_text_falls_back_to_unpaired_training_transcripts(fake, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        made = prepare_librispeech(fake.root, options(tmp_path, train_subsets=["train-clean-100"]))
    assert ("train_text", "text") in made
    assert "the unpaired text is the transcripts of LibriSpeech train-clean-360, train-other-500" in caplog.text
    assert list(read_kv(tmp_path / "train_paired_100pct" / "utt2spk")) == fake.ids("train-clean-100")
    # train-other-500's first transcript is a dev-clean one and train-clean-360's a test-other one: both dropped
    unpaired = [u for s in ("train-clean-360", "train-other-500") for u in sorted(fake.utts[s], key=lambda u: u.utt)]
    leaked = {fake.utts["train-other-500"][0].utt, fake.utts["train-clean-360"][0].utt}
    expected = [u.text for u in sorted(unpaired, key=lambda u: u.utt) if u.utt not in leaked]
    assert list(read_kv(tmp_path / "train_text" / "text").values()) == expected
    assert "dropped 2 that are dev/test transcripts" in caplog.text
    # the unpaired speech is still every training subset present
    assert list(read_kv(tmp_path / "train_speech" / "utt2spk")) == fake.ids(*TRAIN)


def test_no_text_source_is_an_error_naming_the_variable(fake, tmp_path):
    with pytest.raises(CorpusError, match="set LIBRISPEECH_LM_TEXT in db.sh"):
        prepare_librispeech(fake.root, options(tmp_path))
    assert not (tmp_path / "dev").exists()  # checked before anything is written


def test_librilight_speech(fake, lm_text, tmp_path):
    light = make_librilight(tmp_path / "LibriLight")
    prepare_librispeech(fake.root, options(tmp_path / "all", lm_text=lm_text[0], librilight=light.root))
    d = tmp_path / "all" / "train_speech"
    assert list(read_kv(d / "utt2spk")) == light.ids("small", "medium")
    assert "2000-some_book_abridged_-01_chapter_64kb" in read_kv(d / "wav.scp")
    assert read_kv(d / "utt2dur") == {u.utt: u.duration for s in ("small", "medium") for u in light.utts[s]}
    validate_data_dir(d, need_text=False)
    prepare_librispeech(fake.root, options(tmp_path / "small", lm_text=lm_text[0], librilight=light.root,
                                           librilight_subsets=["small"]))
    assert list(read_kv(tmp_path / "small" / "train_speech" / "utt2spk")) == light.ids("small")
    with pytest.raises(CorpusError, match="Libri-Light subset 'large' not found"):
        prepare_librispeech(fake.root, options(tmp_path / "x", lm_text=lm_text[0], librilight=light.root,
                                               librilight_subsets=["large"]))


def test_missing_extra_eval_subset_is_skipped_with_a_warning(tmp_path, caplog):
    layout = {"train-clean-100": {"19": {"198": 4}}, "train-clean-360": {"14": {"208": 2}},
              "dev-clean": {"84": {"121123": 2}}, "test-clean": {"61": {"70968": 2}}}
    small = make_librispeech(tmp_path / "LibriSpeech", layout)
    made = prepare_librispeech(small.root, options(tmp_path / "data", train_subsets=["train-clean-100"]))
    assert [name for name, _ in made] == ["dev", "test", "train_paired_100pct", "train_paired_10pct",
                                          "train_paired_1pct", "train_speech", "train_text"]
    assert "no dev-other subset" in caplog.text


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_root():
    with pytest.raises(CorpusError, match=r"LibriSpeech directory /no/such/LibriSpeech does not exist \(check "
                                          r"LIBRISPEECH in db.sh"):
        prepare_librispeech("/no/such/LibriSpeech", options(Path("unused")))
    with pytest.raises(CorpusError, match="no LibriSpeech directory given"):
        check_root("", "LibriSpeech", "LIBRISPEECH in db.sh")


def test_missing_subset_names_it_and_spots_a_root_one_level_up(fake, tmp_path):
    with pytest.raises(CorpusError, match=r"LibriSpeech subset 'train-clean-50' not found: .*train-clean-50 does "
                                          "not exist"):
        prepare_librispeech(fake.root, options(tmp_path, train_subsets=["train-clean-50"]))
    with pytest.raises(CorpusError, match=r"point the LibriSpeech root at .*/LibriSpeech"):
        scan_librispeech_subset(fake.root.parent, "dev-clean")


def small_tree(tmp_path: Path) -> FakeCorpus:
    return make_librispeech(tmp_path / "LibriSpeech", {"dev-clean": {"84": {"121123": 3}, "174": {"50561": 2}}})


def test_flac_without_transcript_line(tmp_path, caplog):
    fake = small_tree(tmp_path)
    trans = librispeech_transcript(fake, "84-121123-0001", "dev-clean")
    trans.write_text("".join(l + "\n" for l in read_lines(trans) if not l.startswith("84-121123-0001")))
    with pytest.raises(CorpusError, match=r"1 flac files have no transcript line: .*84-121123-0001.flac.*"
                                          "--skip_unmatched true"):
        scan_librispeech_subset(fake.root, "dev-clean")
    utts = scan_librispeech_subset(fake.root, "dev-clean", skip_unmatched=True)
    assert [u.utt for u in utts] == ["174-50561-0000", "174-50561-0001", "84-121123-0000", "84-121123-0002"]
    assert "left out" in caplog.text


def test_missing_transcript_file(tmp_path):
    fake = small_tree(tmp_path)
    librispeech_transcript(fake, "174-50561-0000", "dev-clean").unlink()
    with pytest.raises(CorpusError, match=r"2 flac files have no transcript line: .*174-50561-0000.flac \(no "
                                          r"174-50561.trans.txt\)"):
        scan_librispeech_subset(fake.root, "dev-clean")


def test_transcript_line_without_flac(tmp_path):
    fake = small_tree(tmp_path)
    (fake.root / "dev-clean/84/121123/84-121123-0002.flac").unlink()
    with pytest.raises(CorpusError, match=r"1 transcript lines have no flac file: .*84-121123.trans.txt:3 "
                                          r"\(84-121123-0002\)"):
        scan_librispeech_subset(fake.root, "dev-clean")


def test_bad_utf8_transcript_names_file_and_line(tmp_path):
    fake = small_tree(tmp_path)
    trans = librispeech_transcript(fake, "84-121123-0000", "dev-clean")
    lines = trans.read_bytes().split(b"\n")
    lines[1] = b"84-121123-0001 CAF\xe9 AU LAIT"
    trans.write_bytes(b"\n".join(lines))
    with pytest.raises(CorpusError, match=r"84-121123.trans.txt:2: not valid UTF-8"):
        scan_librispeech_subset(fake.root, "dev-clean")


def test_empty_transcript_and_foreign_id(tmp_path):
    fake = small_tree(tmp_path)
    trans = librispeech_transcript(fake, "84-121123-0000", "dev-clean")
    original = read_lines(trans)
    trans.write_text("\n".join([original[0], "84-121123-0001   ", original[2]]) + "\n")
    with pytest.raises(CorpusError, match=r"84-121123.trans.txt:2: utterance '84-121123-0001' has an empty "
                                          "transcript"):
        scan_librispeech_subset(fake.root, "dev-clean")
    trans.write_text("\n".join(original + ["85-121123-0009 WRONG DIRECTORY"]) + "\n")
    with pytest.raises(CorpusError, match=r"trans.txt:4: utterance id '85-121123-0009' does not start with "
                                          "'84-121123-'"):
        scan_librispeech_subset(fake.root, "dev-clean")


def test_gzipped_lm_text(fake, lm_text, tmp_path):
    gz = tmp_path / "librispeech-lm-norm.txt.gz"
    gz.write_bytes(gzip.compress(lm_text[0].read_bytes()))
    prepare_librispeech(fake.root, options(tmp_path / "plain", lm_text=lm_text[0], max_text_sentences=9))
    prepare_librispeech(fake.root, options(tmp_path / "gz", lm_text=gz, max_text_sentences=9))
    assert (tmp_path / "gz" / "train_text" / "text").read_text() == \
        (tmp_path / "plain" / "train_text" / "text").read_text()


def test_bad_utf8_lm_text_names_file_and_line(fake, tmp_path):
    lm = tmp_path / "lm.txt"
    lm.write_bytes(b"ONE GOOD LINE\nANOTHER ONE\nBAD \xff BYTE\n")
    with pytest.raises(CorpusError, match=r"lm.txt:3: not valid UTF-8"):
        prepare_librispeech(fake.root, options(tmp_path / "data", lm_text=lm))


def test_unreadable_audio_names_the_utterance(tmp_path):
    fake = small_tree(tmp_path)
    (fake.root / "dev-clean/84/121123/84-121123-0001.flac").write_bytes(b"not a flac")
    layout_opts = options(tmp_path / "data", train_subsets=["dev-clean"], eval_subsets={"dev": "dev-clean"},
                          extra_eval_subsets={}, text_subsets=["dev-clean"])
    with pytest.raises(CorpusError, match=r"1 recordings cannot be read: utterance '84-121123-0001'"):
        prepare_librispeech(fake.root, layout_opts)


# ---------------------------------------------------------------------------------------------------- pieces


def test_speaker_genders(tmp_path):
    (tmp_path / "SPEAKERS.TXT").write_text(
        "; comment\n;ID  |SEX| SUBSET           |MINUTES| NAME\n"
        "14   | F | train-clean-360  | 25.03 | Kristin LeMoine\n"
        "60   | M | train-clean-100  | 20.18 | |CBW|Simon\n", encoding="utf-8")
    assert read_speaker_genders(tmp_path) == {"14": "f", "60": "m"}
    assert read_speaker_genders(tmp_path / "nowhere") == {}


def test_no_speakers_file_means_no_utt2gender(tmp_path):
    fake = make_librispeech(tmp_path / "LibriSpeech", {"dev-clean": {"84": {"121123": 2}},
                                                       "test-clean": {"61": {"70968": 2}},
                                                       "train-clean-100": {"19": {"198": 2}},
                                                       "train-clean-360": {"14": {"208": 2}}},
                            speakers_file=False)
    prepare_librispeech(fake.root, options(tmp_path / "data", train_subsets=["train-clean-100"]))
    assert not (tmp_path / "data" / "dev" / "utt2gender").exists()
    validate_data_dir(tmp_path / "data" / "dev")


def test_leakage_key_ignores_case_spacing_and_punctuation():
    assert leakage_key("  Hello,  world! ") == leakage_key("HELLO WORLD")
    assert leakage_key("\"Don't,\" she said.") == leakage_key("DON'T SHE SAID")
    assert leakage_key("HELLO WORLD") != leakage_key("HELLO WORD")


def test_sample_in_order():
    items = list(range(1000))
    sample = sample_in_order(items, 50, seed=3)
    assert len(sample) == 50 and sample == sorted(sample) and len(set(sample)) == 50
    assert sample == sample_in_order(iter(items), 50, seed=3)
    assert sample != sample_in_order(items, 50, seed=4)
    assert sample_in_order(range(7), 10, seed=0) == list(range(7))
    assert sample_in_order(range(10), 10, seed=0) == list(range(10))
    # roughly uniform: each of 20 items is drawn about a quarter of the time when sampling 5
    counts = [0] * 20
    for seed in range(2000):
        for i in sample_in_order(range(20), 5, seed):
            counts[i] += 1
    assert all(abs(c / 2000 - 0.25) < 0.05 for c in counts), counts


def test_scan_speed_uses_no_audio_reads(tmp_path, monkeypatch):
    """Scanning only lists directories and reads transcripts; the audio is opened only for utt2dur."""
    fake = small_tree(tmp_path)
    import soundfile

    monkeypatch.setattr(soundfile, "info", lambda *a, **k: (_ for _ in ()).throw(AssertionError("audio read")))
    assert len(scan_librispeech_subset(fake.root, "dev-clean")) == 5


def test_durations_with_a_process_pool(tmp_path):
    from zipper.corpora.librispeech import Utterance, read_durations
    from fake_corpora import write_tone

    utts = []
    for i in range(1000):
        path = tmp_path / f"{i}.wav"
        if i < 3:
            write_tone(path, 160 * (i + 1), 16000)
        utts.append(Utterance(f"u{i:04d}", "u", str(tmp_path / f"{i % 3}.wav")))
    durations = read_durations(utts, nj=2)
    assert durations["u0000"] == (16000, 160) and durations["u0997"] == (16000, 320)
    assert len(durations) == 1000
