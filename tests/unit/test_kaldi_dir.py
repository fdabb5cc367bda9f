"""zipper.data.kaldi_dir: the Kaldi data-dir contract, and fixing, splitting and filtering as Kaldi's tools do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from zipper.data.kaldi_dir import (
    DataDirError, check_sorted_unique, filter_lines, fix_data_dir, read_entries, read_kv, spk2utt_from_utt2spk,
    split_lines, validate_data_dir, write_kv,
)


def write_dir(d: Path, files: dict[str, str | bytes]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            (d / name).write_text(content, encoding="utf-8")
    return d


def tiny_wav(path: Path, rate: int = 16000, seconds: float = 0.05) -> Path:
    soundfile.write(path, np.zeros(int(rate * seconds), dtype=np.float32), rate)
    return path


def good_files(wav_dir: Path | None = None) -> dict[str, str]:
    """Two speakers, three utterances; wav.scp points at real wavs when `wav_dir` is given."""
    wav = {u: f"{wav_dir}/{u}.wav" if wav_dir else f"/corpus/{u}.flac"
           for u in ("spk1-u1", "spk1-u2", "spk2-u1")}
    return {
        "utt2spk": "spk1-u1 spk1\nspk1-u2 spk1\nspk2-u1 spk2\n",
        "spk2utt": "spk1 spk1-u1 spk1-u2\nspk2 spk2-u1\n",
        "text": "spk1-u1 HELLO WORLD\nspk1-u2 GOOD MORNING\nspk2-u1 BYE\n",
        "wav.scp": "".join(f"{u} {p}\n" for u, p in wav.items()),
    }


def problems_of(data_dir: Path, **kwargs) -> list[str]:
    with pytest.raises(DataDirError) as excinfo:
        validate_data_dir(data_dir, **kwargs)
    return excinfo.value.problems


# --- reading and writing -------------------------------------------------------------------------------------

def test_read_entries_fields(tmp_path: Path):
    path = tmp_path / "text"
    path.write_text("a  x  y \r\nb\tone\u00a0word\nc\u00a0d v\n", encoding="utf-8")
    entries = read_entries(path)
    assert [(e.lineno, e.key, e.value) for e in entries] == [
        (1, "a", "x  y"),  # inner spacing of the value is kept, the ends and '\r' are not
        (2, "b", "one\u00a0word"),  # a no-break space is not a field separator
        (3, "c\u00a0d", "v"),
    ]


def test_read_entries_reports_every_bad_line(tmp_path: Path):
    path = tmp_path / "wav.scp"
    path.write_bytes(b"a /x.wav\n\nb\nc /\xff.wav\nd /d.wav")  # no final newline: still a line
    with pytest.raises(DataDirError) as excinfo:
        read_entries(path)
    assert excinfo.value.problems == [
        f"{path}:2: empty line",
        f"{path}:3: 'b' has no value",
        f"{path}:4: not valid UTF-8 (invalid start byte at byte 4 of the line)",
    ]
    with pytest.raises(DataDirError) as excinfo:  # bad UTF-8 is never skipped
        read_entries(path, allow_empty_value=True, skip_empty_lines=True)
    assert excinfo.value.problems == [f"{path}:4: not valid UTF-8 (invalid start byte at byte 4 of the line)"]
    path.write_bytes(b"a /x.wav\n\nb\n")
    assert [(e.lineno, e.key, e.value) for e in read_entries(path, allow_empty_value=True, skip_empty_lines=True)] \
        == [(1, "a", "/x.wav"), (3, "b", "")]
    with pytest.raises(DataDirError, match=f"{tmp_path / 'nope'}: no such file"):
        read_entries(tmp_path / "nope")


def test_read_kv_duplicates(tmp_path: Path):
    path = write_dir(tmp_path, {"utt2spk": "a s\nb s\na t\n"}) / "utt2spk"
    with pytest.raises(DataDirError) as excinfo:
        read_kv(path)
    assert str(excinfo.value) == f"{path}:3: duplicate key 'a' (first on line 1)"
    assert read_kv(write_dir(tmp_path, {"x": "k v w\n"}) / "x") == {"k": "v w"}


def test_write_kv_sorts_in_c_locale_order(tmp_path: Path):
    write_kv(tmp_path / "f", {"b": "1", "a_1": "2", "B": "3", "a-1": "4", "é": "5"})
    assert (tmp_path / "f").read_text(encoding="utf-8") == "B 3\na-1 4\na_1 2\nb 1\né 5\n"


def test_spk2utt_from_utt2spk():
    assert spk2utt_from_utt2spk({"s2-a": "s2", "s1-b": "s1", "s1-a": "s1"}) == {"s1": "s1-a s1-b", "s2": "s2-a"}


def test_check_sorted_unique(tmp_path: Path):
    path = write_dir(tmp_path, {"f": "b 1\na 2\nc 3\nc 4\n"}) / "f"
    assert check_sorted_unique(path, read_entries(path)) == [
        f"{path}:2: 'a' comes after 'b' (line 1); the file must be sorted in C-locale order (LC_ALL=C sort)",
        f"{path}:4: duplicate key 'c' (first on line 3)",
    ]


# --- validation ----------------------------------------------------------------------------------------------

def test_validate_good_dir(tmp_path: Path):
    d = write_dir(tmp_path / "data", good_files())
    assert validate_data_dir(d) == 3
    (d / "text").unlink()
    assert validate_data_dir(d, need_text=False) == 3


def test_validate_missing_dir_and_files(tmp_path: Path):
    assert problems_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: data directory does not exist"]
    files = good_files()
    del files["text"], files["spk2utt"]
    d = write_dir(tmp_path / "data", files)
    assert problems_of(d) == [f"{d / 'spk2utt'}: required file is missing", f"{d / 'text'}: required file is missing"]
    write_dir(d, {"spk2utt": good_files()["spk2utt"], "segments": "x r 0 1\n"})
    assert problems_of(d, need_text=False) == [
        f"{d / 'segments'}: segments files are not supported; give one recording per utterance"]


def test_validate_line_problems(tmp_path: Path):
    files = good_files()
    files["text"] = b"spk1-u1 HELLO\nspk1-u2 CAF\xe9\nspk2-u1 BYE\n"  # latin-1, not UTF-8
    files["utt2spk"] = "spk1-u1 spk1\n\nspk1-u2 spk1\nspk2-u1 spk2\n"
    files["wav.scp"] = "spk1-u1 /a.wav\nspk2-u1 /c.wav\nspk1-u2 /b.wav\nspk2-u1 /c.wav\n"
    d = write_dir(tmp_path / "data", files)
    assert problems_of(d) == [
        f"{d / 'utt2spk'}:2: empty line",
        f"{d / 'wav.scp'}:3: 'spk1-u2' comes after 'spk2-u1' (line 2); the file must be sorted in C-locale order "
        "(LC_ALL=C sort)",
        f"{d / 'wav.scp'}:4: duplicate key 'spk2-u1' (first on line 2)",
        f"{d / 'text'}:2: not valid UTF-8 (unexpected end of data at byte 12 of the line)",
    ]


def test_validate_speaker_prefix(tmp_path: Path):
    files = good_files()
    files["utt2spk"] = "spk1-u1 spk1\nspk1-u2 spk1\nspk2-u1 spk3\n"
    files["spk2utt"] = "spk1 spk1-u1 spk1-u2\nspk3 spk2-u1\n"
    d = write_dir(tmp_path / "data", files)
    assert problems_of(d) == [f"{d / 'utt2spk'}:3: utterance id 'spk2-u1' does not start with its speaker id 'spk3' "
                              "(Kaldi sorting needs the speaker prefix)"]


def test_validate_sort_consistency_libritts_ids(tmp_path: Path):
    """'19_198_...' (speaker 19) sorts after '190_...' (speaker 190) since '0' < '_': Kaldi refuses this."""
    utts = {"19_198_000000_000000": "19", "190_1_000001_000000": "190", "191_2_000000_000001": "191"}
    files = {"utt2spk": "".join(f"{u} {s}\n" for u, s in sorted(utts.items())),
             "spk2utt": "".join(f"{s} {u}\n" for u, s in sorted(utts.items(), key=lambda kv: kv[1]))}
    d = write_dir(tmp_path / "bad", files)
    problems = problems_of(d, need_text=False, need_wav=False)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{d / 'utt2spk'}:3: utterance '19_198_000000_000000' (speaker '19') sorts after '191_2_000000_000001' "
        "(speaker '191', line 2) but its speaker sorts before;")
    assert "'-'" in problems[0] and "19-198-x" in problems[0]
    dashed = {u.replace("_", "-"): s for u, s in utts.items()}
    d = write_dir(tmp_path / "good", {
        "utt2spk": "".join(f"{u} {s}\n" for u, s in sorted(dashed.items())),
        "spk2utt": "".join(f"{s} {u}\n" for u, s in sorted(dashed.items()))})
    assert validate_data_dir(d, need_text=False, need_wav=False) == 3


def test_validate_spk2utt_mismatch(tmp_path: Path):
    files = good_files()
    files["spk2utt"] = "spk1 spk1-u1\nspk3 spk2-u1\n"
    d = write_dir(tmp_path / "data", files)
    p = d / "spk2utt"
    assert problems_of(d) == [
        f"{p}:1: speaker 'spk1' lacks 'spk1-u2' which utt2spk gives it",
        f"{p}:2: speaker 'spk3' has no utterance in utt2spk",
        f"{p}: speaker 'spk2' (utterance 'spk2-u1', utt2spk line 3) is missing",
        f"{p}: regenerate it from utt2spk (utils/fix_data_dir.sh)",
    ]
    write_dir(d, {"spk2utt": "spk1 spk1-u2 spk1-u1\nspk2 spk2-u1 spk1-u1\n"})
    assert problems_of(d) == [
        f"{p}:1: speaker 'spk1': its utterances are repeated or not in sorted order",
        f"{p}:2: speaker 'spk2' lists 'spk1-u1' which utt2spk does not give it",
        f"{p}: regenerate it from utt2spk (utils/fix_data_dir.sh)",
    ]
    write_dir(d, {"spk2utt": "spk1 spk1-u1\tspk1-u2\nspk2  spk2-u1\n"})  # any blanks between ids are fine
    assert validate_data_dir(d) == 3


def test_validate_key_sets_and_values(tmp_path: Path):
    files = good_files()
    files["text"] = "spk1-u1 HELLO\nspk1-u2\nspk2-u1 BYE\n"
    files["wav.scp"] = "spk1-u1 /a.wav\nspk1-u2 /b.wav\nspk3-u9 /z.wav\n"
    files["utt2dur"] = "spk1-u1 1.5\nspk1-u2 abc\nspk2-u1 0\n"
    files["utt2num_samples"] = "spk1-u1 16000\nspk1-u2 1.5\nspk2-u1 8000\n"
    d = write_dir(tmp_path / "data", files)
    assert problems_of(d) == [
        f"{d / 'wav.scp'}: utterance 'spk2-u1' (utt2spk line 3) is missing",
        f"{d / 'wav.scp'}:3: utterance 'spk3-u9' is not in utt2spk",
        f"{d / 'text'}:2: utterance 'spk1-u2' has an empty transcript",
        f"{d / 'utt2dur'}:2: utterance 'spk1-u2': 'abc' is not a positive number",
        f"{d / 'utt2dur'}:3: utterance 'spk2-u1': '0' is not a positive number",
        f"{d / 'utt2num_samples'}:2: utterance 'spk1-u2': '1.5' is not a positive integer",
    ]


def test_validate_empty_dir_files(tmp_path: Path):
    d = write_dir(tmp_path / "data", {"utt2spk": "", "spk2utt": ""})
    assert problems_of(d, need_text=False, need_wav=False) == [f"{d / 'utt2spk'}: no utterances"]


def test_validate_many_problems_are_capped(tmp_path: Path):
    d = write_dir(tmp_path / "data", {"utt2spk": "".join(f"u{i:02d} x\n" for i in range(30)),
                                      "spk2utt": "x " + " ".join(f"u{i:02d}" for i in range(30)) + "\n"})
    with pytest.raises(DataDirError) as excinfo:
        validate_data_dir(d, need_text=False, need_wav=False)
    assert len(excinfo.value.problems) == 30
    assert str(excinfo.value).endswith("\n... and 10 more problems")
    assert len(str(excinfo.value).splitlines()) == 21


def test_validate_check_audio(tmp_path: Path):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for utt in ("spk1-u1", "spk1-u2"):
        tiny_wav(wavs / f"{utt}.wav")
    tiny_wav(wavs / "spk2-u1.wav", rate=8000)
    d = write_dir(tmp_path / "data", good_files(wavs))
    assert validate_data_dir(d, check_audio=True) == 3  # any rate when none is asked for
    assert problems_of(d, check_audio=True, fs=16000) == [
        f"{d / 'wav.scp'}:3: utterance 'spk2-u1' has sample rate 8000 Hz, expected 16000 Hz"]
    (wavs / "spk1-u2.wav").unlink()
    (wavs / "spk2-u1.wav").write_bytes(b"RIFF not really")
    problems = problems_of(d, check_audio=True, fs=16000)
    assert len(problems) == 2
    assert problems[0].startswith(f"{d / 'wav.scp'}:2: utterance 'spk1-u2': cannot read audio '{wavs}/spk1-u2.wav'")
    assert problems[1].startswith(f"{d / 'wav.scp'}:3: utterance 'spk2-u1': cannot read audio")
    assert validate_data_dir(d, check_audio=False) == 3  # the files are only opened when asked
    # a Kaldi pipe is run
    write_dir(d, {"wav.scp": f"spk1-u1 cat {wavs}/spk1-u1.wav |\nspk1-u2 {wavs}/spk1-u1.wav\n"
                             f"spk2-u1 false |\n"})
    problems = problems_of(d, check_audio=True, fs=16000)
    assert len(problems) == 1
    assert problems[0].startswith(f"{d / 'wav.scp'}:3: utterance 'spk2-u1': command 'false ' failed (1)")


# --- fixing --------------------------------------------------------------------------------------------------

MESSY = {
    # unsorted, a blank line, an exact repeat, an utterance without text, one without audio
    "utt2spk": "spk2-u1 spk2\nspk1-u2 spk1\n\nspk1-u1 spk1\nspk1-u1 spk1\nspk3-u1 spk3\nspk4-u1 spk4\n",
    "spk2utt": "spk1 spk1-u1\n",  # stale
    "text": "spk1-u1 HELLO\nspk1-u2   \nspk2-u1 BYE  NOW\nspk3-u1 HI\n",  # spk1-u2: empty transcript
    "wav.scp": "spk1-u1 /a.wav\nspk1-u2 /b.wav\nspk2-u1 sox /c.flac -t wav - |\nspk4-u1 /d.wav\nspk9-u1 /z.wav\n",
    "spk2gender": "spk1 f\nspk2 m\nspk4 m\n",
    "notes.txt": "not a Kaldi file\n",
}


def test_fix_data_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    d = write_dir(tmp_path / "data", MESSY)
    caplog.set_level("INFO")
    assert fix_data_dir(d) == (2, 4)  # removed: spk1-u2, spk4-u1 (no text), spk3-u1 (no wav), spk9-u1 (only in wav.scp)
    assert (d / "utt2spk").read_text() == "spk1-u1 spk1\nspk2-u1 spk2\n"
    assert (d / "spk2utt").read_text() == "spk1 spk1-u1\nspk2 spk2-u1\n"
    assert (d / "text").read_text() == "spk1-u1 HELLO\nspk2-u1 BYE  NOW\n"
    assert (d / "wav.scp").read_text() == "spk1-u1 /a.wav\nspk2-u1 sox /c.flac -t wav - |\n"
    assert (d / "spk2gender").read_text() == "spk1 f\nspk2 m\n"
    assert (d / "notes.txt").read_text() == MESSY["notes.txt"]
    for name in ("utt2spk", "spk2utt", "text", "wav.scp", "spk2gender"):
        assert (d / ".backup" / name).read_text() == MESSY[name]
    assert not (d / ".backup" / "notes.txt").exists()
    assert validate_data_dir(d) == 2
    log = caplog.text
    assert f"{d / 'text'}: 2 utterances have no (or an empty) entry here, e.g. 'spk1-u2'" in log
    assert f"{d / 'wav.scp'}: 1 utterances have no (or an empty) entry here, e.g. 'spk3-u1'" in log
    assert "left as they are (not files fix_data_dir knows): notes.txt" in log

    # fixing again changes nothing, and the first backups are not lost
    assert fix_data_dir(d) == (2, 0)
    assert (d / "text").read_text() == "spk1-u1 HELLO\nspk2-u1 BYE  NOW\n"
    assert (d / ".backup" / "text").read_text() == "spk1-u1 HELLO\nspk2-u1 BYE  NOW\n"
    assert (d / ".backup" / "text.~1~").read_text() == MESSY["text"]
    assert (d / ".backup" / "wav.scp.~1~").read_text() == MESSY["wav.scp"]
    assert fix_data_dir(d) == (2, 0)
    assert not (d / ".backup" / "text.~2~").exists()  # an identical backup is not repeated


def unchanged(d: Path, files: dict[str, str | bytes]) -> bool:
    return all((d / n).read_bytes() == (c if isinstance(c, bytes) else c.encode()) for n, c in files.items()) \
        and not (d / ".backup").exists()


@pytest.mark.parametrize("change, expected", [
    ({"text": b"spk1-u1 HELLO\nspk1-u2 CAF\xc3\nspk2-u1 BYE\n"}, "text:2: not valid UTF-8"),
    ({"wav.scp": "spk1-u1 /a.wav\nspk1-u1 /other.wav\nspk1-u2 /b.wav\nspk2-u1 /c.wav\n"},
     "wav.scp:2: 'spk1-u1' is repeated with a different value than on line 1; keep the right one by hand"),
    ({"utt2spk": "spk1-u1 spk1\nspk1-u2 spk1\nspk2-u1 spk1 spk2\n"},
     "utt2spk: utterance 'spk2-u1' has more than one speaker ('spk1 spk2')"),
    ({"utt2spk": "spk1-u1 spk1\nspk1-u2 spk1\nspk2-u1 bob\n"},
     "utterance id 'spk2-u1' does not start with its speaker id 'bob'; rename the utterances (fixing cannot)"),
    ({"utt2spk": "spk1-u1 spk\nspk1-u2 spk\nspk2-u1 spk\n", "text": "spk1-u1 A\nspk1-u2 B\nspk2-u1 C\n"}, None),
    ({"text": "x-u1 HELLO\n"}, "no utterance is in every file (wav.scp, text, utt2spk); nothing was changed"),
])
def test_fix_data_dir_refuses_to_guess(tmp_path: Path, change, expected):
    files = {**good_files(), **change}
    d = write_dir(tmp_path / "data", files)
    if expected is None:  # a valid (if odd) speaker prefix: fixed, not refused
        assert fix_data_dir(d) == (3, 0)
        return
    with pytest.raises(DataDirError) as excinfo:
        fix_data_dir(d)
    assert expected in str(excinfo.value)
    assert unchanged(d, files)


def test_fix_data_dir_refuses_speaker_order_it_cannot_fix(tmp_path: Path):
    files = {"utt2spk": "19_198_a 19\n190_1_a 190\n", "text": "19_198_a A\n190_1_a B\n"}
    d = write_dir(tmp_path / "data", files)
    with pytest.raises(DataDirError, match="utterance '19_198_a' \\(speaker '19'\\) sorts after '190_1_a'"):
        fix_data_dir(d)
    assert unchanged(d, files)


def test_fix_data_dir_missing(tmp_path: Path):
    with pytest.raises(DataDirError, match="data directory does not exist"):
        fix_data_dir(tmp_path / "nope")
    d = write_dir(tmp_path / "data", {"text": "a b\n"})
    with pytest.raises(DataDirError, match=f"{d / 'utt2spk'}: required file is missing"):
        fix_data_dir(d)


# --- splitting and filtering ---------------------------------------------------------------------------------

def test_split_lines_even():
    lines = [f"u{i} v{i}" for i in range(10)]
    parts = split_lines(lines, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sum(parts, []) == lines
    assert split_lines(lines[:2], 2) == [["u0 v0"], ["u1 v1"]]
    with pytest.raises(ValueError, match="in.scp: cannot split 2 lines into 3 non-empty parts"):
        split_lines(lines[:2], 3, source="in.scp")
    with pytest.raises(ValueError, match="cannot split into 0 parts"):
        split_lines(lines, 0)


def by_speaker(sizes: list[int]) -> tuple[list[str], dict[str, str]]:
    lines, utt2spk = [], {}
    for s, size in enumerate(sizes):
        for u in range(size):
            utt = f"s{s}-{u}"
            lines.append(f"{utt} /w/{utt}.wav")
            utt2spk[utt] = f"s{s}"
    return lines, utt2spk


@pytest.mark.parametrize("sizes, n, expected", [
    ([3, 1, 1, 3, 2], 2, [5, 5]),
    ([1, 1, 8], 3, [1, 1, 8]),  # every part needs a speaker
    ([8, 1, 1], 2, [8, 2]),
    ([2, 2, 2, 2, 2, 2], 4, [4, 2, 4, 2]),
    ([1] * 10, 3, [3, 4, 3]),
])
def test_split_lines_keeps_speakers_together(sizes, n, expected):
    lines, utt2spk = by_speaker(sizes)
    parts = split_lines(lines, n, utt2spk)
    assert [len(p) for p in parts] == expected
    assert sum(parts, []) == lines
    speakers = [{utt2spk[line.split()[0]] for line in part} for part in parts]
    assert all(not (a & b) for i, a in enumerate(speakers) for b in speakers[i + 1:])


def test_split_lines_by_speaker_errors():
    lines, utt2spk = by_speaker([2, 2])
    with pytest.raises(ValueError, match="x.scp: cannot split 2 speakers into 3 parts"):
        split_lines(lines, 3, utt2spk, source="x.scp")
    with pytest.raises(ValueError, match="x.scp:3: utterance 'zz' is not in utt2spk"):
        split_lines(lines[:2] + ["zz /w.wav"], 2, utt2spk, source="x.scp")
    with pytest.raises(ValueError, match="x.scp:3: utterance 's0-1' of speaker 's0' is not next to"):
        split_lines([lines[0], lines[2], lines[1], lines[3]], 2, utt2spk, source="x.scp")
    with pytest.raises(ValueError, match="x.scp:2: empty line"):
        split_lines([lines[0], "  "], 2, utt2spk, source="x.scp")


def test_filter_lines():
    lines = ["a 1 x", "b 2 y", "", "c 3 x"]
    assert filter_lines(lines, {"a", "c", "zz"}) == ["a 1 x", "c 3 x"]
    assert filter_lines(lines, {"a", "c"}, exclude=True) == ["b 2 y"]
    assert filter_lines(lines, {"x"}, field=2) == ["a 1 x", "c 3 x"]
    assert filter_lines(["k a\u00a0b"], {"a\u00a0b"}, field=1) == ["k a\u00a0b"]
    with pytest.raises(ValueError, match="in.scp:2: has 2 fields, field 3 is needed"):
        filter_lines(["a 1 x", "b 2"], {"x"}, field=2, source="in.scp")
