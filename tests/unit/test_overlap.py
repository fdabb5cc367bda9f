"""zipper.data.overlap: training and evaluation sets share no utterance id, recording or audio content."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fake_corpora import make_librispeech
from zipper.bin import validate_data_dir as validate_cli
from zipper.data import overlap
from zipper.data.kaldi_dir import spk2utt_from_utt2spk, validate_data_dir, write_kv
from zipper.data.overlap import OverlapError, check_disjoint, find_overlaps, recording_key


def data_dir(d: Path, wavs: dict[str, str]) -> Path:
    """A paired data dir over {utt: wav.scp value}; speakers are the id's first field."""
    utt2spk = {u: u.split("-")[0] for u in wavs}
    write_kv(d / "wav.scp", wavs)
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    write_kv(d / "text", {u: "hello" for u in wavs})
    return d


@pytest.fixture()
def tree(tmp_path):
    fake = make_librispeech(tmp_path / "LibriSpeech", {"train-clean-100": {"19": {"198": 3}},
                                                       "dev-clean": {"84": {"121123": 2}}})
    train = data_dir(tmp_path / "data" / "train_paired_100pct",
                     {u.utt: str(u.audio) for u in fake.utts["train-clean-100"]})
    dev = data_dir(tmp_path / "data" / "dev", {u.utt: str(u.audio) for u in fake.utts["dev-clean"]})
    return fake, train, dev


def test_disjoint_sets_pass_and_criteria_are_separate(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"RIFF-one")
    b.write_bytes(b"RIFF-two")  # same size, other bytes
    assert find_overlaps({"train": {"s1-1": str(a)}}, {"dev": {"s2-1": str(b)}}) == []
    # the same id, and the same file spelt another way (./x/../a.wav), are reported, not as content as well
    spelt = os.path.join(str(tmp_path), "x", "..", "a.wav")
    found = find_overlaps({"train": {"s1-1": str(a)}}, {"dev": {"s1-1": spelt}})
    assert [(o.kind, o.pairs) for o in found] == [("utterance id", [("s1-1", "s1-1")]),
                                                  ("recording", [("s1-1", "s1-1")])]
    # a symlink is the same recording; a copy is the same content
    (tmp_path / "link.wav").symlink_to(a)
    shutil.copy(a, tmp_path / "copy.wav")
    found = find_overlaps({"train": {"s1-1": str(a), "s1-2": str(b)}},
                          {"dev": {"s2-1": str(tmp_path / "link.wav"), "s2-2": str(tmp_path / "copy.wav")}})
    assert [(o.kind, o.pairs) for o in found] == [("recording", [("s1-1", "s2-1")]),
                                                  ("audio content", [("s1-1", "s2-2")])]
    assert "share 1 identical audio file: 's1-1' = 's2-2'" in found[1].describe()


def test_pipes_are_compared_as_commands_and_never_run_or_hashed(tmp_path, monkeypatch):
    monkeypatch.setattr(overlap, "file_digest", lambda path, limit=None: pytest.fail(f"hashed {path}"))
    assert recording_key("sox  a.flac -t wav - |") == recording_key("sox a.flac -t wav -  |")
    found = find_overlaps({"train": {"s1-1": "sox a.flac -t wav - |"}}, {"dev": {"s2-1": "sox  a.flac -t wav - |"}})
    assert [(o.kind, o.pairs) for o in found] == [("recording", [("s1-1", "s2-1")])]


def test_only_files_of_shared_sizes_are_read_and_only_equal_heads_in_full(tmp_path, monkeypatch):
    train, dev = {}, {}
    for i in range(200):
        (tmp_path / f"t{i}.wav").write_bytes(b"t" * (10 + i))
        train[f"a-{i:03d}"] = str(tmp_path / f"t{i}.wav")
    for i in range(3):
        (tmp_path / f"d{i}.wav").write_bytes(b"d" * (1000 + i))
        dev[f"b-{i:03d}"] = str(tmp_path / f"d{i}.wav")
    (tmp_path / "d8.wav").write_bytes(b"x" * 16)  # the size of t6.wav, other bytes
    (tmp_path / "d9.wav").write_bytes(b"t" * 15)  # the size and bytes of t5.wav
    dev["b-008"], dev["b-009"] = str(tmp_path / "d8.wav"), str(tmp_path / "d9.wav")
    reads = []
    real = overlap.file_digest
    monkeypatch.setattr(overlap, "file_digest",
                        lambda path, limit=None: reads.append((Path(path).name, limit)) or real(path, limit))
    found = find_overlaps({"train": train}, {"dev": dev})
    head = overlap.HEAD_BYTES
    assert len(reads) == 6 and set(reads) == {("d8.wav", head), ("t6.wav", head),  # sizes match, heads differ
                                              ("d9.wav", head), ("t5.wav", head), ("d9.wav", None), ("t5.wav", None)}
    assert [(o.kind, o.pairs) for o in found] == [("audio content", [("a-005", "b-009")])]
    assert find_overlaps({"train": train}, {"dev": dev}, hash_audio=False) == []


def test_check_disjoint_names_sets_and_offenders(tree, tmp_path):
    fake, train, dev = tree
    assert check_disjoint([train], [dev]) == []
    assert check_disjoint([dev], [dev]) == []  # a set is not compared with itself
    # a speaker directory copied from dev-clean into the training data, and two more utterances renamed
    copied = tmp_path / "LibriSpeech" / "train-clean-100" / "84"
    shutil.copytree(fake.root / "dev-clean" / "84", copied)
    wavs = {u.utt: str(u.audio) for u in fake.utts["train-clean-100"]}
    wavs.update({p.stem: str(p) for p in copied.rglob("*.flac")})
    data_dir(train, wavs)
    with pytest.raises(OverlapError) as err:
        check_disjoint([train], [dev])
    message = str(err.value)
    assert f"training set {train} and evaluation set {dev} share 2 utterance ids: '84-121123-0000', " \
           f"'84-121123-0001'" in message
    assert "share 2 identical audio files: '84-121123-0000', '84-121123-0001'" in message
    assert "--allow_overlap true" in message
    # the opt-out: a warning, and the overlaps are returned
    assert [o.kind for o in check_disjoint([train], [dev], allow_overlap=True)] == ["utterance id", "audio content"]
    # only the content gives a renamed copy away
    data_dir(train, {**{u.utt: str(u.audio) for u in fake.utts["train-clean-100"]},
                     "19-999-0000": str(copied / "121123" / "84-121123-0001.flac")})
    with pytest.raises(OverlapError, match=r"share 1 identical audio file: '19-999-0000' = '84-121123-0001'"):
        check_disjoint([train], [dev])
    assert check_disjoint([train], [dev], hash_audio=False) == []


def test_validate_data_dir_disjoint_from_and_opt_out(tree, tmp_path, capfd):
    fake, train, dev = tree
    assert validate_data_dir(train, disjoint_from=[dev]) == 3
    data_dir(train, {**{u.utt: str(u.audio) for u in fake.utts["train-clean-100"]},
                     "84-121123-0000": str(fake.utts["dev-clean"][0].audio)})
    with pytest.raises(OverlapError, match=f"training set {train} and evaluation set {dev} share 1 utterance id: "
                                           "'84-121123-0000'"):
        validate_cli.main([str(train), "--disjoint_from", str(dev)])
    capfd.readouterr()
    validate_cli.main([str(train), "--disjoint_from", str(dev), "--allow_overlap", "true"])
    log = capfd.readouterr().err
    assert "WARNING" in log and "share 1 recording: '84-121123-0000'" in log and "allowed by --allow_overlap" in log
    validate_cli.main([str(train)])  # no evaluation set named: nothing to compare
