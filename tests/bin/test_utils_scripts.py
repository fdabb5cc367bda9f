"""The shell scripts in utils/, run as a recipe runs them: bash, with utils/ and the venv first on PATH."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile


def run(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- parse_options.sh ----------------------------------------------------------------------------------------

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
help_message="Usage: $0 [options] <in> <out>"
stage=1          # first stage to run
stop_stage=100   # last stage to run
nj=4             # number of parallel jobs
lm_config="conf/a b.yaml"  # LM config (a value with a blank)
use_gpu=false    # decode on the GPU
tag=             # extra name for the experiment
internal=$((nj * 2))
  indented=1     # not top level: not an option
. "{utils}/parse_options.sh"
echo "stage=$stage stop_stage=$stop_stage nj=$nj lm_config=$lm_config use_gpu=$use_gpu tag=$tag"
echo "$# args:$(printf ' [%s]' "$@")"
"""


@pytest.fixture
def options_script(tmp_path: Path, repo_root: Path) -> Path:
    return write(tmp_path / "run.sh", SCRIPT.replace("{utils}", str(repo_root / "utils")))


def bash(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run(["bash", str(script), *args], env, script.parent)


def test_parse_options_sets_variables(options_script: Path, env_with_utils):
    out = bash(options_script, "--stage", "3", "--stop-stage=5", "--nj", "8", "--lm_config", "x y.yaml",
               "--use-gpu", "true", "--tag=", "data/in", "--not-an-option", env=env_with_utils)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "stage=3 stop_stage=5 nj=8 lm_config=x y.yaml use_gpu=true tag=",
        "2 args: [data/in] [--not-an-option]",  # parsing stops at the first non-option
    ]
    out = bash(options_script, "--stage", "2", "--", "--nj", "3", env=env_with_utils)
    assert out.stdout.splitlines() == ["stage=2 stop_stage=100 nj=4 lm_config=conf/a b.yaml use_gpu=false tag=",
                                       "2 args: [--nj] [3]"]


def test_parse_options_config_is_sourced_first(options_script: Path, env_with_utils):
    write(options_script.parent / "conf/decode.conf", "nj=16\nstage=7\n")
    # the command line wins whatever the order
    out = bash(options_script, "--stage", "2", "--config", "conf/decode.conf", "a", env=env_with_utils)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("stage=2 stop_stage=100 nj=16 ")
    out = bash(options_script, "--config=conf/missing.conf", env=env_with_utils)
    assert out.returncode == 1
    assert "run.sh: --config: no such file 'conf/missing.conf'" in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--nope", "1"], "run.sh: unknown option --nope ("),
    (["--stage"], "run.sh: option --stage needs a value"),
    (["--use_gpu", "yes"], "run.sh: option --use_gpu takes true or false, not 'yes'"),
    (["--nj", "2", "--bad.name", "1"], "run.sh: invalid option '--bad.name'"),
    (["--help_message", "x"], None),  # help_message is a variable too: allowed, as in Kaldi
])
def test_parse_options_errors(options_script: Path, env_with_utils, args, message):
    out = bash(options_script, *args, env=env_with_utils)
    if message is None:
        assert out.returncode == 0
        return
    assert out.returncode == 1
    assert message in out.stderr
    assert out.stdout == ""  # the script stopped there


def test_parse_options_help_lists_every_option(options_script: Path, env_with_utils):
    for flag in ("--help", "-h"):
        out = bash(options_script, "--nj", "2", flag, "--whatever", env=env_with_utils)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"Usage: {options_script} [options] <in> <out>",
            "Options:",
            "  --stage <1>                     # first stage to run",
            "  --stop_stage <100>              # last stage to run",
            "  --nj <4>                        # number of parallel jobs",
            '  --lm_config <"conf/a b.yaml">   # LM config (a value with a blank)',
            "  --use_gpu <false>               # decode on the GPU",
            "  --tag <>                        # extra name for the experiment",
        ]


def test_parse_options_help_uses_options_block(tmp_path: Path, repo_root: Path, env_with_utils):
    script = write(tmp_path / "block.sh", f"""#!/usr/bin/env bash
set -euo pipefail
x=1  # before the block: not listed
# <options>
alpha=0.5    # weight of the LM
    beam=10
sets="train_paired_100pct train_paired_10pct"  # a long default
# </options>
y=2  # after the block: not listed
. "{repo_root}/utils/parse_options.sh"
echo "$alpha $beam $x"
""")
    out = bash(script, "--help", env=env_with_utils)
    assert out.returncode == 0
    long_one = '--sets <"train_paired_100pct train_paired_10pct">'
    assert out.stdout.splitlines() == [  # comments aligned, but at most 32 columns in
        "Options:", "  " + "--alpha <0.5>".ljust(32) + "   # weight of the LM", "  --beam <10>",
        f"  {long_one}   # a long default"]
    assert bash(script, "--beam", "4", "--x", "3", env=env_with_utils).stdout == "0.5 4 3\n"


# --- split_scp.pl / filter_scp.pl ----------------------------------------------------------------------------

def test_split_scp(tmp_path: Path, env_with_utils):
    write(tmp_path / "wav.scp", "".join(f"s{i // 2}-u{i} /w/{i}.wav\n" for i in range(7)))  # s0..s3, s3 has 1
    out = run(["split_scp.pl", "wav.scp", "a.scp", "b.scp", "c.scp"], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "a.scp").read_text() == "s0-u0 /w/0.wav\ns0-u1 /w/1.wav\ns1-u2 /w/2.wav\n"
    assert (tmp_path / "b.scp").read_text() == "s1-u3 /w/3.wav\ns2-u4 /w/4.wav\n"
    assert (tmp_path / "c.scp").read_text() == "s2-u5 /w/5.wav\ns3-u6 /w/6.wav\n"

    write(tmp_path / "utt2spk", "".join(f"s{i // 2}-u{i} s{i // 2}\n" for i in range(7)))
    out = run(["split_scp.pl", "--utt2spk=utt2spk", "wav.scp", "a.scp", "b.scp"], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "a.scp").read_text() == "s0-u0 /w/0.wav\ns0-u1 /w/1.wav\ns1-u2 /w/2.wav\ns1-u3 /w/3.wav\n"
    assert (tmp_path / "b.scp").read_text() == "s2-u4 /w/4.wav\ns2-u5 /w/5.wav\ns3-u6 /w/6.wav\n"

    out = run(["split_scp.pl", "-j", "3", "1", "wav.scp"], env_with_utils, tmp_path)
    assert out.stdout == "s1-u3 /w/3.wav\ns2-u4 /w/4.wav\n"
    out = run(["split_scp.pl", "--one-based", "-j", "3", "1", "wav.scp"], env_with_utils, tmp_path)
    assert out.stdout == "s0-u0 /w/0.wav\ns0-u1 /w/1.wav\ns1-u2 /w/2.wav\n"


def test_split_scp_errors(tmp_path: Path, env_with_utils):
    write(tmp_path / "wav.scp", "a /a.wav\nb /b.wav\n")
    out = run(["split_scp.pl", "wav.scp", "1", "2", "3"], env_with_utils, tmp_path)
    assert out.returncode == 1
    assert "wav.scp: cannot split 2 lines into 3 non-empty parts" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "1").exists()
    write(tmp_path / "utt2spk", "a s\n")
    out = run(["split_scp.pl", "--utt2spk", "utt2spk", "wav.scp", "1", "2"], env_with_utils, tmp_path)
    assert out.returncode == 1 and "wav.scp:2: utterance 'b' is not in utt2spk" in out.stderr
    write(tmp_path / "gap.scp", "a /a.wav\n\nb /b.wav\n")
    out = run(["split_scp.pl", "gap.scp", "1", "2"], env_with_utils, tmp_path)
    assert out.returncode == 1 and "gap.scp:2: empty line" in out.stderr
    out = run(["split_scp.pl", "missing.scp", "1"], env_with_utils, tmp_path)
    assert out.returncode == 1 and "missing.scp: cannot read: No such file or directory" in out.stderr
    out = run(["split_scp.pl", "--help"], env_with_utils, tmp_path)
    assert out.returncode == 0 and "usage: utils/split_scp.pl" in out.stdout and "--utt2spk" in out.stdout


def test_filter_scp(tmp_path: Path, env_with_utils):
    write(tmp_path / "in.scp", "a x 1\nb y 2\nc x 3\nd z 4\n")
    write(tmp_path / "ids", "c whatever\na\n\nzz\n")
    out = run(["filter_scp.pl", "ids", "in.scp"], env_with_utils, tmp_path)
    assert (out.returncode, out.stdout) == (0, "a x 1\nc x 3\n")
    out = run(["filter_scp.pl", "--exclude", "ids", "in.scp"], env_with_utils, tmp_path)
    assert out.stdout == "b y 2\nd z 4\n"
    write(tmp_path / "keys", "x\n")
    out = run(["filter_scp.pl", "-f", "2", "keys", "in.scp"], env_with_utils, tmp_path)
    assert out.stdout == "a x 1\nc x 3\n"
    out = run(["filter_scp.pl", "--exclude", "-f", "2", "keys"], env_with_utils, tmp_path, stdin="q x\nr  s\u00e9\n")
    assert out.stdout == "r  s\u00e9\n"  # stdin; the line's text is kept as it was
    out = run(["filter_scp.pl", "-f", "4", "keys", "in.scp"], env_with_utils, tmp_path)
    assert out.returncode == 1 and "in.scp:1: has 3 fields, field 4 is needed" in out.stderr
    out = run(["filter_scp.pl", "-f", "0", "keys", "in.scp"], env_with_utils, tmp_path)
    assert out.returncode == 2 and "expected a positive integer" in out.stderr
    out = run(["filter_scp.pl", "--help"], env_with_utils, tmp_path)
    assert out.returncode == 0 and "usage: utils/filter_scp.pl" in out.stdout and "--exclude" in out.stdout


# --- validate_data_dir.sh / fix_data_dir.sh ------------------------------------------------------------------

def make_data_dir(d: Path, wav_rate: int = 16000) -> Path:
    wav = d.parent / "wav"
    wav.mkdir(parents=True, exist_ok=True)
    for utt in ("spk1-a", "spk2-b"):
        soundfile.write(wav / f"{utt}.wav", np.zeros(800, dtype=np.float32), wav_rate)
    write(d / "utt2spk", "spk1-a spk1\nspk2-b spk2\n")
    write(d / "spk2utt", "spk1 spk1-a\nspk2 spk2-b\n")
    write(d / "text", "spk1-a HELLO\nspk2-b WORLD\n")
    write(d / "wav.scp", f"spk1-a {wav}/spk1-a.wav\nspk2-b {wav}/spk2-b.wav\n")
    return d


def test_validate_data_dir_sh(tmp_path: Path, env_with_utils):
    good = make_data_dir(tmp_path / "good")
    out = run(["validate_data_dir.sh", "--check-audio", "--fs", "16000", str(good)], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{good}: ok (2 utterances)" in out.stderr

    out = run(["validate_data_dir.sh", "--check-audio", "--fs=8000", str(good)], env_with_utils, tmp_path)
    assert out.returncode == 1
    assert f"{good}/wav.scp:1: utterance 'spk1-a' has sample rate 16000 Hz, expected 8000 Hz" in out.stderr

    bad = make_data_dir(tmp_path / "bad")
    write(bad / "text", "spk2-b WORLD\nspk1-a HELLO\n")
    out = run(["validate_data_dir.sh", str(good), str(bad)], env_with_utils, tmp_path)
    assert out.returncode == 1
    assert f"{bad}/text:2: 'spk1-a' comes after 'spk2-b' (line 1)" in out.stderr
    assert "Traceback" not in out.stderr

    (bad / "text").unlink()
    out = run(["validate_data_dir.sh", str(bad)], env_with_utils, tmp_path)
    assert out.returncode == 1 and f"{bad}/text: required file is missing" in out.stderr
    out = run(["validate_data_dir.sh", "--no-text", "--no-feats", str(bad)], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr
    (bad / "wav.scp").unlink()
    out = run(["validate_data_dir.sh", "--no-text", "--no-wav", str(bad)], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr

    out = run(["validate_data_dir.sh", str(tmp_path / "nope")], env_with_utils, tmp_path)
    assert out.returncode == 1 and f"{tmp_path / 'nope'}: data directory does not exist" in out.stderr


def test_validate_data_dir_sh_disjoint_from(tmp_path: Path, env_with_utils):
    train = make_data_dir(tmp_path / "a" / "train")
    dev = make_data_dir(tmp_path / "a" / "dev")  # the same utterances and recordings
    out = run(["validate_data_dir.sh", "--disjoint-from", str(dev), str(train)], env_with_utils, tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"training set {train} and evaluation set {dev} share 2 utterance ids: 'spk1-a', 'spk2-b'" in out.stderr
    out = run(["validate_data_dir.sh", f"--disjoint-from={dev}", "--allow-overlap", str(train)], env_with_utils,
              tmp_path)
    assert out.returncode == 0, out.stderr
    assert "share 2 recordings" in out.stderr and "allowed by --allow_overlap" in out.stderr
    out = run(["validate_data_dir.sh", "--help"], env_with_utils, tmp_path)
    assert "--disjoint-from <dir>" in out.stdout and "--allow-overlap" in out.stdout


def test_validate_data_dir_sh_usage(tmp_path: Path, env_with_utils):
    out = run(["validate_data_dir.sh", "--help"], env_with_utils, tmp_path)
    assert out.returncode == 0
    for flag in ("--no-text", "--no-wav", "--check-audio", "--fs <N>"):
        assert flag in out.stdout
    out = run(["validate_data_dir.sh"], env_with_utils, tmp_path)
    assert out.returncode == 1 and out.stderr.startswith("Usage: validate_data_dir.sh")
    out = run(["validate_data_dir.sh", "--fs"], env_with_utils, tmp_path)
    assert out.returncode == 1 and "--fs needs a value" in out.stderr


def test_fix_data_dir_sh(tmp_path: Path, env_with_utils):
    d = make_data_dir(tmp_path / "data")
    write(d / "utt2spk", "spk2-b spk2\nspk1-a spk1\nspk3-c spk3\n")  # unsorted; spk3-c has no text nor audio
    write(d / "spk2utt", "spk2 spk2-b\n")
    write(d / "text", "spk1-a HELLO\nspk2-b WORLD\nspk4-d ONLY TEXT\n")
    wav_scp = (d / "wav.scp").read_text()
    out = run(["fix_data_dir.sh", str(d)], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{d}: kept 2 utterances, removed 2; originals in {d}/.backup" in out.stderr
    assert (d / "utt2spk").read_text() == "spk1-a spk1\nspk2-b spk2\n"
    assert (d / "spk2utt").read_text() == "spk1 spk1-a\nspk2 spk2-b\n"
    assert (d / "text").read_text() == "spk1-a HELLO\nspk2-b WORLD\n"
    assert (d / "wav.scp").read_text() == wav_scp
    assert (d / ".backup/utt2spk").read_text() == "spk2-b spk2\nspk1-a spk1\nspk3-c spk3\n"
    assert (d / ".backup/text").read_text() == "spk1-a HELLO\nspk2-b WORLD\nspk4-d ONLY TEXT\n"
    out = run(["validate_data_dir.sh", "--check-audio", str(d)], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr

    (d / "text").write_bytes(b"spk1-a HELLO\nspk2-b W\xf6RLD\n")
    out = run(["fix_data_dir.sh", str(d)], env_with_utils, tmp_path)
    assert out.returncode == 1
    assert f"{d}/text:2: not valid UTF-8" in out.stderr and "Traceback" not in out.stderr
    assert (d / "text").read_bytes() == b"spk1-a HELLO\nspk2-b W\xf6RLD\n"

    out = run(["fix_data_dir.sh", "--help"], env_with_utils, tmp_path)
    assert out.returncode == 0 and "usage: utils/fix_data_dir.sh" in out.stdout


def test_run_pl_pipes_as_in_kaldi(tmp_path: Path, env_with_utils):
    """`run.pl ... a \\| b`: the escaped pipe reaches run.pl as '|' and is a pipe again, as in Kaldi recipes."""
    out = run(["bash", "-c", "run.pl JOB=1:2 log/x.JOB.log echo job JOB \\| tr a-z A-Z"], env_with_utils, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "log/x.2.log").read_text().splitlines()[3] == "JOB 2"


def test_validate_summary_lines(tmp_path):
    from zipper.bin.validate_data_dir import summary_line
    from zipper.data.kaldi_dir import write_kv

    speech = tmp_path / "speech"
    write_kv(speech / "utt2dur", {"s-1": "1800.0", "s-2": "5400.0"})
    write_kv(speech / "wav.scp", {"s-1": "a.wav", "s-2": "b.wav"})
    assert summary_line(str(speech), 2).split()[1:] == ["2", "utterances", "2.00", "h"]
    text = tmp_path / "text"
    write_kv(text / "text", {"text-1": "one two three", "text-2": "four five"})
    assert summary_line(str(text), 2).split()[1:] == ["2", "sentences", "5", "words"]
