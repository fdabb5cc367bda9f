"""The CPU vocoder: units -> WORLD vocoder parameters (a small convolutional network) -> pyworld synthesis.

Why it exists beside the unit HiFi-GAN: a HiFi-GAN has to learn waveforms from scratch and needs GPU-days; on
this project's 2-core CPU, 1400 updates (24 min) left it unintelligible (docs/vocoder.md).  Predicting WORLD
parameters per 10 ms frame (spectral envelope, aperiodicity, log F0, voicing: a regression over a few dozen
numbers) converges in minutes, and the WORLD synthesiser (Morise et al. 2016, pyworld) turns them into speech
with a real harmonic excitation.  Statistical parametric synthesis, as in HTS/Merlin, with units as input.

Targets come from WORLD analysis (DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity) of the training
audio, cached per utterance in the experiment dir.  Features per frame: coded envelope (n_sp bands, log),
coded aperiodicity, continuous log F0 (interpolated through unvoiced frames), voicing (0/1).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from zipper.models.zipper import lengths_mask
from zipper.utils.atomic import atomic_path, atomic_write_json, read_json
from zipper.vocoder.data import SegmentSampler
from zipper.vocoder.model import DurationPrediction

logger = logging.getLogger(__name__)
DEFAULT_WORLD = {"frame_period": 10.0, "n_sp": 40, "f0_floor": 60.0, "f0_ceil": 500.0}
# dilation_growth: block i's dilation is growth ** i (1: no dilation, a context of 1 + layers * (kernel - 1) units)
# attention_layers: FastSpeech-style feed-forward Transformer blocks (ESPnet's encoder: self-attention + 1-D conv
# feed-forward) after the convolutions, so that every frame can see the whole utterance (0: none)
DEFAULT_ENCODER = {"channels": 256, "layers": 4, "kernel_size": 5, "dropout": 0.1, "dilation_growth": 1,
                   "attention_layers": 0, "attention_heads": 4}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    fs: int
    frame_period: float = 10.0  # ms
    n_sp: int = 40
    f0_floor: float = 60.0
    f0_ceil: float = 500.0

    @property
    def frame_samples(self) -> int:
        return int(round(self.fs * self.frame_period / 1000))

    @property
    def fft_size(self) -> int:
        return import_pyworld().get_cheaptrick_fft_size(self.fs, self.f0_floor)

    @property
    def n_ap(self) -> int:
        return import_pyworld().get_num_aperiodicities(self.fs)

    @property
    def dim(self) -> int:
        return self.n_sp + self.n_ap + 2  # + log F0 + voicing


def import_pyworld():
    """pyworld imports pkg_resources, which warns on every import; the warning is not the user's business."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def fit_frames(feats: np.ndarray, frames: int) -> np.ndarray:
    """(N, dim) -> (frames, dim): cut, or padded by repeating the last frame."""
    if len(feats) < frames:
        feats = np.concatenate([feats, np.repeat(feats[-1:], frames - len(feats), axis=0)])
    return feats[:frames]


def analyze(samples: np.ndarray, config: WorldConfig, frames: int | None = None) -> np.ndarray:
    """(frames, dim) float32 WORLD features of a recording, cut or edge-padded to `frames` frames (if given)."""
    pw = import_pyworld()
    x = np.asarray(samples, dtype=np.float64)
    f0, t = pw.dio(x, config.fs, f0_floor=config.f0_floor, f0_ceil=config.f0_ceil, frame_period=config.frame_period)
    f0 = pw.stonemask(x, f0, t, config.fs)
    sp = pw.cheaptrick(x, f0, t, config.fs, f0_floor=config.f0_floor)
    ap = pw.d4c(x, f0, t, config.fs)
    coded_sp = pw.code_spectral_envelope(sp, config.fs, config.n_sp)  # (N, n_sp) log
    coded_ap = pw.code_aperiodicity(ap, config.fs)  # (N, n_ap)
    voiced = f0 > 0
    if voiced.any():
        index = np.arange(len(f0))
        lf0 = np.interp(index, index[voiced], np.log(f0[voiced]))
    else:
        lf0 = np.full(len(f0), np.log(120.0))
    feats = np.concatenate([coded_sp, coded_ap, lf0[:, None], voiced[:, None]], axis=1).astype(np.float32)
    return feats if frames is None else fit_frames(feats, frames)


def synthesize_world(feats: np.ndarray, config: WorldConfig, num_samples: int) -> np.ndarray:
    """Waveform (num_samples,) float32 from (N, dim) WORLD features (voicing as a probability)."""
    pw = import_pyworld()
    feats = np.asarray(feats, dtype=np.float64)
    coded_sp = np.ascontiguousarray(feats[:, :config.n_sp])
    coded_ap = np.ascontiguousarray(np.minimum(feats[:, config.n_sp:config.n_sp + config.n_ap], 0.0))
    f0 = np.exp(feats[:, -2]) * (feats[:, -1] > 0.5)
    sp = pw.decode_spectral_envelope(coded_sp, config.fs, config.fft_size)
    ap = pw.decode_aperiodicity(coded_ap, config.fs, config.fft_size)
    wav = pw.synthesize(np.ascontiguousarray(f0), sp, ap, config.fs, config.frame_period)
    wav = np.pad(wav, (0, max(0, num_samples - len(wav))))[:num_samples]
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def check_cache_config(cache: Path, config: WorldConfig) -> None:
    """A cache dir serves one analysis config: refuse another rather than mix features silently."""
    wanted = dataclasses.asdict(config)
    path = cache / "world_config.json"
    if path.exists():
        found = read_json(path)
        if found != wanted:
            raise ValueError(f"{cache} holds WORLD features of another analysis config ({found}, not {wanted}); "
                             "remove it or train in another experiment dir")
    else:
        atomic_write_json(path, wanted)


def analyze_into(wav: str, path: Path, config: WorldConfig) -> None:
    """One utterance's analysis written atomically to `path` (a worker's job in cached_features)."""
    from zipper.data.audio import read_audio

    _, samples = read_audio(wav)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, analyze(samples, config))


def cached_features(utts: Sequence[Any], config: WorldConfig, hop_length: int, cache_dir: str | os.PathLike,
                    workers: int = 0) -> dict[str, np.ndarray]:
    """WORLD features of each utterance (VocoderUtt), computed once into cache_dir/<utt>.npy (resumable), by
    `workers` processes (0: one per core; pyworld's analysis is single-threaded).

    The cache holds the whole analysis, fitted to the units' frames on load, so units of another frame count
    (another upstream) can reuse it."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    check_cache_config(cache, config)
    ratio = hop_length // config.frame_samples
    out: dict[str, np.ndarray] = {}
    todo = [u for u in utts if not (cache / f"{u.utt}.npy").exists()]
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    if todo:
        logger.info("WORLD analysis of %d utterances into %s (%d cached), %d processes", len(todo), cache,
                    len(utts) - len(todo), workers)
    jobs = [(u.wav, cache / f"{u.utt}.npy", config) for u in todo]
    with concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        done = pool.map(analyze_into, *zip(*jobs), chunksize=8) if pool else (analyze_into(*j) for j in jobs)
        for n, _ in enumerate(done, 1):
            if n % 200 == 0:
                logger.info("analysed %d / %d utterances", n, len(todo))
    for u in utts:
        out[u.utt] = fit_frames(np.load(cache / f"{u.utt}.npy"), len(u.units) * ratio)
    return out


class ConvBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dropout: float, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size // 2),
                              dilation=dilation)
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        y = torch.relu(self.conv(x)).transpose(1, 2)
        return x + self.dropout(self.norm(y)).transpose(1, 2)


class WorldVocoder(DurationPrediction, nn.Module):
    """Units (B, T) (+ speakers) -> normalised WORLD features (B, T * ratio, dim); `synthesize` -> waveform.

    Same interface as UnitVocoder for synthesis and durations (log_durations, predict_durations, synthesize).
    """

    def __init__(self, n_units: int, hop_length: int, fs: int, n_speakers: int = 1, embed_dim: int = 128,
                 spk_embed_dim: int = 64, world_conf: Optional[dict[str, Any]] = None,
                 encoder_conf: Optional[dict[str, Any]] = None, duration_conf: Optional[dict[str, Any]] = None):
        super().__init__()
        from espnet.nets.pytorch_backend.fastspeech.duration_predictor import DurationPredictor

        from zipper.vocoder.model import DEFAULT_DURATION, DURATION_OFFSET

        self.world = WorldConfig(fs=fs, **dict(DEFAULT_WORLD, **(world_conf or {})))
        if hop_length % self.world.frame_samples:
            raise ValueError(f"the WORLD frame period {self.world.frame_period} ms ({self.world.frame_samples} "
                             f"samples) does not divide the units' frame shift ({hop_length} samples)")
        self.n_units, self.hop_length, self.n_speakers = n_units, hop_length, n_speakers
        self.ratio = hop_length // self.world.frame_samples  # WORLD frames per unit
        enc = dict(DEFAULT_ENCODER, **(encoder_conf or {}))
        channels = enc["channels"]
        self.unit_embed = nn.Embedding(n_units, embed_dim)
        self.spk_embed = nn.Embedding(n_speakers, spk_embed_dim) if n_speakers > 1 else None
        self.input = nn.Linear(embed_dim + (spk_embed_dim if n_speakers > 1 else 0), channels)
        self.blocks = nn.ModuleList(ConvBlock(channels, enc["kernel_size"], enc["dropout"],
                                              dilation=enc["dilation_growth"] ** i)
                                    for i in range(enc["layers"]))
        self.attention = None
        if enc["attention_layers"]:
            from espnet.nets.pytorch_backend.transformer.embedding import ScaledPositionalEncoding
            from espnet.nets.pytorch_backend.transformer.encoder import Encoder

            self.attention = Encoder(idim=channels, attention_dim=channels, attention_heads=enc["attention_heads"],
                                     linear_units=4 * channels, num_blocks=enc["attention_layers"],
                                     dropout_rate=enc["dropout"], positional_dropout_rate=enc["dropout"],
                                     attention_dropout_rate=enc["dropout"], input_layer=None,
                                     pos_enc_class=ScaledPositionalEncoding, positionwise_layer_type="conv1d",
                                     positionwise_conv_kernel_size=3)
        self.head = nn.Linear(channels, self.ratio * self.world.dim)
        self.register_buffer("mean", torch.zeros(self.world.dim))
        self.register_buffer("std", torch.ones(self.world.dim))
        self.dur_embed = nn.Embedding(n_units + 1, embed_dim, padding_idx=n_units)
        self.dur_spk_embed = nn.Embedding(n_speakers, embed_dim) if n_speakers > 1 else None
        self.duration_predictor = DurationPredictor(embed_dim, offset=DURATION_OFFSET,
                                                    **dict(DEFAULT_DURATION, **(duration_conf or {})))

    @property
    def context(self) -> int | None:
        """Units each output frame sees (the receptive field of the convolution blocks; None: all, with attention)."""
        if self.attention is not None:
            return None
        return 1 + sum((b.conv.kernel_size[0] - 1) * b.conv.dilation[0] for b in self.blocks)

    def set_statistics(self, feats: Sequence[np.ndarray]) -> None:
        """Feature mean and std over the training frames (voicing is left as 0/1)."""
        stacked = np.concatenate(list(feats))
        mean, std = stacked.mean(0), stacked.std(0) + 1e-5
        mean[-1], std[-1] = 0.0, 1.0
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(std))

    def forward(self, units: torch.Tensor, speakers: Optional[torch.Tensor] = None,
                lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """lengths (B,): real frames of each row of a padded batch.  The frames past them are zeroed after every
        block, as the convolutions' zero padding past an utterance's end is at synthesis, and attention does not
        see them; only the attention blocks' convolutional feed-forward still reads one padded frame."""
        x = self.unit_embed(units)  # (B, T, E)
        if self.spk_embed is not None:
            g = self.spk_embed(speakers).unsqueeze(1).expand(-1, x.shape[1], -1)  # (B, T, G)
            x = torch.cat([x, g], dim=-1)
        real = None if lengths is None else lengths_mask(lengths, units.shape[1]).unsqueeze(1)  # (B, 1, T)
        h = self.input(x).transpose(1, 2)  # (B, C, T)
        for block in self.blocks:
            h = block(h if real is None else h * real)
        h = h.transpose(1, 2)  # (B, T, C)
        if self.attention is not None:  # ESPnet's Encoder.forward, with the padding zeroed after every layer
            keep = None if real is None else real.transpose(1, 2)  # (B, T, 1)
            h = self.attention.embed(h if keep is None else h * keep)
            for layer in self.attention.encoders:
                h, _ = layer(h, real)
                h = h if keep is None else h * keep
            if self.attention.normalize_before:
                h = self.attention.after_norm(h)
        out = self.head(h)  # (B, T, ratio * dim)
        return out.reshape(units.shape[0], units.shape[1] * self.ratio, self.world.dim)  # (B, T * ratio, dim)

    def feature_loss(self, predicted: torch.Tensor, target: torch.Tensor, lengths: Optional[torch.Tensor] = None
                     ) -> dict[str, torch.Tensor]:
        """L1 on the normalised envelope, aperiodicity and log F0; cross-entropy on voicing; over the first
        `lengths` units' frames of each row when given."""
        if lengths is not None:  # (B, T * ratio) -> the real frames only, (N, dim)
            real = lengths_mask(lengths * self.ratio, predicted.shape[1])
            predicted, target = predicted[real], target[real]
        normed = (target - self.mean) / self.std
        n_sp, n_ap = self.world.n_sp, self.world.n_ap
        sp = torch.mean(torch.abs(predicted[..., :n_sp] - normed[..., :n_sp]))
        ap = torch.mean(torch.abs(predicted[..., n_sp:n_sp + n_ap] - normed[..., n_sp:n_sp + n_ap]))
        lf0 = torch.mean(torch.abs(predicted[..., -2] - normed[..., -2]))
        vuv = nn.functional.binary_cross_entropy_with_logits(predicted[..., -1], target[..., -1])
        return {"sp": sp, "ap": ap, "lf0": lf0, "vuv": vuv}

    def features(self, predicted: torch.Tensor) -> torch.Tensor:
        """Normalised predictions -> WORLD features (voicing as a probability)."""
        feats = predicted * self.std + self.mean
        return torch.cat([feats[..., :-1], torch.sigmoid(predicted[..., -1:])], dim=-1)

    @torch.no_grad()
    def synthesize(self, units: torch.Tensor, speaker: Optional[int] = None) -> torch.Tensor:
        """Waveform (T * hop,) of frame-rate units (T,)."""
        speakers = None if speaker is None else torch.tensor([speaker], device=units.device)
        feats = self.features(self.forward(units.unsqueeze(0), speakers))[0].cpu().numpy()
        return torch.from_numpy(synthesize_world(feats, self.world, len(units) * self.hop_length))


class FeatureSegmentSampler(SegmentSampler):
    """Random batches of segments: units (B, F) and their WORLD features (B, F * ratio, dim), drawn from
    (seed, step) as SegmentSampler draws audio segments."""

    def __init__(self, utts: Sequence[Any], feats: dict[str, np.ndarray], speaker_ids: dict[str, int],
                 segment_frames: int, batch_size: int, ratio: int, seed: int, min_frames: int = 0):
        super().__init__(utts, speaker_ids, segment_frames, batch_size, hop_length=0, seed=seed,  # no audio read
                         min_frames=min_frames)
        self.feats, self.ratio = feats, ratio

    def target(self, u: Any, start: int) -> np.ndarray:
        feats = self.feats[u.utt][start * self.ratio:(start + self.segment_frames) * self.ratio]
        return np.pad(feats, ((0, self.segment_frames * self.ratio - len(feats)), (0, 0)))  # zeros past the end

    def collate_targets(self, targets: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return {"feats": torch.from_numpy(np.stack(targets))}  # (B, F * ratio, dim)


def whole_utterance_features(u: Any, feats: np.ndarray, speaker_ids: dict[str, int], default_speaker: int
                             ) -> dict[str, torch.Tensor]:
    return {"units": torch.from_numpy(u.units.astype(np.int64))[None],  # (1, T)
            "feats": torch.from_numpy(feats)[None],  # (1, T * ratio, dim)
            "speakers": torch.tensor([speaker_ids.get(u.speaker, default_speaker)])}
