"""What the vocoder trains on: utterances with both units (stage 5) and formatted audio (stage 2), cut into
random fixed-length segments of aligned frames and samples.

Batches are drawn from a generator seeded by (seed, step): the batch of step n is the same in a run that was
interrupted and resumed as in one that was not, without any sampler state in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile
import torch

from zipper.data.audio import audio_info, is_pipe, read_audio
from zipper.data.kaldi_dir import read_kv
from zipper.tokens.units import UnitSet, dedup

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class VocoderUtt:
    utt: str
    speaker: str
    wav: str  # the wav.scp value
    units: np.ndarray  # (T,) int32 at the frame rate


def audio_scp(audio: str | Path) -> Path:
    path = Path(audio)
    return path / "wav.scp" if path.is_dir() else path


def speaker_durations(utts: Sequence[VocoderUtt]) -> dict[str, int]:
    """Frames of audio per speaker."""
    frames: dict[str, int] = defaultdict(int)
    for u in utts:
        frames[u.speaker] += len(u.units)
    return dict(frames)


def most_audio_speaker(utts: Sequence[VocoderUtt]) -> str:
    """The default target voice: the speaker with most audio (ties: the first in sorted order)."""
    frames = speaker_durations(utts)
    return sorted(frames, key=lambda s: (-frames[s], s))[0]


def load_utterances(units_dir: str | Path, audio: str | Path, fs: int, hop_length: int,
                    speakers: Optional[set[str]] = None) -> list[VocoderUtt]:
    """Utterances of `units_dir` with audio in `audio` (a dir with wav.scp [+ utt2spk], or a wav.scp).

    Checks that each recording's length matches its units (frames * hop within two frames) at rate `fs`.
    """
    unit_set = UnitSet(units_dir)
    scp_path = audio_scp(audio)
    wavs = read_kv(scp_path)
    utt2spk_path = scp_path.parent / "utt2spk"
    utt2spk = read_kv(utt2spk_path) if utt2spk_path.exists() else {}
    utt2num_samples_path = scp_path.parent / "utt2num_samples"
    num_samples = read_kv(utt2num_samples_path) if utt2num_samples_path.exists() else {}
    missing = [u for u in unit_set.keys() if u not in wavs]
    if len(missing) == len(unit_set):
        raise ValueError(f"no utterance of {units_dir}/units.scp has audio in {scp_path}")
    if missing:
        logger.warning("%d of %d utterances of %s have no audio in %s (e.g. %s): left out", len(missing),
                       len(unit_set), units_dir, scp_path, missing[0])
    utts = []
    for utt in unit_set.keys():
        if utt not in wavs:
            continue
        speaker = utt2spk.get(utt, "default")
        if speakers is not None and speaker not in speakers:
            continue
        units = unit_set[utt]
        if utt in num_samples:
            n = int(num_samples[utt])
        else:
            rate, n = audio_info(wavs[utt])
            if rate != fs:
                raise ValueError(f"{scp_path}: utterance '{utt}' is at {rate} Hz, the units at {fs} Hz")
        if abs(n - len(units) * hop_length) > 2 * hop_length:
            raise ValueError(f"utterance '{utt}': {len(units)} units of {hop_length} samples do not match its "
                             f"{n} samples in {scp_path} (were the units made from this audio?)")
        utts.append(VocoderUtt(utt, speaker, wavs[utt], units))
    if not utts:
        raise ValueError(f"no utterance of {units_dir} with audio in {scp_path} is by the speakers "
                         f"{sorted(speakers or [])}")
    return utts


def read_segment(wav: str, start: int, length: int) -> np.ndarray:
    """Samples [start, start + length) of a recording, zero-padded past its end: (length,) float32."""
    if is_pipe(wav):
        _, samples = read_audio(wav)
        samples = samples[start:start + length]
    else:
        samples = soundfile.read(wav, start=start, frames=length, dtype="float32", always_2d=False)[0]
    if len(samples) < length:
        samples = np.pad(samples, (0, length - len(samples)))
    return samples.astype(np.float32, copy=False)


def dedup_batch(units: torch.Tensor, pad: int, lengths: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deduplicate each row of frame units (B, T) (its first `lengths` frames): values (B, N) padded with `pad`,
    durations (B, N), and a mask (B, N) of runs whose length is known (not cut by the segment's edges, not padding)."""
    frames = lengths.tolist() if lengths is not None else [units.shape[1]] * units.shape[0]
    rows = [dedup(r[:n]) for r, n in zip(units.cpu().numpy(), frames)]
    longest = max(len(v) for v, _ in rows)
    values = np.full((len(rows), longest), pad, dtype=np.int64)
    durations = np.zeros((len(rows), longest), dtype=np.int64)
    known = np.zeros((len(rows), longest), dtype=bool)
    for i, (v, d) in enumerate(rows):
        values[i, :len(v)], durations[i, :len(d)] = v, d
        known[i, 1:len(v) - 1] = True  # the first and last runs may continue outside the segment
    return torch.from_numpy(values), torch.from_numpy(durations), torch.from_numpy(known)


class SegmentSampler:
    """Random batches of `batch_size` segments of `segment_frames` frames: units (B, F), audio (B, 1, F * hop)."""

    def __init__(self, utts: Sequence[VocoderUtt], speaker_ids: dict[str, int], segment_frames: int,
                 batch_size: int, hop_length: int, seed: int, min_frames: int = 0):
        """min_frames (0: segment_frames): utterances of at least this many frames but shorter than a segment
        are taken whole, zero-padded to segment_frames; the batch's `lengths` say how much of each row is real."""
        min_frames = min_frames or segment_frames
        if min_frames > segment_frames:
            raise ValueError(f"--min_segment_frames {min_frames} is more than --segment_frames {segment_frames}")
        self.utts = [u for u in utts if len(u.units) >= min_frames]
        if not self.utts:
            raise ValueError(f"no training utterance has {min_frames} frames (--segment_frames, "
                             "--min_segment_frames)")
        if len(self.utts) < len(utts):
            logger.info("%d utterances shorter than %d frames are not used for training", len(utts) - len(self.utts),
                        min_frames)
        self.speaker_ids, self.segment_frames, self.batch_size = speaker_ids, segment_frames, batch_size
        self.hop_length, self.seed = hop_length, seed
        lengths = np.array([len(u.units) for u in self.utts], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every frame equally likely

    def target(self, u: VocoderUtt, start: int) -> np.ndarray:
        """What the model learns to produce for the segment from frame `start`: its audio samples (zero-padded
        past the utterance's end)."""
        return read_segment(u.wav, start * self.hop_length, self.segment_frames * self.hop_length)

    def collate_targets(self, targets: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return {"audio": torch.from_numpy(np.stack(targets)).unsqueeze(1)}  # (B, 1, F * hop)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        picks = rng.choice(len(self.utts), size=self.batch_size, p=self.weights)
        units = np.zeros((self.batch_size, self.segment_frames), dtype=np.int64)  # (B, F), 0 past a short utt
        targets, speakers, lengths = [], [], []
        for row, i in enumerate(picks):
            u = self.utts[i]
            start = int(rng.integers(0, max(len(u.units) - self.segment_frames, 0) + 1))
            segment = u.units[start:start + self.segment_frames]
            units[row, :len(segment)] = segment
            lengths.append(len(segment))
            targets.append(self.target(u, start))
            speakers.append(self.speaker_ids.get(u.speaker, 0))
        return {"units": torch.from_numpy(units), **self.collate_targets(targets),
                "speakers": torch.tensor(speakers, dtype=torch.long),  # (B,)
                "lengths": torch.tensor(lengths, dtype=torch.long)}  # (B,) real frames of each row


def whole_utterance(u: VocoderUtt, speaker_ids: dict[str, int], hop_length: int,
                    default_speaker: int = 0) -> dict[str, torch.Tensor]:
    """One utterance as a batch of one (for validation): its units and audio cut to a whole number of frames."""
    _, samples = read_audio(u.wav)
    frames = min(len(u.units), len(samples) // hop_length)
    samples = samples[:frames * hop_length]
    return {"units": torch.from_numpy(u.units[:frames].astype(np.int64))[None],  # (1, T)
            "audio": torch.from_numpy(samples)[None, None],  # (1, 1, T * hop)
            "speakers": torch.tensor([speaker_ids.get(u.speaker, default_speaker)])}
