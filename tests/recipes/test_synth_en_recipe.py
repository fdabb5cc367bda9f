"""The built-in recipe end to end (stages 1-12) on a tiny synth_en with debug presets, in a temp copy of the
recipe dir.

This is the README's main command at toy size: sentences from the real Debian bible/fortunes packages, real
espeak-ng/flite synthesis, s3prl MFCC, faiss k-means, units and sentencepiece, all through run.sh -> zipper.sh
-> run.pl -> python -m zipper.bin.*.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from zipper.corpora import voices
from zipper.data.kaldi_dir import read_kv, validate_data_dir
from zipper.tokens.token_list import NUM_SPECIAL, TokenList
from zipper.tokens.units import INVENTORY_KEYS, UnitSet

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "synth_en" / "zipper1"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(voices.missing_programs(["espeak-ng", "flite", "sox"])),
                                 reason="espeak-ng, flite or sox is not installed (tools/install.sh installs them)")]
TINY_DATA = ("--dev_utts 2 --test_utts 4 --train_paired_utts 10 --train_speech_utts 6 --train_text_words 400 "
             "--heldout_voices 2 --sources bible,fortunes --flite_share 0.5 --vocoder_utts 3")
SETS = ["train_speech", "train_paired_100pct", "train_paired_10pct", "train_paired_1pct", "dev", "test"]


def make_recipe_copy(root: Path) -> Path:
    """A recipe dir like egs/synth_en/zipper1 whose outputs (data/, dump/, exp/) land under `root`."""
    recipe = root / "zipper1"
    recipe.mkdir()
    for name in ("run.sh", "run_study.sh", "cmd.sh", "db.sh"):
        shutil.copy(RECIPE / name, recipe / name)
    for name in ("local", "conf"):
        (recipe / name).symlink_to(RECIPE / name)
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "zipper.sh").symlink_to(REPO / "egs" / "TEMPLATE" / "zipper1" / "zipper.sh")
    (recipe / "path.sh").symlink_to(REPO / "egs" / "TEMPLATE" / "zipper1" / "path.sh")
    (recipe / "study.sh").symlink_to(REPO / "egs" / "TEMPLATE" / "zipper1" / "study.sh")
    return recipe


DEBUG_PRESETS = ["--speech_tower_config", "conf/tower_debug.yaml", "--text_tower_config", "conf/tower_debug.yaml",
                 "--zipper_config", "conf/zipper_debug.yaml", "--baseline_config", "conf/vocabexp_debug.yaml",
                 "--decode_config", "conf/decode_debug.yaml", "--judge_config", "conf/judge_debug.yaml"]


TINY_OPTS = ["--n_clusters", "8", "--text_vocab_size", "40", "--kmeans_portion", "1.0", "--min_duration", "0.1",
             "--local_data_opts", TINY_DATA, "--decode_sets", "dev test", "--unit_encoder_config",
             "conf/unit_encoder_debug.yaml", *DEBUG_PRESETS]


# stage 11 too (the recipe skips it by default for time): the tiny vocoder and the packaged tiny.en Whisper; the
# tiny corpus may lack the voice run.sh pins, so the vocoder speaks the one with most audio
STAGE11_OPTS = ["--skip_stages", "", "--vocoder_config", "conf/vocoder_debug.yaml", "--whisper_model", "tiny.en",
                "--vocoder_speaker", "", "--vocoder_train_opts", "--vocoder world"]  # the debug HiFi-GAN takes 20 ms units


def run_recipe(recipe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *TINY_OPTS, *STAGE11_OPTS, *args], cwd=recipe, env=env, capture_output=True,
                          text=True, timeout=900)


def test_stages_1_to_12_then_rerun_is_a_noop(tmp_path):
    recipe = make_recipe_copy(tmp_path)
    env = dict(os.environ)
    done = run_recipe(recipe, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "Successfully finished stages 1-12" in out

    for name in SETS + ["train_text"]:
        validate_data_dir(recipe / "data" / name, need_text=name != "train_speech", need_wav=name != "train_text")
    # run.sh: a unit encoder on the aligned pairs' Whisper features (position removed), k-means on its states
    encoder = recipe / "exp" / "unit_encoder_debug_whisper"
    assert (encoder / ".done").exists() and json.loads((encoder / "scores.json").read_text())["valid_cer"] >= 0
    km_dirs = list((recipe / "exp" / "kmeans").iterdir())
    assert len(km_dirs) == 1 and km_dirs[0].name.startswith("whisper_ue_debug_k8_")
    assert (km_dirs[0] / "unit_encoder" / "unit_encoder.pth").read_bytes() == (encoder / "unit_encoder.pth").read_bytes()
    assert json.loads((recipe / "dump/feats/whisper_ue_debug/test/provenance.json").read_text())["frame_shift_samples"] == 640
    km_tag = km_dirs[0].name
    speech_tokens = TokenList(recipe / "data" / "token_list" / f"speech_{km_tag}")
    assert len(speech_tokens) == NUM_SPECIAL + 8
    for name in SETS:
        units = UnitSet(recipe / "dump" / "units" / km_tag / name)
        assert set(units.keys()) == set(read_kv(recipe / "data" / name / "utt2spk"))
        for utt in units.keys():
            u = units[utt]
            assert len(u) > 10 and u.min() >= 0 and u.max() < 8
        assert all(units.provenance[k] == speech_tokens.provenance[k] for k in INVENTORY_KEYS)
    text_tokens = TokenList(recipe / "data" / "token_list" / "text_char40")  # run.sh: a character tokenizer
    chars = {c for line in read_kv(recipe / "data/train_text/text").values() for c in line if c != " "}
    assert len(text_tokens) == NUM_SPECIAL + 1 + len(chars) and text_tokens.provenance["kind"] == "text"
    assert f"speech tokens:    data/token_list/speech_{km_tag}/tokens.txt" in out

    # stages 7-10: towers, fused models, decodings of dev and test for both tasks and both models
    exp = recipe / "exp"
    towers = {p.name for p in exp.glob("tower_*")}
    assert towers == {f"tower_speech_debug_{km_tag}", "tower_text_debug_text_char40"}
    for tower in towers:
        assert json.loads((exp / tower / "scores.json").read_text())["valid_ppl"] > 0
    for model in ("zipper_debug_train_paired_100pct", "vocabexp_debug_train_paired_100pct"):
        assert (exp / model / "valid.loss.ave.pth").exists() and (exp / model / ".done").exists()
        for name in ("dev", "test"):
            asr = exp / model / "decode_asr_decode_debug" / name
            assert set(read_kv(asr / "text", allow_empty_value=True)) == set(read_kv(recipe / "data" / name / "text"))
            tts = UnitSet(exp / model / "decode_tts_decode_debug" / name)
            assert set(tts.keys()) == set(read_kv(recipe / "data" / name / "text"))
            assert all(tts.provenance[k] == speech_tokens.provenance[k] for k in INVENTORY_KEYS)
            assert (exp / model / "decode_tts_decode_debug" / name / "nbest" / "units.2.scp").exists()
    assert json.loads((exp / "zipper_debug_train_paired_100pct" / "gates.json").read_text())["text"]
    for model in ("zipper_debug_train_paired_100pct", "vocabexp_debug_train_paired_100pct"):
        valid = json.loads((exp / model / "scores.json").read_text())["valid"]  # the audio gain of each task
        for task in ("asr", "tts"):
            assert valid[f"{task}_loss_mismatched"] == pytest.approx(valid[f"{task}_loss"] + valid[f"{task}_gain"])
    fusion_png = exp / "zipper_debug_train_paired_100pct" / "images" / "fusion.png"
    assert fusion_png.read_bytes()[:4] == b"\x89PNG"
    history = json.loads((exp / "zipper_debug_train_paired_100pct" / "history.json").read_text())
    assert all("gates" in h and "asr_gain" in h["valid"] for h in history)

    # stage 12: ASR scored, TTS judged by the unit judge (gold and target), oracle rows, RESULTS.md
    judge = exp / f"judge_debug_{km_tag}_lex"  # run.sh: it reads through the words of train_text
    assert (judge / ".done").exists() and (judge / "tokens.txt").read_text().startswith("<blank>\n")
    assert yaml.safe_load((judge / "config.yaml").read_text())["lexicon"] == "data/train_text/text"
    for model in ("zipper_debug_train_paired_100pct", "vocabexp_debug_train_paired_100pct"):
        for name in ("dev", "test"):
            asr = json.loads((exp / model / "decode_asr_decode_debug" / name / "score_wer" / "score.json").read_text())
            assert asr["Snt"] == len(read_kv(recipe / "data" / name / "text")) and asr["wer"] >= 0
            result = (exp / model / "decode_asr_decode_debug" / name / "score_wer" / "result.txt").read_text()
            assert result.splitlines()[1].startswith(f"| {name} | {asr['Snt']} |")
            tts_dir = exp / model / "decode_tts_decode_debug" / name
            gold = json.loads((tts_dir / "score_unit_gold" / "score.json").read_text())
            assert gold["samples"] == 2 and "wer_gold_best_of_n" in gold
            assert gold["wer_gold_best_of_n"] <= gold["wer_gold"]
            assert (tts_dir / "score_unit_target" / f"errs-{name}.txt").exists()
            assert set(read_kv(tts_dir / "judge_unit" / "text.1", allow_empty_value=True)) == set(
                read_kv(recipe / "data" / name / "text"))
        assert json.loads((exp / model / "fused_lm_text.json").read_text())["ppl"] > 0
    assert (judge / "gold_test" / "score_wer" / "result.txt").exists()

    # stage 11: a vocoder, every TTS decoding as 16 kHz audio, the Whisper judge on it and on the recordings
    vocoder = next(exp.glob("vocoder_debug_*"))
    assert (vocoder / ".done").exists()
    for name in ("dev", "test"):
        tts_dir = exp / "zipper_debug_train_paired_100pct" / "decode_tts_decode_debug" / name / (
            "vocoded_" + vocoder.name[len("vocoder_"):])  # each vocoder's audio in a dir of its own
        wavs = read_kv(tts_dir / "wav.scp")
        assert set(wavs) == set(read_kv(recipe / "data" / name / "text"))
        assert all(Path(w).exists() for w in wavs.values())
        assert (tts_dir / "judge_whisper_tiny.en" / "score_wer" / "result.txt").exists()
        target = json.loads((tts_dir / "judge_whisper_tiny.en" / "judge.json").read_text())
        assert target["target_text"].endswith(f"resynth_{name}/judge_whisper_tiny.en/text")
        if target["target_scored_utts"]:  # the debug vocoder may give Whisper nothing to hear
            assert (tts_dir / "judge_whisper_tiny.en" / "score_wer_target" / "result.txt").exists()
        assert (vocoder / f"resynth_{name}" / "judge_whisper_tiny.en" / "score_wer" / "result.txt").exists()
        assert (exp / "judge_whisper_tiny.en" / f"recordings_{name}" / "score_wer" / "result.txt").exists()
    results = (recipe / "RESULTS.md").read_text()
    assert results.startswith("<!-- Generated by `python -m zipper.bin.show_results`")
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results and "Oracle (gold units" in results
    assert "./zipper.sh --nj 2" in results  # the exact command is recorded
    assert "|Original recordings|-|test|Whisper tiny.en|" in results
    assert f"(vocoded by `{vocoder.name}`)|text|test|Whisper" in results

    # every finished step is skipped: no output is rewritten
    arks = sorted((recipe / "dump").rglob("*.ark")) + sorted(exp.rglob("*.pth"))
    mtimes = [p.stat().st_mtime_ns for p in arks]
    again = run_recipe(recipe, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in arks] == mtimes
    assert again.stdout.count(" is done") >= 3 * len(["train_speech", "train_paired_100pct", "dev", "test"])
    assert json.loads((km_dirs[0] / ".done").read_text())["empty_clusters"] == 0

    # the data-efficiency study (debug presets): 3 fractions x 3 systems + an ablation, table and plot
    study = subprocess.run(["./run_study.sh", "--run_opts", shlex.join(TINY_OPTS),
                            "--zipper_configs", "conf/zipper_debug.yaml conf/zipper_debug_frozen.yaml",
                            "--baseline_config", "conf/vocabexp_debug.yaml",
                            "--ablation_configs", "conf/zipper_debug_no_text_inproj.yaml",
                            "--small_set_fusion_opts", "--num_iters_per_epoch 1 --max_epoch 6"],
                           cwd=recipe, env=env, capture_output=True, text=True, timeout=900)
    assert study.returncode == 0, study.stdout[-3000:] + study.stderr[-3000:]
    for pct in ("1pct", "10pct", "100pct"):
        for system in ("zipper_debug", "zipper_debug_frozen", "vocabexp_debug"):
            scored = exp / f"{system}_train_paired_{pct}" / "decode_asr_decode_debug" / "test" / "score_wer"
            assert (scored / "result.txt").exists() and (scored / "per_utt.tsv").exists(), scored
    # the smaller sets were validated every update (6 in all), the largest with the presets' 3 x 2
    for pct, every, epochs in (("1pct", 1, 6), ("10pct", 1, 6), ("100pct", 3, 2)):
        config = yaml.safe_load((exp / f"zipper_debug_train_paired_{pct}" / "config.yaml").read_text())
        assert (config["num_iters_per_epoch"], config["max_epoch"]) == (every, epochs), pct
    assert (exp / "zipper_debug_no_text_inproj_train_paired_100pct" / "decode_tts_decode_debug" / "test" /
            "score_unit_gold" / "score.json").exists()
    results = (recipe / "RESULTS.md").read_text()
    assert "## Data-efficiency study" in results and "|ASR|test|`zipper_debug_frozen`|" in results
    assert "95 % bootstrap interval" in results and "Wilcoxon signed-rank" in results
    assert "./run_study.sh" in results or "study.sh" in results
    assert (recipe / "images" / "wer_vs_aligned.png").read_bytes()[:4] == b"\x89PNG"


def test_stages_past_the_last_are_refused_clearly(tmp_path):
    recipe = make_recipe_copy(tmp_path)
    result = subprocess.run(["./run.sh", "--stage", "12", "--stop_stage", "13"], cwd=recipe, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "there is no stage 13 (stages are 1-12)" in result.stdout + result.stderr


def test_unknown_option_is_an_error(tmp_path):
    recipe = make_recipe_copy(tmp_path)
    result = subprocess.run(["./run.sh", "--no_such_option", "1"], cwd=recipe, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "no_such_option" in result.stderr
