"""Tiny Kaldi data dirs with synthetic audio (tones + noise), for tests of the audio/feature/unit stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from zipper.data.kaldi_dir import spk2utt_from_utt2spk, write_kv

WORDS = "the cat sat on a mat and then it ran over hills to see what lies beyond our town".split()


def make_data_dir(root: Path, name: str, n_utts: int, *, n_speakers: int = 2, fs: int = 16000,
                  with_audio: bool = True, with_text: bool = True, seconds: tuple[float, float] = (0.8, 1.6),
                  seed: int = 0, subtype: str = "PCM_16") -> Path:
    """root/data/<name>/ with wav files under root/wav/<name>/; utterance ids `spkN-<name>-NNNN`."""
    rng = np.random.default_rng(seed)
    data = root / "data" / name
    data.mkdir(parents=True, exist_ok=True)
    wav, text, utt2spk = {}, {}, {}
    for i in range(n_utts):
        spk = f"spk{i % n_speakers}"
        utt = f"{spk}-{name}-{i:04d}"
        utt2spk[utt] = spk
        if with_audio:
            path = root / "wav" / name / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(int(fs * rng.uniform(*seconds))) / fs
            x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(len(t))
            soundfile.write(path, x.astype(np.float32), fs, subtype=subtype)
            wav[utt] = str(path)
        if with_text:
            text[utt] = " ".join(rng.choice(WORDS, 6))
    if with_audio:
        write_kv(data / "wav.scp", wav)
    if with_text:
        write_kv(data / "text", text)
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return data
