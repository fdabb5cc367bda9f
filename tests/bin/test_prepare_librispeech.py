"""python -m zipper.bin.prepare_librispeech and egs/librispeech/zipper1/local/data.sh on a fake LibriSpeech tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_corpora import librispeech_transcript, make_librilight, make_librispeech, make_lm_text
from zipper.bin import prepare_librispeech
from zipper.corpora.librispeech import CorpusError
from zipper.data.kaldi_dir import read_kv, validate_data_dir
from zipper.data.overlap import OverlapError

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "librispeech" / "zipper1"
SETS = ["dev", "test", "dev_other", "test_other", "train_paired_100pct", "train_paired_10pct", "train_paired_1pct",
        "train_speech", "train_text"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    fake = make_librispeech(root / "LibriSpeech")
    make_lm_text(root / "librispeech-lm-norm.txt", [fake.utts["test-clean"][0].text], extra=20)
    make_librilight(root / "LibriLight")
    return {"LIBRISPEECH": fake.root, "LIBRISPEECH_LM_TEXT": root / "librispeech-lm-norm.txt",
            "LIBRILIGHT": root / "LibriLight"}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def run_bin(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "zipper.bin.prepare_librispeech", *args], cwd)


def data_sh(args: list[str], **roots: Path | str) -> subprocess.CompletedProcess:
    env = {"LIBRISPEECH": "", "LIBRISPEECH_LM_TEXT": "", "LIBRILIGHT": ""}
    env.update({k: str(v) for k, v in roots.items()})
    return run(["bash", "local/data.sh", *args], RECIPE, env)


def test_help_documents_every_option():
    parser = prepare_librispeech.get_parser()
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and action.default is not None, action.dest
    out = run_bin(["--help"], REPO)
    assert out.returncode == 0 and "--max_text_sentences" in out.stdout and "--paired_fractions" in out.stdout


def test_main_writes_every_set_and_prints_them(corpora, tmp_path, capsys):
    prepare_librispeech.main(["--librispeech", str(corpora["LIBRISPEECH"]), "--lm_text",
                              str(corpora["LIBRISPEECH_LM_TEXT"]), "--out_dir", str(tmp_path), "--nj", "1",
                              "--paired_fractions", "1.0 0.5 0.25", "--max_text_sentences", "7"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["dev paired", "test paired", "dev_other paired", "test_other paired",
                     "train_paired_100pct paired", "train_paired_50pct paired", "train_paired_25pct paired",
                     "train_speech speech", "train_text text"]
    assert len(read_kv(tmp_path / "train_paired_50pct" / "utt2spk")) == 14
    assert len(read_kv(tmp_path / "train_text" / "text")) == 7


def test_bad_input_is_one_clear_error(corpora, tmp_path):
    out = run_bin(["--librispeech", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path / "data")], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "ERROR: LibriSpeech directory" in out.stderr and "does not exist" in out.stderr
    out = run_bin(["--out_dir", str(tmp_path / "data")], tmp_path)
    assert out.returncode == 1 and "no LibriSpeech directory given: set LIBRISPEECH in db.sh" in out.stderr

    broken = make_librispeech(tmp_path / "LibriSpeech", {"dev-clean": {"84": {"121123": 2}},
                                                         "test-clean": {"61": {"70968": 2}},
                                                         "train-clean-100": {"19": {"198": 2}}})
    trans = librispeech_transcript(broken, "19-198-0000", "train-clean-100")
    trans.write_bytes(trans.read_bytes() + b"19-198-0002 \xc3\x28 BAD\n")
    out = run_bin(["--librispeech", str(broken.root), "--train_subsets", "train-clean-100", "--text_subsets",
                   "dev-clean", "--out_dir", str(tmp_path / "data")], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{trans}:3: not valid UTF-8" in out.stderr


def test_data_sh_end_to_end_and_rerun_is_a_noop(corpora, tmp_path):
    data = tmp_path / "data"
    out = data_sh(["--data_dir", str(data), "--nj", "2"], **corpora)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in data.iterdir()) == sorted(SETS)
    for name in SETS:
        validate_data_dir(data / name, need_text=name != "train_speech", need_wav=name != "train_text")
        assert f"{data / name} " in out.stdout  # the size table
    assert "Data dirs:" in out.stdout and "sentences" in out.stdout
    assert "Libri-Light" in out.stderr
    first = list(read_kv(data / "train_speech" / "utt2spk"))[0]
    assert first == "100-sea_fairies_0812_librivox_64kb_mp3-01_chapter_64kb"
    assert "ok (" in out.stderr  # validated

    stamps = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    again = data_sh(["--data_dir", str(data), "--nj", "2"], **corpora)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == stamps
    assert again.stderr.count("already prepared") == len(SETS)

    forced = data_sh(["--data_dir", str(data), "--force", "true", "--nj", "1"], **corpora)
    assert forced.returncode == 0, forced.stderr
    assert (data / "dev" / ".done").stat().st_mtime_ns != stamps[data / "dev" / ".done"]


def test_data_sh_without_lm_text_uses_unpaired_transcripts(corpora, tmp_path):
    out = data_sh(["--data_dir", str(tmp_path / "data"), "--train_subsets", "train-clean-100", "--nj", "1"],
                  LIBRISPEECH=corpora["LIBRISPEECH"])
    assert out.returncode == 0, out.stderr
    assert "LIBRISPEECH_LM_TEXT is not set in db.sh" in out.stderr
    assert len(read_kv(tmp_path / "data" / "train_text" / "text")) == 6  # 5 + 3 minus 2 dev/test sentences
    assert len(read_kv(tmp_path / "data" / "train_speech" / "utt2spk")) == 28


def test_data_sh_names_the_db_sh_variable(corpora, tmp_path):
    out = data_sh(["--data_dir", str(tmp_path / "data")])
    assert out.returncode == 1 and "LIBRISPEECH is empty: set it in db.sh" in out.stderr
    out = data_sh(["--data_dir", str(tmp_path / "data")], LIBRISPEECH=tmp_path / "missing")
    assert out.returncode == 1 and "is not a directory: set it in db.sh" in out.stderr
    out = data_sh(["--data_dir", str(tmp_path / "data")], LIBRISPEECH=corpora["LIBRISPEECH"],
                  LIBRISPEECH_LM_TEXT=tmp_path / "lm.txt")
    assert out.returncode == 1 and "LIBRISPEECH_LM_TEXT=" in out.stderr and "set it in db.sh" in out.stderr
    out = data_sh(["--data_dir", str(tmp_path / "data")], LIBRISPEECH=corpora["LIBRISPEECH"])
    assert out.returncode == 1 and "set LIBRISPEECH_LM_TEXT in db.sh" in out.stderr  # no unpaired text source
    assert not (tmp_path / "data").exists()


def test_data_sh_options():
    out = data_sh(["--help"])
    assert out.returncode == 0
    for option in ("--nj", "--train_subsets", "--paired_fractions", "--seed", "--max_text_sentences", "--force"):
        assert option in out.stdout
    out = data_sh(["--no_such_option", "1"])
    assert out.returncode == 1 and "unknown option" in out.stderr


def test_a_speaker_in_training_and_dev_is_refused_unless_allowed(tmp_path):
    fake = make_librispeech(tmp_path / "LibriSpeech", {"train-clean-100": {"19": {"198": 3}},
                                                       "train-clean-360": {"14": {"208": 3}},
                                                       "dev-clean": {"84": {"121123": 3}},
                                                       "test-clean": {"61": {"70968": 2}}})
    shutil.copytree(fake.root / "dev-clean" / "84", fake.root / "train-clean-100" / "84")
    data = tmp_path / "data"
    args = ["--librispeech", str(fake.root), "--train_subsets", "train-clean-100", "--out_dir", str(data),
            "--nj", "1"]
    with pytest.raises(CorpusError) as err:
        prepare_librispeech.main(args)
    message = str(err.value)
    assert ("training set LibriSpeech train-clean-100 (training) and evaluation set LibriSpeech dev-clean (dev) "
            "share 3 utterance ids: '84-121123-0000', '84-121123-0001', '84-121123-0002'") in message
    assert "--allow_overlap true" in message
    assert not data.exists()  # refused before anything was written

    # data.sh: the same refusal; with --allow_overlap true a warning, and the final validation (which also
    # compares audio contents) lets it pass too
    out = data_sh(["--data_dir", str(data), "--train_subsets", "train-clean-100", "--nj", "1"],
                  LIBRISPEECH=fake.root)
    assert out.returncode == 1 and "share 3 utterance ids" in out.stderr and "Traceback" not in out.stderr
    out = data_sh(["--data_dir", str(data), "--train_subsets", "train-clean-100", "--nj", "1",
                   "--allow_overlap", "true"], LIBRISPEECH=fake.root)
    assert out.returncode == 0, out.stderr
    assert "allowed by --allow_overlap" in out.stderr
    assert f"training set {data}/train_paired_100pct and evaluation set {data}/dev share 3 identical audio files" \
        in out.stderr
    # the validation alone refuses the sets that were written
    with pytest.raises(OverlapError, match=f"training set {data / 'train_speech'} and evaluation set {data / 'dev'} "
                                           "share 3 utterance ids"):
        validate_data_dir(data / "train_speech", need_text=False, disjoint_from=[data / "test", data / "dev"])
