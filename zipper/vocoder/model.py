"""The unit vocoder: discrete units (+ their durations) -> waveform, in one target voice.

A unit HiFi-GAN (Polyak et al. 2021, "Speech resynthesis from discrete disentangled self-supervised
representations"): each 20 ms frame's unit is embedded, and ESPnet's HiFi-GAN generator upsamples the frame
sequence to samples (the product of its upsample scales is the units' frame shift).  With several training
voices a speaker embedding is the generator's global conditioning, and synthesis picks the target voice's
embedding whatever voice the units came from.

This is the quality path for a GPU (conf/vocoder_hifigan.yaml); on a CPU budget zipper.vocoder.world trains
faster and does better (docs/vocoder.md).
Deduplicated units (what a Zipper TTS model trained with `--dedup true` generates) have lost their run lengths:
a duration predictor (ESPnet FastSpeech's) learns them from the training units' runs, and at synthesis expands
each unit to its predicted number of frames.  Frame-rate units (stage 5's, on disk) keep their true durations.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator, Optional

import torch
from torch import nn

# ESPnet's HiFiGANGenerator options (in_channels and global_channels are set here), tuned down for 16 kHz
# units at a 320-sample (20 ms) frame shift: 5 * 4 * 4 * 4 = 320.
DEFAULT_GENERATOR = {
    "channels": 256,
    "kernel_size": 7,
    "upsample_scales": [5, 4, 4, 4],
    "upsample_kernel_sizes": [10, 8, 8, 8],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}
DEFAULT_DURATION = {"n_layers": 2, "n_chans": 256, "kernel_size": 3, "dropout_rate": 0.1}
DURATION_OFFSET = 1.0  # durations are predicted as log(d + 1), as in FastSpeech


@contextlib.contextmanager
def quiet_weight_norm() -> Iterator[None]:
    """ESPnet's HiFi-GAN modules use torch's deprecated weight_norm; its FutureWarning says nothing to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        yield


class DurationPrediction:
    """Durations of deduplicated units, shared by both vocoders: a module with `dur_embed`, `dur_spk_embed`
    (or None), `duration_predictor` and `n_units` (the padding id) gets these two methods."""

    def log_durations(self, values: torch.Tensor, speakers: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predicted log(duration + 1) of deduplicated units `values` (B, N), padded with `n_units`."""
        x = self.dur_embed(values)  # (B, N, D)
        if self.dur_spk_embed is not None:
            x = x + self.dur_spk_embed(speakers).unsqueeze(1)
        return self.duration_predictor(x, values == self.n_units)  # (B, N)

    @torch.no_grad()
    def predict_durations(self, values: torch.Tensor, speaker: Optional[int] = None) -> torch.Tensor:
        """Frames per unit (N,) for deduplicated units (N,); at least one each (every unit is spoken)."""
        speakers = None if speaker is None else torch.tensor([speaker], device=values.device)
        log_d = self.log_durations(values.unsqueeze(0), speakers)[0]  # (N,)
        return torch.clamp(torch.round(torch.exp(log_d) - DURATION_OFFSET), min=1).long()


class UnitVocoder(DurationPrediction, nn.Module):
    """Units (B, T) at the frame rate (+ speaker ids) -> waveform (B, 1, T * hop_length).

    `n_units`: K of the k-means inventory (units are 0-based); `n_speakers` > 1 adds speaker embeddings.
    """

    def __init__(self, n_units: int, hop_length: int, n_speakers: int = 1, embed_dim: int = 128,
                 spk_embed_dim: int = 64, generator_conf: Optional[dict[str, Any]] = None,
                 duration_conf: Optional[dict[str, Any]] = None):
        super().__init__()
        from espnet.nets.pytorch_backend.fastspeech.duration_predictor import DurationPredictor
        from espnet2.gan_tts.hifigan import HiFiGANGenerator

        conf = dict(DEFAULT_GENERATOR, **(generator_conf or {}))
        if math.prod(conf["upsample_scales"]) != hop_length:
            raise ValueError(f"generator upsample_scales {conf['upsample_scales']} multiply to "
                             f"{math.prod(conf['upsample_scales'])}, but the units' frame shift is {hop_length} "
                             "samples: choose scales whose product is the frame shift (the unit encoder's 25 Hz "
                             "units: 640, e.g. [8, 5, 4, 4]; or the WORLD vocoder, `vocoder: world`)")
        self.n_units, self.hop_length, self.n_speakers = n_units, hop_length, n_speakers
        multi = n_speakers > 1
        self.unit_embed = nn.Embedding(n_units, embed_dim)
        self.spk_embed = nn.Embedding(n_speakers, spk_embed_dim) if multi else None
        with quiet_weight_norm():
            self.generator = HiFiGANGenerator(in_channels=embed_dim, out_channels=1,
                                              global_channels=spk_embed_dim if multi else -1, **conf)
        # the duration model has its own unit embedding (index n_units pads), so that its loss does not pull
        # the generator's input
        self.dur_embed = nn.Embedding(n_units + 1, embed_dim, padding_idx=n_units)
        self.dur_spk_embed = nn.Embedding(n_speakers, embed_dim) if multi else None
        self.duration_predictor = DurationPredictor(embed_dim, offset=DURATION_OFFSET,
                                                    **dict(DEFAULT_DURATION, **(duration_conf or {})))

    def forward(self, units: torch.Tensor, speakers: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.unit_embed(units).transpose(1, 2)  # (B, D, T)
        g = self.spk_embed(speakers).unsqueeze(-1) if self.spk_embed is not None else None  # (B, G, 1)
        return self.generator(x, g=g)  # (B, 1, T * hop)


    @torch.no_grad()
    def synthesize(self, units: torch.Tensor, speaker: Optional[int] = None) -> torch.Tensor:
        """Waveform (T * hop,) in [-1, 1] of frame-rate units (T,)."""
        speakers = None if speaker is None else torch.tensor([speaker], device=units.device)
        return self.forward(units.unsqueeze(0), speakers)[0, 0]


def build_discriminator(conf: Optional[dict[str, Any]] = None) -> nn.Module:
    """ESPnet's HiFi-GAN multi-scale + multi-period discriminator (its defaults, overridden by `conf`)."""
    from espnet2.gan_tts.hifigan import HiFiGANMultiScaleMultiPeriodDiscriminator

    with quiet_weight_norm():
        return HiFiGANMultiScaleMultiPeriodDiscriminator(**(conf or {}))
