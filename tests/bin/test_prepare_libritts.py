"""python -m zipper.bin.prepare_libritts and egs/libritts/zipper1/local/data.sh on a fake LibriTTS tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_corpora import FakeCorpus, make_libritts, make_lm_text
from zipper.bin import prepare_libritts
from zipper.corpora.librispeech import CorpusError
from zipper.data.kaldi_dir import read_kv, validate_data_dir

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "libritts" / "zipper1"
SETS = ["dev", "test", "train_paired_100pct", "train_paired_10pct", "train_paired_1pct", "train_speech", "train_text"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> FakeCorpus:
    return make_libritts(tmp_path_factory.mktemp("corpora") / "LibriTTS")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def data_sh(args: list[str], **roots: Path | str) -> subprocess.CompletedProcess:
    env = {"LIBRITTS": "", "LIBRISPEECH_LM_TEXT": "", "LIBRILIGHT": ""}
    env.update({k: str(v) for k, v in roots.items()})
    return run(["bash", "local/data.sh", *args], RECIPE, env)


def test_help_documents_every_option():
    for action in prepare_libritts.get_parser()._actions:
        if action.dest != "help":
            assert action.help and action.default is not None, action.dest
    out = run([sys.executable, "-m", "zipper.bin.prepare_libritts", "--help"], REPO)
    assert out.returncode == 0 and "--exclude_utts" in out.stdout


def test_main_in_process(fake, tmp_path, capsys):
    lm = tmp_path / "lm.txt"
    make_lm_text(lm, extra=5)
    prepare_libritts.main(["--libritts", str(fake.root), "--lm_text", str(lm), "--out_dir", str(tmp_path / "data"),
                           "--nj", "1", "--train_subsets", "train-clean-100", "--paired_fractions", "1.0"])
    assert capsys.readouterr().out.splitlines() == [
        "dev paired", "test paired", "train_paired_100pct paired", "train_speech speech", "train_text text"]
    assert list(read_kv(tmp_path / "data" / "train_paired_100pct" / "utt2spk")) == fake.ids("train-clean-100")
    assert len(read_kv(tmp_path / "data" / "train_text" / "text")) == 5


def test_bad_input_is_one_clear_error(fake, tmp_path):
    out = run([sys.executable, "-m", "zipper.bin.prepare_libritts", "--libritts", str(fake.root), "--train_subsets",
               "train-clean-460", "--out_dir", str(tmp_path / "data")], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "LibriTTS subset 'train-clean-460' not found" in out.stderr
    assert not (tmp_path / "data").exists()


def test_data_sh_end_to_end_and_rerun_is_a_noop(fake, tmp_path):
    data = tmp_path / "data"
    bad = tmp_path / "bad_utts.txt"
    bad.write_text(fake.utts["train-clean-360"][0].audio.stem + "\n", encoding="utf-8")
    out = data_sh(["--data_dir", str(data), "--exclude_utts", str(bad)], LIBRITTS=fake.root)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in data.iterdir()) == sorted(SETS)
    for name in SETS:
        validate_data_dir(data / name, need_text=name != "train_speech", need_wav=name != "train_text",
                          check_audio=name == "dev", fs=24000)
        assert f"{data / name} " in out.stdout
    assert "LIBRISPEECH_LM_TEXT is not set in db.sh" in out.stderr
    paired = read_kv(data / "train_paired_100pct" / "text")
    assert fake.utts["train-clean-360"][0].utt not in paired
    assert len(paired) == len(fake.ids("train-clean-100", "train-clean-360")) - 1
    assert all("_" not in utt for utt in paired)

    stamps = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    again = data_sh(["--data_dir", str(data), "--exclude_utts", str(bad)], LIBRITTS=fake.root)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == stamps
    assert again.stderr.count("already prepared") == len(SETS)

    changed = data_sh(["--data_dir", str(data)], LIBRITTS=fake.root)  # without the exclusion list
    assert changed.returncode == 1 and "prepared with other options" in changed.stderr
    assert "--force true" in changed.stderr


def test_data_sh_names_the_db_sh_variable(tmp_path):
    out = data_sh(["--data_dir", str(tmp_path / "data")])
    assert out.returncode == 1 and "LIBRITTS is empty: set it in db.sh" in out.stderr
    out = data_sh(["--data_dir", str(tmp_path / "data")], LIBRITTS=tmp_path / "missing")
    assert out.returncode == 1 and "is not a directory: set it in db.sh" in out.stderr
    out = data_sh(["--help"])
    assert out.returncode == 0 and "--exclude_utts" in out.stdout and "--train_subsets" in out.stdout


def test_a_training_subset_used_as_test_is_refused_unless_allowed(fake, tmp_path):
    lm = tmp_path / "lm.txt"
    make_lm_text(lm, extra=5)
    args = ["--libritts", str(fake.root), "--lm_text", str(lm), "--out_dir", str(tmp_path / "data"), "--nj", "1",
            "--train_subsets", "train-clean-100", "--test_subset", "train-clean-100", "--paired_fractions", "1.0"]
    first = fake.ids("train-clean-100")[0]
    with pytest.raises(CorpusError, match=f"training set LibriTTS train-clean-100 \\(training\\) and evaluation set "
                                          f"LibriTTS train-clean-100 \\(test\\) share \\d+ utterance ids: '{first}'"):
        prepare_libritts.main(args)
    assert not (tmp_path / "data").exists()
    prepare_libritts.main(args + ["--allow_overlap", "true"])
    assert list(read_kv(tmp_path / "data" / "test" / "utt2spk")) == fake.ids("train-clean-100")
