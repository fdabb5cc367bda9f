"""synth_en end to end on tiny fake text packages: prepare -> synthesize (real espeak-ng/flite) -> finish,
and egs/synth_en/zipper1/local/data.sh (options, re-run is a no-op, missing synthesizer)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from fake_text_packages import make_text_packages
from zipper.bin import finish_synth_en, prepare_synth_en, synthesize_synth_en
from zipper.corpora import synth_en, voices
from zipper.data.kaldi_dir import read_kv, validate_data_dir

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "synth_en" / "zipper1"
NEEDS_SYNTH = pytest.mark.skipif(bool(voices.missing_programs(["espeak-ng", "flite", "sox"])),
                                 reason="espeak-ng, flite or sox is not installed")
SPEECH_SETS = ["dev", "test", "train_paired_100pct", "train_paired_50pct", "train_speech", "train_vocoder"]
# 9 utterances to synthesise: dev 1, test 2 (one by a held-out voice), paired 3, speech 2, and fl-rms (a seen voice
# with 2 held out and seed 777) reading one of train_speech's again for the vocoder
TINY = ["--dev_utts", "1", "--test_utts", "2", "--train_paired_utts", "3", "--train_speech_utts", "2",
        "--train_text_words", "40", "--paired_fractions", "0.5", "--heldout_voices", "2", "--min_word_count", "1",
        "--sources", "fortunes,wordnet,gcide", "--flite_share", "0.5", "--vocoder_utts", "1"]


def source_args(packages: dict[str, str]) -> list[str]:
    return ["--fortune_dir", packages["FORTUNES"], "--wordnet_dir", packages["WORDNET"], "--gcide", packages["GCIDE"]]


def test_help_documents_every_option():
    for module in (prepare_synth_en, synthesize_synth_en, finish_synth_en):
        for action in module.get_parser()._actions:
            if action.dest != "help":
                assert action.help, f"{module.__name__}: --{action.dest} has no help"


@NEEDS_SYNTH
def test_prepare_synthesize_finish(tmp_path, capsys):
    packages = make_text_packages(tmp_path / "packages")
    local, data, wav = tmp_path / "local", tmp_path / "data", tmp_path / "wav"
    args = ["--local_dir", str(local), "--data_dir", str(data), "--wav_dir", str(wav), "--nj", "2", *TINY,
            *source_args(packages)]
    prepare_synth_en.main(args)
    plan = synth_en.read_plan(local / "plan.tsv")
    assert len(plan) == 9
    for j in (1, 2):
        synthesize_synth_en.main([str(local / "split2" / f"plan.{j}.tsv")])
    finish_synth_en.main(["--local_dir", str(local)])
    assert "train_paired_50pct" in capsys.readouterr().out

    for name in SPEECH_SETS:
        validate_data_dir(data / name, need_text=name not in ("train_speech", "train_vocoder"), check_audio=True,
                          fs=16000)
    vocoder = read_kv(data / "train_vocoder" / "utt2spk")
    assert set(vocoder.values()) == {"fl-rms"} and not (data / "train_vocoder" / "text").exists()
    validate_data_dir(data / "train_text", need_wav=False)
    assert not (data / "train_speech" / "text").exists() and not (data / "train_text" / "wav.scp").exists()
    assert sum(len(v.split()) for v in read_kv(data / "train_text" / "text").values()) >= 40
    for path in read_kv(data / "train_paired_100pct" / "wav.scp").values():
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 < info.duration < 8.0

    # sentences are disjoint across sets (train_speech has no text: compare through the plan)
    sentence = {p.utt: p.sentence for p in plan}
    text_sets = {name: set(read_kv(data / name / "text").values()) for name in ("dev", "test", "train_paired_100pct",
                                                                            "train_text")}
    speech_sentences = {sentence[u] for u in read_kv(data / "train_speech" / "utt2spk")}
    assert not speech_sentences & {sentence[u] for name in ("dev", "test", "train_paired_100pct")
                                   for u in read_kv(data / name / "utt2spk")}
    for a, b in itertools.combinations(text_sets, 2):
        assert not text_sets[a] & text_sets[b], (a, b)
    sub = set(read_kv(data / "train_paired_50pct" / "utt2spk"))
    assert sub < set(read_kv(data / "train_paired_100pct" / "utt2spk"))
    held = {v.spk for v in voices.parse_voices((local / "voices.txt").read_text()) if v.heldout}
    assert held & set(read_kv(data / "test" / "utt2spk").values())
    for name in ("dev", "train_paired_100pct", "train_speech"):
        assert not held & set(read_kv(data / name / "utt2spk").values())
    assert set(read_kv(local / "utt2source").values()) <= {"fortunes", "wordnet", "gcide"}

    # done with these options, not with others
    with pytest.raises(SystemExit) as e:
        prepare_synth_en.main(args + ["--check_done", "true"])
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        prepare_synth_en.main(args + ["--check_done", "true", "--seed", "1"])
    assert e.value.code == prepare_synth_en.NOT_DONE_EXIT

    # resumable: only a missing wav is made again
    victim = Path(plan[0].wav)
    others = {p.wav: os.stat(p.wav).st_mtime_ns for p in plan[1:]}
    victim.unlink()
    for j in (1, 2):
        synthesize_synth_en.main([str(local / "split2" / f"plan.{j}.tsv")])
    assert victim.is_file() and others == {p.wav: os.stat(p.wav).st_mtime_ns for p in plan[1:]}

    # wavs of another sentence pool are refused, and removed with --force
    (wav / ".pool_id").write_text("another\n")
    with pytest.raises(synth_en.SynthError, match="another sentence pool"):
        prepare_synth_en.main(args)
    prepare_synth_en.main(args + ["--force", "true"])
    assert not list(wav.glob("*/*.wav"))


def bash_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def data_sh(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "local/data.sh", *args], cwd=RECIPE, capture_output=True, text=True,
                          timeout=120, env=env)


@NEEDS_SYNTH
def test_data_sh_end_to_end_and_rerun_is_a_noop(tmp_path):
    packages = make_text_packages(tmp_path / "packages")
    env = bash_env(packages)
    args = ["--local_dir", str(tmp_path / "local"), "--data_dir", str(tmp_path / "data"),
            "--wav_dir", str(tmp_path / "wav"), "--nj", "2", *TINY]
    out = data_sh(args, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "train_paired_50pct" in out.stdout and "synth_en done" in out.stdout
    assert (tmp_path / "local" / ".done.synth_en").is_file()
    again = data_sh(args, env)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stdout + again.stderr
    assert "synthesis" not in again.stdout


def test_data_sh_options():
    out = data_sh(["--help"], bash_env({}))
    assert out.returncode == 0 and "--train_speech_utts <7000>" in out.stdout and "--nj <2>" in out.stdout
    out = data_sh(["--no_such_option", "1"], bash_env({}))
    assert out.returncode == 1 and "no_such_option" in out.stderr


@NEEDS_SYNTH
def test_missing_synthesizer_is_a_clear_error(tmp_path):
    """A PATH with flite and sox but no espeak-ng: one error line naming espeak-ng and tools/install.sh."""
    packages = make_text_packages(tmp_path / "packages")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("flite", "sox"):
        (bin_dir / program).symlink_to(voices.shutil.which(program))
    cmd = [sys.executable, "-m", "zipper.bin.prepare_synth_en", "--local_dir", str(tmp_path / "local"),
           "--data_dir", str(tmp_path / "data"), "--wav_dir", str(tmp_path / "wav"), *TINY, *source_args(packages)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PATH": str(bin_dir), "PYTHONPATH": str(REPO)})
    assert out.returncode == 1
    assert "espeak-ng" in out.stderr and "tools/install.sh" in out.stderr and "Traceback" not in out.stderr


def test_missing_text_package_is_a_clear_error(tmp_path):
    cmd = [sys.executable, "-m", "zipper.bin.prepare_synth_en", "--local_dir", str(tmp_path / "local"),
           "--data_dir", str(tmp_path / "data"), "--wav_dir", str(tmp_path / "wav"), *TINY,
           "--fortune_dir", str(tmp_path / "none"), "--wordnet_dir", str(tmp_path / "none"),
           "--gcide", str(tmp_path / "none.dict.dz")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    if voices.missing_programs(["espeak-ng", "flite", "sox"]):
        assert out.returncode == 1 and "tools/install.sh" in out.stderr
        return
    assert out.returncode == 1 and "Traceback" not in out.stderr
    for package in ("fortunes", "wordnet-base", "dict-gcide", "tools/install.sh"):
        assert package in out.stderr
