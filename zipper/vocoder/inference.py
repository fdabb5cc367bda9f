"""A trained vocoder, loaded from its experiment dir, that turns one unit sequence into a waveform.

Which units come deduplicated: stage 5's units on disk never are (they keep the frame rate); a TTS decoding
is when the model that generated it was trained with `--dedup true` (its decode.json names the experiment,
whose config.yaml says so).  `units_are_deduplicated` reads that, so a user need not say it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import yaml

from zipper.tokens.units import INVENTORY_KEYS
from zipper.train.trainer import load_model_state
from zipper.utils.atomic import read_json
from zipper.utils.provenance import check_provenance
from zipper.vocoder.model import UnitVocoder, quiet_weight_norm
from zipper.vocoder.train import MODEL_FILE
from zipper.vocoder.world import WorldVocoder

INFO_FILE = "vocoder.json"  # what the vocoder was trained on: units inventory, voices, rates


def units_are_deduplicated(units_dir: str | os.PathLike) -> bool:
    """True for a TTS decoding of a model trained on deduplicated units; False for stage 5's units."""
    decode = Path(units_dir) / "decode.json"
    if not decode.exists():
        return False
    exp_dir = read_json(decode).get("exp_dir")
    config = Path(exp_dir or "") / "config.yaml"
    if not exp_dir or not config.exists():
        raise FileNotFoundError(f"{decode} names the experiment {exp_dir!r}, whose config.yaml is missing: "
                                "cannot tell whether its units are deduplicated (pass --dedup true/false)")
    with open(config, encoding="utf-8") as f:
        return bool((yaml.safe_load(f) or {}).get("dedup", False))


def build_vocoder(args, info: dict) -> torch.nn.Module:
    """The model `args.vocoder` names, sized by the config and the training data's `info` (vocoder.json)."""
    common = dict(n_speakers=len(info["speakers"]), embed_dim=args.embed_dim, spk_embed_dim=args.spk_embed_dim,
                  duration_conf=args.duration_conf)
    if getattr(args, "vocoder", "hifigan") == "world":
        return WorldVocoder(info["n_units"], info["hop_length"], info["fs"], world_conf=args.world_conf,
                            encoder_conf=args.encoder_conf, **common)
    return UnitVocoder(info["n_units"], info["hop_length"], generator_conf=args.generator_conf, **common)


class Vocoder:
    """`vocoder(units, deduplicated)` -> float32 waveform in [-1, 1] at `vocoder.fs`, in the target voice."""

    def __init__(self, model: UnitVocoder, info: dict[str, Any], device: str = "cpu"):
        self.model, self.info, self.device = model.to(device).eval(), info, torch.device(device)
        self.fs, self.hop_length = int(info["fs"]), int(info["hop_length"])
        self.speakers: list[str] = list(info["speakers"])

    @classmethod
    def from_exp(cls, exp_dir: str | os.PathLike, checkpoint: str = MODEL_FILE, device: str = "cpu") -> "Vocoder":
        exp_dir = Path(exp_dir)
        for name in ("config.yaml", INFO_FILE, checkpoint):
            if not (exp_dir / name).exists():
                raise FileNotFoundError(f"{exp_dir / name} is missing: has the vocoder in {exp_dir} finished training?")
        with open(exp_dir / "config.yaml", encoding="utf-8") as f:
            config = yaml.safe_load(f)
        info = read_json(exp_dir / INFO_FILE)
        model = build_vocoder(argparse.Namespace(**config), info)
        load_model_state(model, torch.load(exp_dir / checkpoint, map_location="cpu"))
        if isinstance(model, UnitVocoder):
            with quiet_weight_norm():
                model.generator.remove_weight_norm()  # inference: fold the norms into the weights once
        return cls(model, info, device)

    @property
    def target_speaker(self) -> str:
        return self.info["target_speaker"]

    def speaker_index(self, speaker: Optional[str] = None) -> Optional[int]:
        """Index of `speaker` (default: the target voice) in a multi-voice vocoder; None for a one-voice one."""
        if len(self.speakers) == 1:
            if speaker not in (None, self.speakers[0]):
                raise ValueError(f"this vocoder speaks only {self.speakers[0]}, not {speaker}")
            return None
        speaker = speaker or self.target_speaker
        if speaker not in self.speakers:
            raise ValueError(f"speaker {speaker} is not one of the vocoder's voices: {', '.join(self.speakers)}")
        return self.speakers.index(speaker)

    def check_units(self, provenance: dict[str, Any], what: str) -> None:
        """Refuse units of another k-means inventory than the one the vocoder was trained on."""
        check_provenance(provenance, self.info["inventory"], INVENTORY_KEYS, f"{what} vs the vocoder's units")

    @torch.no_grad()
    def __call__(self, units: np.ndarray, deduplicated: bool, speaker: Optional[str] = None) -> np.ndarray:
        units = np.asarray(units, dtype=np.int64)
        if units.size == 0:
            return np.zeros(0, dtype=np.float32)
        if units.min() < 0 or units.max() >= self.model.n_units:
            raise ValueError(f"units out of range 0..{self.model.n_units - 1}: {units.min()}..{units.max()}")
        index = self.speaker_index(speaker)
        x = torch.from_numpy(units).to(self.device)  # (N,)
        if deduplicated:
            x = torch.repeat_interleave(x, self.model.predict_durations(x, index))  # (T,)
        wav = self.model.synthesize(x, index).clamp(-1.0, 1.0)  # (T * hop,)
        return wav.cpu().numpy().astype(np.float32)
