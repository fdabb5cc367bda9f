"""Read the audio a `wav.scp` value points at: a file soundfile can open (wav, flac, ogg) or a Kaldi pipe `cmd |`.

kaldiio also reads wav.scp, but only PCM wav and not flac; LibriSpeech ships flac, so we read through
soundfile and run pipes ourselves.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess

import numpy as np
import soundfile

from zipper.utils.atomic import atomic_path

logger = logging.getLogger(__name__)


class AudioError(RuntimeError):
    """A recording is missing, unreadable or not in the expected format."""


def is_pipe(value: str) -> bool:
    return value.rstrip().endswith("|")


def _pipe_bytes(value: str) -> bytes:
    cmd = value.rstrip()[:-1]
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    if proc.returncode != 0:
        raise AudioError(f"command '{cmd}' failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}")
    if not proc.stdout:
        raise AudioError(f"command '{cmd}' wrote no audio")
    return proc.stdout


def read_audio(value: str, dtype: str = "float32") -> tuple[int, np.ndarray]:
    """(sample_rate, samples) of a mono recording; samples in [-1, 1] for float dtypes, (T,) shaped."""
    try:
        source = io.BytesIO(_pipe_bytes(value)) if is_pipe(value) else value
        with soundfile.SoundFile(source) as f:
            rate = f.samplerate
            if f.subtype == "PCM_16" and dtype == "float32":
                # libsndfile's own int16 -> float conversion is half as fast as numpy's; same scale (1/32768)
                samples = f.read(dtype="int16").astype(np.float32)
                samples *= np.float32(1 / 32768)
            else:
                samples = f.read(dtype=dtype)
    except AudioError:
        raise
    except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
        raise AudioError(f"cannot read audio '{value}': {e}") from e
    if samples.ndim != 1:
        raise AudioError(f"'{value}' has {samples.shape[1]} channels; only mono audio is supported")
    if samples.size == 0:
        raise AudioError(f"'{value}' is empty")
    return rate, samples


def audio_info(value: str) -> tuple[int, int]:
    """(sample_rate, num_samples) without decoding the file (a pipe is run and decoded)."""
    if is_pipe(value):
        rate, samples = read_audio(value)
        return rate, len(samples)
    try:
        info = soundfile.info(value)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
        raise AudioError(f"cannot read audio '{value}': {e}") from e
    if info.channels != 1:
        raise AudioError(f"'{value}' has {info.channels} channels; only mono audio is supported")
    if info.frames == 0:
        raise AudioError(f"'{value}' is empty")
    return info.samplerate, info.frames


def read_any_audio(path: str | os.PathLike) -> tuple[int, np.ndarray]:
    """(sample_rate, (N,) float32 samples) of any file soundfile reads; several channels are averaged (a warning).

    Mono files take `read_audio`'s path, so that a recording a stage reads gives the same samples here.
    """
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(f"cannot read audio '{path}': no such file")
    try:
        info = soundfile.info(path)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
        raise AudioError(f"cannot read audio '{path}': {e}") from e
    if info.channels == 1:
        return read_audio(path)
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (N, C)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
        raise AudioError(f"cannot read audio '{path}': {e}") from e
    if samples.shape[0] == 0:
        raise AudioError(f"'{path}' is empty")
    logger.warning("'%s' has %d channels: averaged to mono", path, samples.shape[1])
    return rate, samples.mean(axis=1).astype(np.float32)


def to_mono(samples: np.ndarray, what: str) -> np.ndarray:
    """(N,) or (N, C) -> (N,) float32, channels averaged with a warning."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        if samples.shape[1] > 1:
            logger.warning("%s has %d channels: averaged to mono", what, samples.shape[1])
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioError(f"{what}: expected samples of shape (N,) or (N, channels), got {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{what} is empty")
    return samples


def write_wav(path: str | os.PathLike, samples: np.ndarray, fs: int) -> None:
    """16-bit PCM wav, written atomically."""
    with atomic_path(path, suffix=".wav") as tmp:
        soundfile.write(tmp, samples, fs, subtype="PCM_16", format="WAV")
