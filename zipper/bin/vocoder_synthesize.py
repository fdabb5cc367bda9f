"""Stage 11: units.scp -> waveforms with a trained vocoder: <output_dir>/wav/<utt>.wav (16-bit PCM at the
vocoder's rate, 16 kHz in the recipes) and <output_dir>/wav.scp, in the vocoder's target voice.

Deduplicated or not (--dedup): `auto` (default) reads it from the units dir.  A TTS decoding of a model trained
on deduplicated units (its decode.json -> the model's config.yaml says dedup: true) is deduplicated, and its
durations come from the vocoder's duration predictor.  Stage 5's units (and any dir without decode.json) are at
the frame rate, and their runs are their true durations.  `true`/`false` override that.
The units must come from the k-means inventory the vocoder was trained on (checked against provenance.json).
Run as `nj` jobs (`--nj N --job J`), then once with `--merge true`; with --nj 1 one call does both.
Writes synthesis.json (vocoder, voice, dedup, speed) and the marker .done.synthesis.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zipper.data.audio import write_wav
from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.tokens.units import UnitSet
from zipper.utils.atomic import atomic_write_json, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, run_main
from zipper.utils.provenance import ProvenanceError
from zipper.utils.sharding import add_sharding_options, finished_job_dirs, mark_job_finished, pending_job
from zipper.vocoder.inference import Vocoder, units_are_deduplicated
from zipper.vocoder.train import MODEL_FILE

logger = logging.getLogger(__name__)
DONE_NAME = "synthesis"  # <output_dir>/.done.synthesis (a decode dir's own .done is the decoding's)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--vocoder_dir", required=True, help="vocoder_train experiment dir")
    parser.add_argument("--checkpoint", default=MODEL_FILE, help="model file in vocoder_dir")
    parser.add_argument("--units_dir", required=True, help="dir with units.scp + provenance.json (a decoding, stage 5)")
    parser.add_argument("--output_dir", default="", help="where wav/ and wav.scp go (default: units_dir)")
    parser.add_argument("--dedup", default="auto", choices=["auto", "true", "false"],
                        help="are the units deduplicated (durations predicted)? auto: from units_dir/decode.json")
    parser.add_argument("--speaker", default="", help="voice of a multi-voice vocoder (default: its target voice)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    add_sharding_options(parser)
    return parser


def run_job(args, out_dir: Path, units: UnitSet, deduplicated: bool) -> None:
    utts = list(units.keys())
    pending = pending_job(out_dir, args.nj, args.job, utts, vocoder=str(Path(args.vocoder_dir).resolve()),
                          checkpoint=args.checkpoint, dedup=deduplicated, speaker=args.speaker)
    if pending is None:
        return
    mine, directory, key = pending
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    vocoder = Vocoder.from_exp(args.vocoder_dir, args.checkpoint, args.device)
    vocoder.check_units(units.provenance, f"units in {args.units_dir}")
    speaker = args.speaker or None
    vocoder.speaker_index(speaker)  # an unknown voice fails before any work
    wav_dir = (out_dir / "wav").resolve()
    scp: dict[str, str] = {}
    num_samples: dict[str, str] = {}
    repeats, pairs = 0, 0  # adjacent equal units: ~25 % of pairs at the frame rate, ~0 when deduplicated
    begin, audio_seconds = time.time(), 0.0
    for n, utt in enumerate(mine, 1):
        sequence = units[utt]
        repeats += int(np.sum(sequence[1:] == sequence[:-1]))
        pairs += max(len(sequence) - 1, 0)
        try:
            samples = vocoder(sequence, deduplicated, speaker)
        except ValueError as e:
            raise ValueError(f"utterance '{utt}' of {args.units_dir}: {e}") from e
        if samples.size == 0:
            logger.warning("utterance '%s' of %s has no units: writing 20 ms of silence", utt, args.units_dir)
            samples = np.zeros(vocoder.hop_length, dtype=np.float32)
        path = wav_dir / f"{utt}.wav"
        write_wav(path, samples, vocoder.fs)
        scp[utt], num_samples[utt] = str(path), str(len(samples))
        audio_seconds += len(samples) / vocoder.fs
        if n % 100 == 0:
            logger.info("synthesised %d / %d utterances", n, len(mine))
    share = repeats / max(pairs, 1)
    if deduplicated and share > 0.1:
        logger.warning("%.0f %% of adjacent units repeat although the units are read as deduplicated (--dedup %s): "
                       "are they frame-rate units?", 100 * share, args.dedup)
    elif not deduplicated and pairs > 100 and share < 0.02:
        logger.warning("only %.1f %% of adjacent units repeat although the units are read at the frame rate "
                       "(--dedup %s): are they deduplicated?", 100 * share, args.dedup)
    seconds = time.time() - begin
    directory.mkdir(parents=True, exist_ok=True)
    write_kv(directory / "wav.scp", scp)
    write_kv(directory / "utt2num_samples", num_samples)
    atomic_write_json(directory / "timing.json", {"seconds": seconds, "audio_seconds": audio_seconds,
                                                  "utts": len(mine), "fs": vocoder.fs,
                                                  "speaker": speaker or vocoder.target_speaker})
    mark_job_finished(directory, key)
    logger.info("job %d/%d: %d utterances, %.1f s of audio in %.1f s (RTF %.3f)", args.job, args.nj, len(mine),
                audio_seconds, seconds, seconds / max(audio_seconds, 1e-9))


def merge(args, out_dir: Path, units: UnitSet, deduplicated: bool) -> None:
    dirs = finished_job_dirs(out_dir, args.nj)
    scp: dict[str, str] = {}
    num_samples: dict[str, str] = {}
    timing = []
    for d in dirs:
        scp.update(read_kv(d / "wav.scp"))
        num_samples.update(read_kv(d / "utt2num_samples"))
        timing.append(json.loads((d / "timing.json").read_text(encoding="utf-8")))
    missing = [u for u in units.keys() if u not in scp]
    if missing:
        raise ValueError(f"{len(missing)} utterances of {args.units_dir} were not synthesised (e.g. '{missing[0]}')")
    write_kv(out_dir / "wav.scp", scp)
    write_kv(out_dir / "utt2num_samples", num_samples)
    audio = sum(t["audio_seconds"] for t in timing)
    summary = {"vocoder_dir": str(args.vocoder_dir), "checkpoint": args.checkpoint, "units_dir": str(args.units_dir),
               "dedup": deduplicated, "speaker": timing[0]["speaker"], "fs": timing[0]["fs"], "utts": len(scp),
               "audio_seconds": audio, "rtf": sum(t["seconds"] for t in timing) / max(audio, 1e-9)}
    atomic_write_json(out_dir / "synthesis.json", summary)
    mark_done(out_dir, DONE_NAME, info={"utts": len(scp), "vocoder_dir": str(args.vocoder_dir)})
    print(f"{out_dir}: {len(scp)} utterances, {audio / 60:.1f} min of audio in the voice {summary['speaker']} "
          f"(RTF {summary['rtf']:.3f})")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    out_dir = Path(args.output_dir or args.units_dir)
    units = UnitSet(args.units_dir)
    deduplicated = units_are_deduplicated(args.units_dir) if args.dedup == "auto" else args.dedup == "true"
    logger.info("%s: %d utterances, %s", args.units_dir, len(units),
                "deduplicated (durations predicted)" if deduplicated else "at the frame rate (true durations)")
    if not args.merge:
        run_job(args, out_dir, units, deduplicated)
    if args.merge or args.nj == 1:
        merge(args, out_dir, units, deduplicated)


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
