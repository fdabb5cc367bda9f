"""A tiny aligned corpus for vocoder tests: units (the token_data inventory, 20 ms frames) and 16 kHz audio in
which every frame is a tone whose pitch is its unit's, so the audio is a function of the units (learnable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from token_data import INVENTORY
from zipper.data.kaldi_dir import spk2utt_from_utt2spk, write_kv
from zipper.tokens.units import UnitArkWriter
from zipper.utils.provenance import write_provenance

FS = 16000
HOP = 320  # 20 ms


def unit_audio(units: np.ndarray) -> np.ndarray:
    """(len(units) * HOP,) float32: frame t is a sine at 200 + 60 * unit Hz."""
    freq = 200.0 + 60.0 * np.repeat(units, HOP)
    phase = 2 * np.pi * np.cumsum(freq) / FS
    return (0.3 * np.sin(phase)).astype(np.float32)


def make_corpus(root: Path, name: str, n_utts: int, seed: int = 0, speakers: tuple[str, ...] = ("spkA", "spkB"),
                frames: tuple[int, int] = (30, 60)) -> tuple[Path, Path]:
    """(units dir, audio dir) of `n_utts` utterances `<spk>-<name>-NNN`; spkA has the most audio."""
    rng = np.random.default_rng(seed)
    units_dir, audio_dir = root / "units" / name, root / "audio" / name
    units_dir.mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    k = INVENTORY["n_clusters"]
    wavs, utt2spk = {}, {}
    with open(units_dir / "units.ark", "wb") as ark, open(units_dir / "units.scp", "w") as scp:
        writer = UnitArkWriter(ark, str((units_dir / "units.ark").resolve()), scp)
        for i in range(n_utts):
            spk = speakers[0] if i % 3 else speakers[(i // 3) % len(speakers)]
            utt = f"{spk}-{name}-{i:03d}"
            n = int(rng.integers(*frames))
            runs = rng.integers(0, k, size=n)
            units = np.repeat(runs, rng.integers(1, 4, size=n))[:n].astype(np.int32)
            writer[utt] = units
            path = audio_dir / "wav" / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, unit_audio(units), FS, subtype="PCM_16")
            wavs[utt], utt2spk[utt] = str(path), spk
    write_provenance(units_dir, dict(INVENTORY, set_data_hash=f"s-{name}", frame_shift_samples=HOP), overwrite=True)
    write_kv(audio_dir / "wav.scp", wavs)
    write_kv(audio_dir / "utt2spk", utt2spk)
    write_kv(audio_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return units_dir, audio_dir
