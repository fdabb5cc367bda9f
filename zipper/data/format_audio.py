"""Stage 2: make every recording of a data dir readable at one sample rate, and drop too short/long ones.

A recording that is already a mono file at the right rate is referenced where it is (no copy); pipes and
recordings that need resampling are written once as 16-bit wav under the dump dir.  A recording that is
missing, unreadable or at the wrong rate (without --resample) is an error naming the wav.scp line and
utterance; only the duration filter drops utterances, and it says how many and why.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from zipper.data.audio import AudioError, audio_info, is_pipe, read_audio
from zipper.data.kaldi_dir import (DataDirError, UTT_FILES, read_entries, read_kv, spk2utt_from_utt2spk,
                                   validate_data_dir, write_kv)
from zipper.utils.atomic import atomic_path

logger = logging.getLogger(__name__)


@dataclass
class FormatResult:
    kept: dict[str, tuple[str, int]]  # utt -> (wav.scp value, num_samples)
    dropped: dict[str, str]  # utt -> reason


def resample(samples: np.ndarray, rate: int, fs: int) -> np.ndarray:
    import torch
    import torchaudio.functional as taf

    return taf.resample(torch.from_numpy(samples.astype(np.float32)), rate, fs).numpy()


def format_entries(wav_scp: Path, utts: list[str], audio_dir: Path, fs: int, allow_resample: bool,
                   min_duration: float, max_duration: float) -> FormatResult:
    """Format the recordings of `utts` (a shard of `wav_scp`); raise DataDirError listing every bad one."""
    entries = {e.key: e for e in read_entries(wav_scp)}
    kept: dict[str, tuple[str, int]] = {}
    dropped: dict[str, str] = {}
    problems: list[str] = []
    for utt in utts:
        entry = entries[utt]
        where = f"{wav_scp}:{entry.lineno}: utterance '{utt}'"
        try:
            if is_pipe(entry.value):
                rate, samples = read_audio(entry.value)
                num_samples = len(samples)
            else:
                rate, num_samples = audio_info(entry.value)
                samples = None
        except AudioError as e:
            problems.append(f"{where}: {e}")
            continue
        if rate != fs and not allow_resample:
            problems.append(f"{where}: sample rate {rate} Hz, expected {fs} Hz "
                            "(pass --resample true to convert, or set --fs to the corpus rate)")
            continue
        duration = num_samples / rate
        if duration < min_duration or duration > max_duration:
            dropped[utt] = f"duration {duration:.2f}s outside [{min_duration}, {max_duration}]"
            continue
        if rate == fs and samples is None:
            kept[utt] = (os.path.abspath(entry.value), num_samples)
            continue
        if samples is None:
            try:
                rate, samples = read_audio(entry.value)
            except AudioError as e:
                problems.append(f"{where}: {e}")
                continue
        if rate != fs:
            samples = resample(samples, rate, fs)
        out = audio_dir / f"{utt}.wav"
        with atomic_path(out, suffix=".wav") as tmp:
            soundfile.write(tmp, samples, fs, subtype="PCM_16", format="WAV")
        kept[utt] = (str(out.resolve()), len(samples))
    if problems:
        raise DataDirError(problems)
    return FormatResult(kept, dropped)


def write_job_result(job_dir: Path, result: FormatResult) -> None:
    write_kv(job_dir / "wav.scp", {u: v for u, (v, _) in result.kept.items()})
    write_kv(job_dir / "utt2num_samples", {u: str(n) for u, (_, n) in result.kept.items()})
    write_kv(job_dir / "dropped", result.dropped)


def merge_jobs(in_dir: Path, out_dir: Path, job_dirs: list[Path], fs: int) -> tuple[int, int]:
    """Assemble the formatted data dir from the jobs' outputs; returns (kept, dropped)."""
    wav: dict[str, str] = {}
    num_samples: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for d in job_dirs:
        wav.update(read_kv(d / "wav.scp"))
        num_samples.update(read_kv(d / "utt2num_samples"))
        dropped.update(read_kv(d / "dropped"))
    for utt, reason in sorted(dropped.items())[:10]:
        logger.info("dropped %s: %s", utt, reason)
    if not wav:
        raise DataDirError(f"{in_dir}: every utterance was dropped by the duration filter")
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = set(wav)
    for name in UTT_FILES:
        if name in ("wav.scp", "utt2num_samples", "utt2dur") or not (in_dir / name).is_file():
            continue
        write_kv(out_dir / name, {u: v for u, v in read_kv(in_dir / name).items() if u in keep})
    write_kv(out_dir / "wav.scp", wav)
    write_kv(out_dir / "utt2num_samples", num_samples)
    write_kv(out_dir / "utt2dur", {u: f"{int(n) / fs:.3f}" for u, n in num_samples.items()})
    utt2spk = read_kv(out_dir / "utt2spk")
    write_kv(out_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    validate_data_dir(out_dir, need_text=(out_dir / "text").exists())
    return len(wav), len(dropped)
