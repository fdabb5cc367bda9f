"""Stage 12 CLIs on tiny decode dirs: ASR scoring, TTS judging (gold / target / best of N, oracle), and
RESULTS.md with the data-efficiency table and plot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.token_data import make_text_dir, make_units
from zipper.bin import judge_train, score, show_results
from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.scoring.wer import Normalizer, character_error_rate
from zipper.utils.atomic import atomic_write_json, mark_done


def make_decode_dir(path: Path, task: str, data_dir: Path, units_dir: Path) -> Path:
    path.mkdir(parents=True)
    (path / "log").mkdir()
    atomic_write_json(path / "decode.json", {"task": task, "data_dir": str(data_dir), "units_dir": str(units_dir)})
    mark_done(path)
    return path


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A tiny data set with units, and a judge trained on it for a few steps."""
    root = tmp_path_factory.mktemp("judge")
    data = make_text_dir(root / "data" / "train", 12, prefix="spk")
    utts = list(read_kv(data / "text"))
    units = make_units(root / "units" / "train", utts)
    exp = root / "exp" / "judge_debug"
    judge_train.main(["--train_units", str(units), "--train_text", str(data), "--valid_units", str(units),
                      "--valid_text", str(data), "--output_dir", str(exp), "--max_epoch", "1", "--batch_bins", "400",
                      "--judge_conf", "{d_model: 16, n_heads: 2, d_ff: 16, n_layers: 1}", "--log_level", "WARNING"])
    return root, data, units, exp


def test_asr_scores_against_hand_counted_errors(tmp_path):
    data = tmp_path / "data" / "test"
    data.mkdir(parents=True)
    write_kv(data / "text", {"a-1": "The cat sat.", "a-2": "on the mat", "a-3": "hello"})
    decode = make_decode_dir(tmp_path / "decode" / "test", "asr", data, tmp_path / "units")
    write_kv(decode / "text", {"a-1": "the cat sat down", "a-2": "on a", "a-3": ""})
    summary = score.main(["--decode_dir", str(decode)])
    # a-1: 1 insertion; a-2: 1 substitution + 1 deletion; a-3: 1 deletion -> 4 errors / 7 words
    assert (summary["Snt"], summary["Wrd"]) == (3, 7)
    assert summary["wer"] == pytest.approx(400 / 7)
    result = (decode / "score_wer" / "result.txt").read_text()
    assert "| test | 3 | 7 |" in result
    assert "%WER 57.14 [ 4 / 7, 1 ins, 2 del, 1 sub ]" in (decode / "score_wer" / "errs-test.txt").read_text()


def test_asr_hypothesis_for_an_unknown_utterance_is_an_error(tmp_path):
    data = tmp_path / "data" / "test"
    data.mkdir(parents=True)
    write_kv(data / "text", {"a-1": "yes"})
    decode = make_decode_dir(tmp_path / "decode", "asr", data, tmp_path / "units")
    write_kv(decode / "text", {"a-1": "yes", "zz-9": "no"})
    with pytest.raises(KeyError, match="'zz-9' is not in the reference"):
        score.main(["--decode_dir", str(decode)])


def test_unfinished_decode_dir_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(FileNotFoundError, match="stage 10 has not finished"):
        score.main(["--decode_dir", str(tmp_path / "d")])


def test_tts_gold_target_best_of_n_and_oracle(judged, tmp_path):
    root, data, units, exp = judged
    judge = tmp_path / "judge"
    shutil.copytree(exp, judge)
    decode = make_decode_dir(tmp_path / "decode_tts" / "train", "tts", data, units)
    (decode / "nbest").mkdir()
    shutil.copy(units / "provenance.json", decode / "provenance.json")
    utts = list(read_kv(data / "text"))
    gold_scp = read_kv(units / "units.scp")
    other = make_units(tmp_path / "other_units", utts, seed=7)
    write_kv(decode / "units.scp", read_kv(other / "units.scp"))
    write_kv(decode / "nbest" / "units.1.scp", read_kv(other / "units.scp"))
    write_kv(decode / "nbest" / "units.2.scp", gold_scp)  # sample 2 = the gold units
    with pytest.raises(ValueError, match="--judge_exp is needed"):
        score.main(["--decode_dir", str(decode)])
    summary = score.main(["--decode_dir", str(decode), "--judge_exp", str(judge)])
    assert summary["samples"] == 2
    # the gold units are among the samples: best of 2 against the judge's gold transcripts has no error
    assert summary["wer_target_best_of_n"] == 0.0
    assert summary["wer_gold_best_of_n"] <= summary["wer_gold"]
    oracle = json.loads((judge / "gold_train" / "score_wer" / "score.json").read_text())
    assert oracle["task"] == "oracle" and summary["oracle_wer"] == oracle["wer"]
    gold_hyps = read_kv(judge / "gold_train" / "text", allow_empty_value=True)
    assert oracle["cer"] == pytest.approx(character_error_rate(read_kv(data / "text"), gold_hyps, Normalizer()))
    first = read_kv(decode / "judge_unit" / "text.1", allow_empty_value=True)
    assert summary["cer_gold"] == pytest.approx(character_error_rate(read_kv(data / "text"), first, Normalizer()))
    assert summary["wer_gold_best_of_n"] == pytest.approx(oracle["wer"]) or summary["wer_gold_best_of_n"] < oracle["wer"]
    for kind in ("gold", "target"):
        assert (decode / f"score_unit_{kind}" / "result.txt").exists()
        assert (decode / f"score_unit_{kind}" / "best_of_2" / "errs-train.txt").exists()
    assert set(read_kv(decode / "judge_unit" / "text.2", allow_empty_value=True)) == set(utts)


def test_tts_units_of_another_inventory_are_refused(judged, tmp_path):
    root, data, units, exp = judged
    other = make_units(tmp_path / "units", list(read_kv(data / "text")))
    provenance = json.loads((other / "provenance.json").read_text())
    provenance["n_clusters"] = 13
    (other / "provenance.json").write_text(json.dumps(provenance))
    decode = make_decode_dir(tmp_path / "decode", "tts", data, other)
    shutil.copy(other / "provenance.json", decode / "provenance.json")
    write_kv(decode / "units.scp", read_kv(other / "units.scp"))
    with pytest.raises(Exception, match="n_clusters"):
        score.main(["--decode_dir", str(decode), "--judge_exp", str(exp)])


def fake_fusion_exp(root: Path, name: str, aligned: str, freeze: list[str], asr_wer: float, tts_wer: float) -> None:
    exp = root / name
    exp.mkdir(parents=True)
    model = "vocab_expansion" if name.startswith("vocabexp") else "zipper"
    (exp / "config.yaml").write_text(yaml.safe_dump({"model": model, "model_conf": {"freeze": freeze},
                                                     "train_units": f"dump/units/km/{aligned}"}))
    atomic_write_json(exp / "scores.json", {"valid": {"loss": 2.5, "asr_loss": 3.0, "tts_loss": 2.0}})
    mark_done(exp)
    asr = exp / "decode_asr_decode" / "test" / "score_wer"
    asr.mkdir(parents=True)
    atomic_write_json(asr / "score.json", {"task": "asr", "set": "test", "wer": asr_wer, "Snt": 4, "Wrd": 20,
                                           "Corr": 50.0, "Sub": 30.0, "Del": 20.0, "Ins": 0.0, "Err": asr_wer,
                                           "S.Err": 100.0})
    tts = exp / "decode_tts_decode" / "test" / "score_unit_gold"
    tts.mkdir(parents=True)
    atomic_write_json(tts / "score.json", {"task": "tts", "set": "test", "judge": "unit", "samples": 1,
                                           "wer_gold": tts_wer, "wer_target": tts_wer - 1, "oracle_wer": 10.0})


def test_show_results_tables_and_study_plot(tmp_path):
    exp = tmp_path / "exp"
    for pct, wers in ((1, (90.0, 95.0, 99.5)), (10, (60.0, 70.0, 98.0)), (100, (30.0, 40.0, 50.0))):
        fake_fusion_exp(exp, f"zipper_s_train_paired_{pct}pct", f"train_paired_{pct}pct", ["text"], wers[0], 80.0)
        fake_fusion_exp(exp, f"zipper_s_frozen_train_paired_{pct}pct", f"train_paired_{pct}pct", ["text", "speech"],
                        wers[1], 85.0)
        fake_fusion_exp(exp, f"vocabexp_s_train_paired_{pct}pct", f"train_paired_{pct}pct", [], wers[2], 90.0)
        # what fusion cost the text tower: its perplexity on text alone, 40 before fusion
        atomic_write_json(exp / f"zipper_s_train_paired_{pct}pct" / "fused_lm_text.json",
                          {"tower_ppl": 40.0, "ppl": 40.0 + 100 / pct})
    oracle = exp / "judge_s_km" / "gold_test" / "score_wer"
    oracle.mkdir(parents=True)
    atomic_write_json(oracle / "score.json", {"task": "oracle", "set": "test", "wer": 12.5, "cer": 4.25})
    out = tmp_path / "RESULTS.md"
    text = show_results.main(["--exp_root", str(exp), "--output", str(out), "--command", "./run_study.sh"])
    assert "|modality|system|tower|1%|10%|100%|\n|---|---|---|---|---|---|\n|text|`zipper_s`|40.00|140.00|50.00|41.00|" in text
    assert out.read_text() == text
    assert "./run_study.sh" in text and "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in text
    assert "|Oracle (gold units, `judge_s_km`)|-|test|unit CTC judge|12.50|4.25|-|-|" in text
    assert "|ASR|test|`vocabexp_s`|99.50|98.00|50.00|" in text
    # with zipper.sh's history of runs, RESULTS.md lists every run, not only the one that wrote it
    (exp / "commands.log").write_text("./run.sh  # 2026-11-25T02:35:17\n./run.sh --stage 12  # 2026-11-25T04:08:00\n")
    text = show_results.main(["--exp_root", str(exp), "--output", str(out), "--command", "./run.sh --stage 12"])
    assert "all of\n```sh\n./run.sh\n```\nwith these options added, oldest first:" in text
    assert "|2026-11-25T02:35:17|(none)|\n|2026-11-25T04:08:00|`--stage 12`|" in text
    assert "|ASR|test|`zipper_s_frozen`|95.00|70.00|40.00|" in text
    assert "|`zipper_s_frozen_train_paired_10pct`|zipper|train_paired_10pct|text, speech|" in text
    png = tmp_path / "images" / "wer_vs_aligned.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![WER vs aligned fraction](images/wer_vs_aligned.png)" in text


def test_each_search_of_an_experiment_gets_its_own_study_row(tmp_path):
    exp = tmp_path / "exp"
    for name, wer in (("zipper_s_train_paired_100pct", 30.0), ("vocabexp_s_train_paired_100pct", 31.0)):
        fake_fusion_exp(exp, name, "train_paired_100pct", [], wer, 60.0)
        again = exp / name / "decode_asr_decode_att" / "test" / "score_wer"  # the same model, another search
        again.mkdir(parents=True)
        atomic_write_json(again / "score.json", {"task": "asr", "set": "test", "wer": wer + 40, "Snt": 4, "Wrd": 20,
                                                 "Corr": 50.0, "Sub": 30.0, "Del": 20.0, "Ins": 0.0, "Err": wer + 40,
                                                 "S.Err": 100.0})
    text = show_results.main(["--exp_root", str(exp), "--output", str(tmp_path / "RESULTS.md")])
    assert "|ASR|test, decode_asr_decode|`zipper_s`|30.00|" in text
    assert "|ASR|test, decode_asr_decode_att|`zipper_s`|70.00|" in text
    assert "|ASR|test, decode_asr_decode_att|`vocabexp_s`|71.00|" in text
    assert "|TTS|test|`zipper_s`|60.00|" in text  # one search for TTS: the set alone


def test_history_of_runs_shares_whole_options_only(tmp_path):
    from zipper.scoring.results import history_of_runs

    log = tmp_path / "commands.log"
    log.write_text("./zipper.sh --nj 2 --stage 1 --stop_stage 8  # t1\n./zipper.sh --nj 2 --stage 12  # t2\n")
    text = history_of_runs(log)  # "--stage 1" and "--stage 12" share "--stage 1" as text, not as an option
    assert "all of\n```sh\n./zipper.sh --nj 2\n```" in text
    assert "|t1|`--stage 1 --stop_stage 8`|\n|t2|`--stage 12`|" in text
    log.write_text("./run.sh --a 1  # t1\n")  # one run: shown whole
    expected = f"Produced by these runs (`{log}`, oldest first):\n```sh\n./run.sh --a 1  # t1\n```\n"
    assert history_of_runs(log) == expected
    log.write_text("./run.sh --a 1  # t1\nbash other.sh  # t2\n")  # nothing shared: each whole
    assert "```sh\n./run.sh --a 1  # t1\nbash other.sh  # t2\n```" in history_of_runs(log)


def test_show_results_without_experiments_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the recipe's stages first"):
        show_results.main(["--exp_root", str(tmp_path / "exp"), "--output", str(tmp_path / "R.md")])


def test_show_results_names_the_vocoder_of_each_vocoded_row(tmp_path):
    exp = tmp_path / "exp"
    fake_fusion_exp(exp, "zipper_s_train_paired_100pct", "train_paired_100pct", ["text"], 30.0, 40.0)
    for tag, wer in (("s_train_speech_km", 90.0), ("s_dil2_train_speech_km", 80.0)):  # stage 11, two vocoders
        judged = exp / "zipper_s_train_paired_100pct" / "decode_tts_decode" / "test" / f"vocoded_{tag}"
        (judged / "judge_whisper_base").mkdir(parents=True)
        atomic_write_json(judged / "judge_whisper_base" / "judge.json", {"model": "base", "wer": wer,
                                                                         "wer_target": wer + 1})
    text = show_results.main(["--exp_root", str(exp), "--output", str(tmp_path / "RESULTS.md")])
    assert ("|`zipper_s_train_paired_100pct` (vocoded by `vocoder_s_dil2_train_speech_km`)|text|test|Whisper base|"
            "80.00|-|81.00|-|") in text
    assert "(vocoded by `vocoder_s_train_speech_km`)|text|test|Whisper base|90.00|-|91.00|-|" in text
    text = show_results.main(["--exp_root", str(exp), "--output", str(tmp_path / "R2.md"), "--exclude", "*_dil2_*"])
    assert "vocoder_s_dil2_train_speech_km" not in text and "vocoder_s_train_speech_km`)" in text  # left out with it
    legacy = exp / "zipper_s_train_paired_100pct" / "decode_tts_decode" / "test" / "judge_whisper_base"
    legacy.mkdir()  # stage 11 before the vocoded_<tag> dirs: the audio in the decode dir itself
    atomic_write_json(legacy / "judge.json", {"model": "base", "wer": 70.0})
    text = show_results.main(["--exp_root", str(exp), "--output", str(tmp_path / "RESULTS.md")])
    assert "|`zipper_s_train_paired_100pct` (vocoded)|text|test|Whisper base|70.00|-|-|-|" in text


def test_show_results_fused_table_has_the_audio_gain(tmp_path):
    exp = tmp_path / "exp"
    fake_fusion_exp(exp, "zipper_s_train_paired_100pct", "train_paired_100pct", ["text"], 30.0, 40.0)
    atomic_write_json(exp / "zipper_s_train_paired_100pct" / "scores.json",
                      {"valid": {"loss": 2.5, "asr_loss": 3.0, "tts_loss": 2.0, "asr_gain": 1.25, "tts_gain": 0.5}})
    fake_fusion_exp(exp, "zipper_s_train_paired_10pct", "train_paired_10pct", ["text"], 50.0, 60.0)
    for name in ("zipper_s_train_paired_100pct", "zipper_s_train_paired_10pct"):
        (exp / name / "images").mkdir()
        (exp / name / "images" / "fusion.png").write_bytes(b"\x89PNG " + name.encode())
    text = show_results.main(["--exp_root", str(exp), "--output", str(tmp_path / "RESULTS.md")])
    assert "|valid loss|ASR loss|TTS loss|ASR gain|TTS gain|" in text
    assert "|text|2.50|3.00|2.00|1.25|0.50|" in text
    # the gates plot of the largest fraction is copied beside RESULTS.md (exp/ is not committed) and shown
    copy = tmp_path / "images" / "fusion_zipper_s_train_paired_100pct.png"
    assert copy.read_bytes() == b"\x89PNG zipper_s_train_paired_100pct"
    assert "(images/fusion_zipper_s_train_paired_100pct.png)" in text
    assert not (tmp_path / "images" / "fusion_zipper_s_train_paired_10pct.png").exists()


def write_per_utt(score_dir: Path, errors: list[int], words: int = 10) -> float:
    """per_utt.tsv as score.py writes it (utterances u-0, u-1, ... of `words` words); returns the WER."""
    rows = ["utt\tref_words\terrors\tsub\tdel\tins"] + [f"u-{i}\t{words}\t{e}\t{e}\t0\t0" for i, e in enumerate(errors)]
    (score_dir / "per_utt.tsv").write_text("\n".join(rows) + "\n")
    return 100 * sum(errors) / (words * len(errors))


def test_show_results_study_intervals_and_significance(tmp_path):
    from zipper.scoring.significance import bootstrap_wer_interval

    exp = tmp_path / "exp"
    # per-utterance errors (8 utterances of 10 words): (ASR, TTS) of each system at each fraction
    errors = {
        (10, "zipper_s"): ([1] * 8, [6] * 8),  # ASR better than the baseline on every utterance; TTS worse
        (10, "vocabexp_s"): ([5] * 8, [2] * 8),
        (100, "zipper_s"): ([1, 2] * 4, [3] * 8),  # ASR: as many wins as losses; TTS: the same as the baseline
        (100, "vocabexp_s"): ([2, 1] * 4, [3] * 8),
    }
    for (pct, system), (asr_errors, tts_errors) in errors.items():
        name = f"{system}_train_paired_{pct}pct"
        fake_fusion_exp(exp, name, f"train_paired_{pct}pct", ["text"] if system.startswith("zipper") else [],
                        100 * sum(asr_errors) / 80, 100 * sum(tts_errors) / 80)
        write_per_utt(exp / name / "decode_asr_decode" / "test" / "score_wer", asr_errors)
        write_per_utt(exp / name / "decode_tts_decode" / "test" / "score_unit_gold", tts_errors)
    out = tmp_path / "RESULTS.md"
    text = show_results.main(["--exp_root", str(exp), "--output", str(out)])
    # the same WER on every utterance: a zero-width interval.  8 of 8 utterances better: exact two-sided
    # p = 2 / 2^8 < 0.05 (*↓); 4 better and 4 worse by the same amount: p = 1 (n.s.)
    low, high = bootstrap_wer_interval([1, 2] * 4, [10] * 8)
    assert 10 < low < 15 < high < 20
    assert f"|ASR|test|`zipper_s`|10.00 [10.00, 10.00] *↓|15.00 [{low:.2f}, {high:.2f}] n.s.|" in text
    low, high = bootstrap_wer_interval([2, 1] * 4, [10] * 8)
    assert f"|ASR|test|`vocabexp_s`|50.00 [50.00, 50.00]|15.00 [{low:.2f}, {high:.2f}]|" in text
    assert "|TTS|test|`zipper_s`|60.00 [60.00, 60.00] *↑|30.00 [30.00, 30.00] n.s.|" in text
    assert "|TTS|test|`vocabexp_s`|20.00 [20.00, 20.00]|30.00 [30.00, 30.00]|" in text
    assert "Each WER with its 95 % bootstrap interval (1000 resamples" in text
    assert "`*↓` / `*↑`: WER significantly lower / higher than the single-decoder baseline (`vocabexp_s`)" in text
    assert (tmp_path / "images" / "wer_vs_aligned.png").read_bytes()[:4] == b"\x89PNG"
    # one fraction alone (the main job, or ablations at 100 %): intervals and marks, no plot
    only_100 = tmp_path / "only_100"
    for name in ("zipper_s", "vocabexp_s"):
        shutil.copytree(exp / f"{name}_train_paired_100pct", only_100 / f"{name}_train_paired_100pct")
    single = show_results.main(["--exp_root", str(only_100), "--output", str(tmp_path / "one" / "R.md")])
    assert "## WER %, intervals, significance\n" in single and "|task|set|system|100%|\n" in single
    low, high = bootstrap_wer_interval([1, 2] * 4, [10] * 8)
    assert f"|ASR|test|`zipper_s`|15.00 [{low:.2f}, {high:.2f}] n.s.|" in single
    assert "|TTS|test|`zipper_s`|30.00 [30.00, 30.00] n.s.|" in single
    assert "wer_vs_aligned" not in single and not (tmp_path / "one" / "images").exists()
    # a cell without per-utterance scores (scored before per_utt.tsv existed) shows its WER alone, unmarked
    (exp / "zipper_s_train_paired_100pct" / "decode_asr_decode" / "test" / "score_wer" / "per_utt.tsv").unlink()
    text = show_results.main(["--exp_root", str(exp), "--output", str(out)])
    assert "|ASR|test|`zipper_s`|10.00 [10.00, 10.00] *↓|15.00|" in text


def test_show_results_leaves_out_diagnostics_and_lists_the_vocoder(tmp_path):
    exp = tmp_path / "exp"
    fake_fusion_exp(exp, "zipper_s_train_paired_100pct", "train_paired_100pct", ["text"], 30.0, 40.0)
    fake_fusion_exp(exp, "diag_zipper_s_train_paired_100pct", "train_paired_100pct", ["text"], 99.0, 99.0)
    vocoder = exp / "vocoder_s_train_speech_km"
    vocoder.mkdir()
    atomic_write_json(vocoder / "vocoder.json", {"kind": "world"})
    (vocoder / "run.sh").write_text("#!/bin/sh\n")
    out = tmp_path / "RESULTS.md"
    text = show_results.main(["--exp_root", str(exp), "--output", str(out)])
    assert "`zipper_s_train_paired_100pct`" in text and "diag_" not in text
    assert f"|`{vocoder}`|`bash {vocoder}/run.sh`|" in text
    text = show_results.main(["--exp_root", str(exp), "--output", str(out), "--exclude"])
    assert "|`diag_zipper_s_train_paired_100pct`|zipper|" in text
