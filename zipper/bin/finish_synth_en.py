"""Write the synth_en speech data directories once every wav of the plan exists, then mark the corpus done.

dev, test, train_paired_100pct (wav.scp, text, utt2spk, spk2utt, utt2dur, utt2gender), its nested subsets
(train_paired_10pct ⊂ 100pct, 1pct ⊂ 10pct), train_speech (the same without text); prints and stores
(<local_dir>/summary.txt) where each set is and how big it is.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

import soundfile
from tqdm import tqdm

from zipper.corpora import synth_en, text_sources, voices
from zipper.corpora.synth_en import DONE_NAME, PAIRED_FULL, VOCODER_SET, SynthError
from zipper.data.kaldi_dir import UTT_FILES, DataDirError, read_kv, spk2utt_from_utt2spk, validate_data_dir, write_kv
from zipper.data.subset import fraction_tag, nested_fractions, subset_data_dir
from zipper.utils.atomic import atomic_write_text, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main
from zipper.utils.log import log_run_header

logger = logging.getLogger(__name__)

SET_DIRS = {"dev": "dev", "test": "test", "train_paired": PAIRED_FULL, "train_speech": "train_speech",
            VOCODER_SET: VOCODER_SET}
SPEECH_ONLY = ("train_speech", VOCODER_SET)  # no transcripts: unpaired speech, and the vocoder's


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--local_dir", default="data/local/synth_en", help="what prepare_synth_en wrote")
    return parser


def wav_durations(items: Sequence[synth_en.PlanItem]) -> dict[str, float]:
    """Duration of every planned wav; fail naming the missing or malformed ones."""
    durations, problems = {}, []
    for item in tqdm(items, desc="checking wavs", unit="utt", disable=None):
        try:
            info = soundfile.info(item.wav)
        except (OSError, RuntimeError, soundfile.LibsndfileError):
            problems.append(item.wav)
            continue
        if info.samplerate != synth_en.FS or info.channels != 1 or info.frames == 0:
            problems.append(f"{item.wav} ({info.samplerate} Hz, {info.channels} channels, {info.frames} samples)")
            continue
        durations[item.utt] = info.frames / info.samplerate
    if problems:
        raise SynthError(f"{len(problems)} of {len(items)} planned wavs are missing or not 16 kHz mono, e.g. "
                         f"{problems[0]}; run the synthesis jobs (synthesize_synth_en) again")
    return durations


def write_speech_dir(d: Path, items: Sequence[synth_en.PlanItem], pool: Sequence[text_sources.Sentence],
                     durations: dict[str, float], genders: dict[str, str], with_text: bool) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name in UTT_FILES + ("spk2utt",):  # nothing stale from an earlier run with other files
        (d / name).unlink(missing_ok=True)
    write_kv(d / "wav.scp", {i.utt: i.wav for i in items})
    if with_text:
        write_kv(d / "text", {i.utt: pool[i.sentence].norm for i in items})
    utt2spk = {i.utt: i.spk for i in items}
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    write_kv(d / "utt2dur", {i.utt: f"{durations[i.utt]:.3f}" for i in items})
    write_kv(d / "utt2gender", {i.utt: genders[i.spk] for i in items})


def describe(d: Path) -> dict[str, object]:
    utt2spk = read_kv(d / "utt2spk")
    row: dict[str, object] = {"dir": str(d), "utts": len(utt2spk), "speakers": len(set(utt2spk.values()))}
    if (d / "utt2dur").is_file():
        row["hours"] = round(sum(float(v) for v in read_kv(d / "utt2dur").values()) / 3600, 3)
    if (d / "text").is_file():
        row["words"] = sum(len(v.split()) for v in read_kv(d / "text").values())
    return row


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    log_run_header("zipper.bin.finish_synth_en", vars(args))
    local = Path(args.local_dir)
    config_path = local / "config.json"
    if not config_path.is_file():
        raise SynthError(f"{config_path}: missing; run prepare_synth_en first")
    config = json.loads(config_path.read_text(encoding="utf-8"))["config"]
    data = Path(config["data_dir"])
    pool = text_sources.read_pool(local / "sentences.tsv")
    plan = synth_en.read_plan(local / "plan.tsv")
    genders = {v.spk: v.gender for v in voices.parse_voices((local / "voices.txt").read_text(encoding="utf-8"))}
    durations = wav_durations(plan)

    planned = {i.set for i in plan}
    for name, dirname in SET_DIRS.items():
        if name == VOCODER_SET and name not in planned:
            continue
        items = [i for i in plan if i.set == name]
        write_speech_dir(data / dirname, items, pool, durations, genders, with_text=name not in SPEECH_ONLY)
    full = data / PAIRED_FULL
    fractions = sorted(config["paired_fractions"], reverse=True)
    subsets = nested_fractions(sorted(read_kv(full / "utt2spk")), [1.0] + fractions, config["seed"])
    names = ["dev", "test", PAIRED_FULL]
    for f in fractions:
        d = data / f"train_paired_{fraction_tag(f)}"
        for stale in UTT_FILES + ("spk2utt",):
            (d / stale).unlink(missing_ok=True)
        subset_data_dir(full, d, subsets[f])
        names.append(d.name)
    names += ["train_speech", "train_text"] + ([VOCODER_SET] if VOCODER_SET in planned else [])

    rows = []
    for name in names:
        d = data / name
        validate_data_dir(d, need_text=name not in SPEECH_ONLY, need_wav=name != "train_text")
        rows.append({"set": name, **describe(d)})
    lines = [f"{'set':<22} {'utts':>7} {'spk':>4} {'hours':>7} {'words':>8}  dir"]
    for r in rows:
        hours = f"{r['hours']:.2f}" if "hours" in r else "-"
        lines.append(f"{r['set']:<22} {r['utts']:>7} {r['speakers']:>4} {hours:>7} {r.get('words', '-'):>8}  "
                     f"{r['dir']}")
    table = "\n".join(lines) + "\n"
    atomic_write_text(local / "summary.txt", table)
    print(table, end="", flush=True)
    mark_done(local, DONE_NAME, {"config": config, "sets": rows})
    logger.info("synth_en is complete (%s)", local / f".done.{DONE_NAME}")


if __name__ == "__main__":
    run_main(main, expected_errors=(SynthError, DataDirError, OSError, ValueError))
