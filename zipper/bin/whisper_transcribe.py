"""Transcribe a wav.scp with the Whisper judge (faster-whisper, local model) into a Kaldi `text`.

The judge of TTS output: what a strong ASR model hears in synthesised (or vocoded, or original) speech.  With
--ref_text the transcripts are also scored (zipper.scoring.wer: result.txt, errs-, recogs-, wer-summary- in
<output_dir>/score_wer/).  With --target_text (Whisper's transcript of the same set's vocoded gold units) the
transcripts are also scored against it, the paper's "WER target", in <output_dir>/score_wer_target/; utterances
whose target transcript is empty are left out of that score (and counted in judge.json).  --model is a CTranslate2 model dir or a packaged model name (base, tiny.en: see
zipper/scoring/whisper_judge.py); decoding is deterministic (beam search, temperature 0).
Run as `nj` jobs (`--nj N --job J`), then once with `--merge true`; with --nj 1 one call does both.
Writes <output_dir>/text, judge.json (model, settings, speed) and .done.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from zipper.data.audio import AudioError, read_audio
from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.scoring.wer import Normalizer, score_files, write_scoring
from zipper.scoring.whisper_judge import WhisperJudge, WhisperModelError
from zipper.utils.atomic import atomic_write_json, mark_done, read_json
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main
from zipper.utils.sharding import add_sharding_options, finished_job_dirs, mark_job_finished, pending_job

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__, config=True)
    parser.add_argument("--wav_scp", required=True, help="wav.scp (or a dir holding one) of the audio to judge")
    parser.add_argument("--output_dir", required=True, help="where text, judge.json and score_wer/ go")
    parser.add_argument("--model", default="base", help="Whisper model: CTranslate2 dir, or base / tiny.en (packaged)")
    parser.add_argument("--beam_size", type=positive_int, default=5, help="beam size")
    parser.add_argument("--language", default="en", help="language code (no language detection)")
    parser.add_argument("--compute_type", default="int8",
                        help="CTranslate2 compute type: int8 (1.2x faster on CPU than the model's own float "
                             "weights, same WER within noise), default (the model's), float32, ...")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--num_threads", type=positive_int, default=1, help="CPU threads per job")
    parser.add_argument("--ref_text", default="", help="reference `text` (or data dir): score the transcripts")
    parser.add_argument("--target_text", default="",
                        help="Whisper's `text` of the vocoded gold units: also score against it (WER target)")
    parser.add_argument("--score_name", default="whisper", help="name in the scoring files (errs-<name>.txt, ...)")
    add_sharding_options(parser)
    return parser


def settings(args) -> dict:
    return {"model": args.model, "beam_size": args.beam_size, "language": args.language,
            "compute_type": args.compute_type}


def run_job(args, out_dir: Path, wavs: dict[str, str]) -> None:
    pending = pending_job(out_dir, args.nj, args.job, list(wavs), wav_scp=str(args.wav_scp), **settings(args))
    if pending is None:
        return
    mine, directory, key = pending
    judge = WhisperJudge(args.model, args.beam_size, args.language, args.device, args.compute_type, args.num_threads)
    logger.info("job %d/%d: %d utterances with Whisper %s (%s)", args.job, args.nj, len(mine), args.model,
                judge.model_dir)
    hyps: dict[str, str] = {}
    begin, audio_seconds = time.time(), 0.0
    for n, utt in enumerate(mine, 1):
        try:
            fs, samples = read_audio(wavs[utt])
        except AudioError as e:
            raise AudioError(f"utterance '{utt}' of {args.wav_scp}: {e}") from e
        audio_seconds += len(samples) / fs
        hyps[utt] = judge(samples, fs)
        if n % 50 == 0:
            logger.info("transcribed %d / %d utterances", n, len(mine))
    seconds = time.time() - begin
    directory.mkdir(parents=True, exist_ok=True)
    write_kv(directory / "text", hyps)
    atomic_write_json(directory / "timing.json", {"seconds": seconds, "audio_seconds": audio_seconds,
                                                  "utts": len(mine)})
    mark_job_finished(directory, key)
    logger.info("job %d/%d: %d utterances (%.1f s of audio) in %.1f s, RTF %.3f", args.job, args.nj, len(mine),
                audio_seconds, seconds, seconds / max(audio_seconds, 1e-9))


def merge(args, out_dir: Path, wavs: dict[str, str]) -> None:
    dirs = finished_job_dirs(out_dir, args.nj)
    hyps: dict[str, str] = {}
    timing = []
    for d in dirs:
        hyps.update(read_kv(d / "text", allow_empty_value=True))
        timing.append(read_json(d / "timing.json"))
    missing = [u for u in wavs if u not in hyps]
    if missing:
        raise ValueError(f"{len(missing)} utterances of {args.wav_scp} have no transcript (e.g. '{missing[0]}')")
    write_kv(out_dir / "text", hyps)
    audio = sum(t["audio_seconds"] for t in timing)
    summary = dict(settings(args), wav_scp=str(args.wav_scp), utts=len(hyps), audio_seconds=audio,
                   rtf=sum(t["seconds"] for t in timing) / max(audio, 1e-9))
    if args.ref_text:
        ref = Path(args.ref_text)
        refs, _ = score_files(ref / "text" if ref.is_dir() else ref, out_dir / "text")
        refs = {u: t for u, t in refs.items() if u in hyps}
        if not refs:
            raise ValueError(f"no utterance of {args.ref_text} is in {args.wav_scp}")
        counts = write_scoring(out_dir / "score_wer", args.score_name, refs, hyps, Normalizer())
        summary.update(ref_text=str(args.ref_text), scored_utts=len(refs), wer=counts.wer)
        logger.info("%s: Whisper %s WER %.2f %% on %d utterances", out_dir, args.model, counts.wer, len(refs))
    if args.target_text:
        summary.update(score_against_target(args, out_dir, hyps))
    atomic_write_json(out_dir / "judge.json", summary)
    mark_done(out_dir, info={k: summary[k] for k in ("utts", "wer") if k in summary})
    print(f"{out_dir}: {len(hyps)} transcripts" + (f", WER {summary['wer']:.2f} %" if "wer" in summary else ""))


def score_against_target(args, out_dir: Path, hyps: dict[str, str]) -> dict:
    """WER target: the transcripts against Whisper's transcripts of the vocoded gold units."""
    normalizer = Normalizer()
    targets = {u: t for u, t in read_kv(args.target_text, allow_empty_value=True).items() if u in hyps}
    usable = {u: t for u, t in targets.items() if normalizer(t)}
    summary = {"target_text": str(args.target_text), "target_scored_utts": len(usable),
               "target_empty_utts": len(targets) - len(usable)}
    if not usable:  # Whisper heard nothing in any vocoded gold utterance (an untrained vocoder): no WER target
        logger.warning("%s: no utterance of %s has a non-empty target transcript: no WER target", args.target_text,
                       args.wav_scp)
        return summary
    counts = write_scoring(out_dir / "score_wer_target", args.score_name, usable, hyps, normalizer)
    logger.info("%s: Whisper %s WER target %.2f %% on %d utterances (%d with an empty target left out)", out_dir,
                args.model, counts.wer, len(usable), len(targets) - len(usable))
    return dict(summary, wer_target=counts.wer)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    out_dir = Path(args.output_dir)
    scp = Path(args.wav_scp)
    wavs = read_kv(scp / "wav.scp" if scp.is_dir() else scp)
    if args.merge:
        merge(args, out_dir, wavs)
        return
    run_job(args, out_dir, wavs)
    if args.nj == 1:
        merge(args, out_dir, wavs)


if __name__ == "__main__":
    run_main(main, expected_errors=(WhisperModelError, AudioError, FileNotFoundError, ValueError, KeyError))
