"""Supervised speech units: k-means over the contextual states of a small CTC character model (the unit encoder).

Why: k-means on the upstream's frames loses what the words need.  On synth_en, a CTC reader of the continuous
Whisper features reaches 18 % CER, the same reader of their k-means units 31 % at best, and every
single-codebook variant tried (K up to 1,024, 25 Hz, mean normalisation, residual codebooks, a VQ trained
inside a CTC model) lands at 32-36 % (docs/learning.md, rows J5, U2-U9).  Clustering the hidden states of a
CTC character model trained on the aligned pairs, after a few of its blocks, gives units the same reader
takes to 24.6 % (row U10).  That is how supervised semantic tokens are made (CosyVoice's S3 tokenizer puts a
codebook inside an ASR encoder; HuBERT's later iterations cluster a trained model's states): the states have
context and have been pushed towards phones, away from voices.

A documented deviation from the paper, whose w2v-BERT tokens are self-supervised: the aligned pairs (the
paired training set) shape the units, once, and every model of the recipe then uses the same units.

The pipeline: upstream frames (T, D) -> what sinusoids of the frame index predict of them removed (the map of
zipper/tokens/kmeans.py, fitted here on the training frames) -> `stride` frames averaged -> standardised ->
ESPnet's TransformerEncoder (linear input) + CTC over characters, i.e. the unit judge's model with continuous
input (zipper/scoring/unit_judge.py) -> what stage 4 clusters (T / stride frames): with `output: states` the
output of block `layer` (d_model), with `output: posteriors` the square roots of the CTC posteriors over the
characters and blank (n_chars), so that k-means's squared distance is the Hellinger distance between them.
The posteriors lose the states' context but keep what the encoder decided: a judge reads their units about as
well as the encoder reads the features (docs/learning.md U14: 18.9 % CER against 25.2 % for block 2's units).
An encoder dir holds `unit_encoder.json` (configuration, characters, identity) and `unit_encoder.pth` (weights
and the preparation buffers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from zipper.scoring.unit_judge import JudgeConfig, UnitCTCJudge
from zipper.tokens.kmeans import fit_position, remove_position
from zipper.utils.atomic import atomic_path, atomic_write_json

CONFIG_FILE = "unit_encoder.json"
WEIGHTS_FILE = "unit_encoder.pth"
OUTPUTS = ("states", "posteriors")  # what `encode` gives stage 4 (UnitEncoderConfig.output)


@dataclasses.dataclass
class UnitEncoderConfig:
    stride: int = 2  # upstream frames averaged into one (Whisper's 50 Hz -> 25 Hz)
    remove_position: int = 16  # sinusoid channels of the position map (0: off)
    layer: int = 2  # with output "states": the block whose output becomes the features (1 .. n_layers)
    output: str = "states"  # "states" (block `layer`'s output) or "posteriors" (sqrt of the CTC posteriors)
    d_model: int = 192
    n_heads: int = 4
    d_ff: int = 512
    n_layers: int = 4
    conv_kernel: int = 3
    dropout: float = 0.1
    specaug_conf: dict = dataclasses.field(default_factory=dict)  # ESPnet SpecAug's arguments; {}: off

    def __post_init__(self):
        if self.stride < 1:
            raise ValueError(f"unit encoder stride must be >= 1, not {self.stride}")
        if not 1 <= self.layer <= self.n_layers:
            raise ValueError(f"unit encoder layer {self.layer} is not one of its blocks 1..{self.n_layers}")
        if self.output not in OUTPUTS:
            raise ValueError(f"unit encoder output '{self.output}' is not one of {', '.join(OUTPUTS)}")

    def judge_config(self, input_dim: int, n_chars: int) -> JudgeConfig:
        return JudgeConfig(n_units=0, n_chars=n_chars, input_dim=input_dim, d_model=self.d_model,
                           n_heads=self.n_heads, d_ff=self.d_ff, n_layers=self.n_layers,
                           conv_kernel=self.conv_kernel, dropout=self.dropout)


def average_frames(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(T, D) -> (ceil(T / stride), D): each group of `stride` frames averaged (a shorter last group too)."""
    if stride == 1:
        return x
    group = torch.arange(len(x), device=x.device) // stride
    out = torch.zeros(int(group[-1]) + 1 if len(x) else 0, x.shape[1], dtype=x.dtype, device=x.device)
    counts = torch.bincount(group, minlength=len(out)).to(x.dtype)[:, None]
    return out.index_add_(0, group, x) / counts.clamp(min=1)


def make_specaug(conf: dict) -> nn.Module | None:
    """ESPnet's SpecAug from its keyword arguments (None for {}).  Masks along time and along the feature axis
    fight the encoder's overfitting of the 3,500 aligned pairs (docs/learning.md U16); time warping is off unless
    asked for, since the prepared frames are 25 Hz states of Whisper, not a spectrogram."""
    if not conf:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints a note when flash-attn is absent
        from espnet2.asr.specaug.specaug import SpecAug
    return SpecAug(**{"apply_time_warp": False, **conf})


class UnitEncoder(nn.Module):
    """Upstream frames -> prepared frames -> CTC character model; `encode` gives what stage 4 clusters."""

    def __init__(self, config: UnitEncoderConfig, input_dim: int, n_chars: int):
        super().__init__()
        self.config, self.input_dim = config, input_dim
        self.model = UnitCTCJudge(config.judge_config(input_dim, n_chars))
        self.specaug = make_specaug(config.specaug_conf)
        channels = 2 * (config.remove_position // 2) + 1 if config.remove_position else 0
        self.register_buffer("position", torch.zeros(channels, input_dim, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))

    def fit_preparation(self, frames: Sequence[np.ndarray]) -> None:
        """Fit the position map and the standardisation on training utterances (each (T, D))."""
        if self.config.remove_position:
            x = np.concatenate([np.asarray(f, dtype=np.float32) for f in frames])
            positions = np.concatenate([np.arange(len(f)) for f in frames])
            self.position.copy_(torch.from_numpy(fit_position(x, positions, self.config.remove_position)))
        prepared = torch.cat([self.prepare(f, standardise=False) for f in frames])
        self.mean.copy_(prepared.mean(0))
        self.std.copy_(prepared.std(0).clamp(min=1e-5))

    def prepare(self, feats: np.ndarray | torch.Tensor, standardise: bool = True) -> torch.Tensor:
        """One utterance's upstream frames (T, D) -> (ceil(T / stride), D) float32, what the model reads."""
        x = torch.tensor(np.asarray(feats), dtype=torch.float32, device=self.mean.device)  # a copy
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"features of shape {tuple(x.shape)} do not fit a unit encoder of input dim "
                             f"{self.input_dim}")
        if self.config.remove_position:
            x = remove_position(x, np.arange(len(x)), self.position)
        x = average_frames(x, self.config.stride)
        return (x - self.mean) / self.std if standardise else x

    def forward(self, units: torch.Tensor, unit_lengths: torch.Tensor, chars: torch.Tensor,
                char_lengths: torch.Tensor, **_) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """CTC loss per character on prepared frames (B, T, D) (the trainer's contract, as the judge's); in
        training, SpecAugment's masks first when `specaug_conf` asks for them."""
        if self.training and self.specaug is not None:
            units, unit_lengths = self.specaug(units, unit_lengths)
        return self.model(units, unit_lengths, chars, char_lengths)

    @torch.no_grad()
    def states(self, prepared: torch.Tensor) -> torch.Tensor:
        """Prepared frames of one utterance (T, D) -> the output of block `layer` (T, d_model).  The blocks above
        `layer` are not run: ESPnet's encoder runs its `encoders` in order, so it is given the first `layer`."""
        encoder = self.model.encoder
        blocks = encoder.encoders
        encoder.encoders = blocks[: self.config.layer]
        try:
            (_, per_block), _, _ = encoder(prepared[None], torch.tensor([len(prepared)]), return_all_hs=True)
        finally:
            encoder.encoders = blocks
        return per_block[self.config.layer - 1][0]

    @torch.no_grad()
    def sqrt_posteriors(self, prepared: torch.Tensor) -> torch.Tensor:
        """Prepared frames of one utterance (T, D) -> sqrt of the CTC posteriors (T, n_chars); rows have unit norm."""
        hidden, _ = self.model.encode(prepared[None], torch.tensor([len(prepared)]))  # (1, T, d_model)
        return (0.5 * self.model.ctc.log_softmax(hidden)[0]).exp()

    @property
    def output_dim(self) -> int:
        return self.model.config.n_chars if self.config.output == "posteriors" else self.config.d_model

    def encode(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """Upstream frames of one utterance (T, D) -> its features for k-means (ceil(T / stride), output_dim)."""
        if len(feats) == 0:
            return np.zeros((0, self.output_dim), dtype=np.float32)
        prepared = self.prepare(feats)
        out = self.sqrt_posteriors(prepared) if self.config.output == "posteriors" else self.states(prepared)
        return out.cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike, chars: Sequence[str], provenance: dict[str, Any]) -> str:
        """Write the encoder dir; returns its identity hash (of the weights and the configuration)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE, suffix=".pth") as tmp:
            torch.save(self.state_dict(), tmp)
        digest = hashlib.sha1((directory / WEIGHTS_FILE).read_bytes())
        digest.update(json.dumps(dataclasses.asdict(self.config), sort_keys=True).encode())
        identity = digest.hexdigest()[:8]
        atomic_write_json(directory / CONFIG_FILE, {"config": dataclasses.asdict(self.config),
                                                    "input_dim": self.input_dim, "chars": list(chars),
                                                    "hash": identity, "provenance": provenance})
        return identity

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> tuple["UnitEncoder", dict[str, Any]]:
        """(encoder in eval mode, the contents of unit_encoder.json)."""
        directory = Path(directory)
        info = read_info(directory)
        encoder = cls(UnitEncoderConfig(**info["config"]), int(info["input_dim"]), len(info["chars"]))
        encoder.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu"))
        return encoder.to(device).eval(), info


def read_info(directory: str | os.PathLike) -> dict[str, Any]:
    """The contents of a finished encoder dir's unit_encoder.json (its weights must be there too)."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory / name} is missing: {directory} is not a finished unit encoder")
    return json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))


def encoded_provenance(upstream_provenance: dict[str, Any], info: dict[str, Any], encoder_dir: str | os.PathLike
                       ) -> dict[str, Any]:
    """A feature dir's provenance for the encoder's states of `upstream_provenance`'s features: the upstream's
    identity stays (stage 3 can be re-made from it), the feature hash and frame shift become the encoder's."""
    from zipper.utils.provenance import short_hash

    config = info["config"]
    prov = {k: v for k, v in upstream_provenance.items() if k != "num_frames"}  # the upstream's count, not ours
    prov["upstream_feature_hash"] = upstream_provenance.get("upstream_feature_hash",
                                                            upstream_provenance["feature_hash"])
    prov["feature_hash"] = short_hash({"features": upstream_provenance["feature_hash"], "unit_encoder": info["hash"]})
    prov["frame_shift_samples"] = int(upstream_provenance.get("frame_shift_samples") or 0) * int(config["stride"])
    prov["unit_encoder"] = {"hash": info["hash"], "dir": str(Path(encoder_dir)), "layer": config["layer"],
                            "output": config.get("output", "states"),
                            "stride": config["stride"]}
    return prov


__all__ = ["UnitEncoder", "UnitEncoderConfig", "average_frames", "encoded_provenance", "make_specaug", "read_info"]
