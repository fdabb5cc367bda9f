"""Scoring one decoding directory (stage 10's output) against its set's transcripts: ASR word error rates, and
TTS through a judge that transcribes the generated units (WER gold, WER target, best of n); zipper.bin.score is
its command line, where the two kinds of score are described.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.scoring.wer import Alignment, Normalizer, align, character_error_rate, write_scoring
from zipper.utils.atomic import atomic_write_json, is_done, mark_done, read_json


def write_scored(out: Path, name: str, refs: Mapping[str, str], hyps: Mapping[str, str], normalizer: Normalizer,
                 **summary) -> dict:
    """The sclite-style files, and score.json (`summary` + set, WER, CER and the counts) with .done, in out."""
    counts = write_scoring(out, name, refs, hyps, normalizer)
    result = {**summary, "set": name, "wer": counts.wer, "cer": character_error_rate(refs, hyps, normalizer),
              **counts.row()}
    atomic_write_json(out / "score.json", result)
    mark_done(out)
    return result


def score_asr(decode_dir: Path, refs: Mapping[str, str], name: str, normalizer: Normalizer) -> dict:
    hyps = read_kv(decode_dir / "text", allow_empty_value=True)
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise KeyError(f"{decode_dir / 'text'}: utterance '{extra[0]}' is not in the reference ({len(extra)} such)")
    return write_scored(decode_dir / "score_wer", name, refs, hyps, normalizer, task="asr")


def best_per_utterance(candidates: Sequence[Mapping[str, str]], refs: Mapping[str, str],
                       normalizer: Normalizer) -> dict[str, str]:
    """For each utterance, the candidate hypothesis with the fewest errors against its reference."""
    per_candidate: list[dict[str, Alignment]] = []
    for hyps in candidates:
        _, alignments = align(refs, hyps, normalizer)
        per_candidate.append({a.utt: a for a in alignments})
    best = {}
    for utt in refs:
        k = min(range(len(candidates)), key=lambda i: (per_candidate[i][utt].counts.err, i))
        best[utt] = candidates[k].get(utt, "")
    return best


def judge_units_dir(units_scp: Path, judge_exp: Path, out_text: Path, device: str) -> dict[str, str]:
    """Judge transcripts of a units.scp (cached in out_text; rewritten only when missing)."""
    if out_text.exists():
        return read_kv(out_text, allow_empty_value=True)
    from zipper.scoring.unit_judge import lexicon_decoder, load_judge, load_units, transcribe_all

    model, vocab, config = load_judge(judge_exp, device=device)
    units_dir = units_scp.parent.parent if units_scp.parent.name == "nbest" else units_scp.parent
    units = load_units(units_dir, dedup_runs=bool(config.get("dedup")), inventory=config["inventory"], scp=units_scp)
    hyps = transcribe_all(model, vocab, units, device=device, lexicon=lexicon_decoder(config, vocab))
    write_kv(out_text, hyps)
    return hyps


def judge_gold(judge_exp: Path, gold_units_dir: Path, name: str, refs: Mapping[str, str], normalizer: Normalizer,
               device: str) -> tuple[dict[str, str], dict]:
    """The judge on the set's gold units: its transcripts (WER-target references) and the oracle score."""
    out = judge_exp / f"gold_{name}"
    hyps = judge_units_dir(gold_units_dir / "units.scp", judge_exp, out / "text", device)
    if is_done(out / "score_wer"):
        return hyps, read_json(out / "score_wer" / "score.json")
    return hyps, write_scored(out / "score_wer", name, refs, hyps, normalizer, task="oracle",
                              units_dir=str(gold_units_dir))


def score_tts(decode_dir: Path, refs: Mapping[str, str], name: str, judge: str,
              sample_hyps: Sequence[Mapping[str, str]], target_refs: Mapping[str, str], oracle: dict,
              normalizer: Normalizer) -> dict:
    """WER gold and WER target of judged TTS output (first sample, and best of the samples when several)."""
    summary = {"task": "tts", "set": name, "judge": judge, "samples": len(sample_hyps), "oracle_wer": oracle["wer"]}
    rows = {}
    for kind, references in (("gold", refs), ("target", target_refs)):
        out = decode_dir / f"score_{judge}_{kind}"
        counts = write_scoring(out, name, references, sample_hyps[0], normalizer)
        summary[f"wer_{kind}"] = counts.wer
        summary[f"cer_{kind}"] = character_error_rate(references, sample_hyps[0], normalizer)
        rows[kind] = counts.row()
        if len(sample_hyps) > 1:
            best = best_per_utterance(sample_hyps, references, normalizer)
            best_counts = write_scoring(out / f"best_of_{len(sample_hyps)}", name, references, best, normalizer)
            summary[f"wer_{kind}_best_of_n"] = best_counts.wer
    for kind, row in rows.items():  # both summaries carry both WERs (show_results reads either)
        out = decode_dir / f"score_{judge}_{kind}"
        atomic_write_json(out / "score.json", {**summary, "kind": kind, **row})
        mark_done(out)
    return summary


def score_decode_dir(decode_dir: Path, data_dir: str = "", gold_units_dir: str = "", judge_exp: str = "",
                     normalizer: Normalizer | None = None, device: str = "cpu") -> dict:
    """Score a finished decode dir (ASR or TTS, from its decode.json); the summary that score.json holds."""
    if not is_done(decode_dir):
        raise FileNotFoundError(f"{decode_dir}/.done is missing: stage 10 has not finished this decoding")
    decode = read_json(decode_dir / "decode.json")
    data = Path(data_dir or decode["data_dir"])
    name, normalizer = data.name, normalizer or Normalizer()
    refs = read_kv(data / "text")
    if decode["task"] == "asr":
        return score_asr(decode_dir, refs, name, normalizer)
    if not judge_exp:
        raise ValueError(f"{decode_dir} holds TTS output: --judge_exp is needed to score it")
    judge = Path(judge_exp)
    target_refs, oracle = judge_gold(judge, Path(gold_units_dir or decode["units_dir"]), name, refs, normalizer,
                                     device)
    scps = sorted((decode_dir / "nbest").glob("units.*.scp"), key=lambda p: int(p.name.split(".")[1]))
    scps = scps or [decode_dir / "units.scp"]
    samples = [judge_units_dir(scp, judge, decode_dir / "judge_unit" / f"text.{k + 1}", device)
               for k, scp in enumerate(scps)]
    return score_tts(decode_dir, refs, name, "unit", samples, target_refs, oracle, normalizer)
