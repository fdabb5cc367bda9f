"""Frame-level features from an s3prl upstream (the input of k-means, hence of the speech tokens).

Any s3prl hub entry works by name (`hubert_local` with `ckpt: /path/model.pt`, `wav2vec2_local`, ...), and so
do s3prl's Kaldi-style baseline upstreams (`mfcc`, `fbank`, `mel`, `linear`, `spectrogram`), whose s3prl YAML
config we deep-merge with `upstream_conf` (e.g. a 20 ms frame shift), and `whisper`: Whisper's encoder from the
judge's offline CTranslate2 model (zipper/tokens/whisper_encoder.py), speaker-independent with no download.
The selected layer's frames, trimmed to
each utterance's true length, are what the caller stores.

s3prl computes baseline features one utterance at a time; `BatchedKaldiMfcc` computes the same MFCC+delta+CMVN
for a padded batch (stage 3 is the units pipeline's bottleneck on CPU) and tests pin it to s3prl's output.
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import os
import tempfile
from typing import Any, Sequence

import torch
import yaml

from zipper.tokens import s3prl_compat
from zipper.utils.provenance import short_hash

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
BASELINE_UPSTREAMS = ("mfcc", "fbank", "fbank_no_cmvn", "mel", "linear", "spectrogram")


def feature_hash(provenance: dict[str, Any]) -> str:
    """Identity of a feature configuration: upstream, layer and the resolved upstream config."""
    return short_hash({k: provenance[k] for k in ("upstream", "layer", "upstream_conf")})


def deep_update(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def baseline_config(name: str, override: dict | None = None) -> dict:
    """s3prl's YAML config for a baseline upstream, with `override` deep-merged into it."""
    s3prl_compat.ensure()
    import s3prl.upstream.baseline.hubconf as baseline_hub

    path = os.path.join(os.path.dirname(baseline_hub.__file__), f"{name}.yaml")
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    return deep_update(config, override or {})


def hub_module(name: str):
    """The module that defines s3prl hub entry `name`.

    `s3prl.hub` imports every upstream s3prl knows (10+ s, and some try downloads); a `<family>_local` /
    `_custom` / `_url` entry only needs `s3prl.upstream.<family>.hubconf`.
    """
    if name.endswith(("_local", "_custom", "_url")):
        family = name.rsplit("_", 1)[0]
        try:
            return importlib.import_module(f"s3prl.upstream.{family}.hubconf")
        except ModuleNotFoundError as e:
            raise ValueError(f"unknown s3prl upstream '{name}': s3prl has no upstream family '{family}'") from e
    return importlib.import_module("s3prl.hub")


class FeatureUpstream(torch.nn.Module):
    """An s3prl upstream plus a layer choice: `extract(wavs) -> [(T_i, D) tensors]`."""

    def __init__(self, name: str, layer: int = -1, conf: dict | None = None, batched: bool = True):
        super().__init__()
        self.name, self.layer, self.conf = name, layer, dict(conf or {})
        s3prl_compat.ensure()

        if name in BASELINE_UPSTREAMS:
            self.config = baseline_config(name, self.conf)
            if batched and BatchedKaldiMfcc.supports(self.config):
                self.model = BatchedKaldiMfcc(self.config)
                self.frame_shift = self.model.frame_shift_samples
            else:
                from s3prl.upstream.baseline.hubconf import baseline_local

                with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                    yaml.safe_dump(self.config, f)
                try:
                    self.model = baseline_local(model_config=f.name)
                finally:
                    os.unlink(f.name)
                self.frame_shift = self.model.get_downsample_rates("hidden_states")
        elif name == "whisper":
            from zipper.tokens.whisper_encoder import WhisperEncoder

            self.model = WhisperEncoder(self.conf)
            self.config = self.model.provenance_conf()
            self.frame_shift = self.model.get_downsample_rates("hidden_states")
        else:
            self.config = dict(self.conf)
            ckpt = str(self.conf.get("ckpt", ""))
            if ckpt and (os.path.isabs(ckpt) or ckpt.startswith((".", "~"))) and not os.path.exists(
                    os.path.expanduser(ckpt)):  # else s3prl/transformers take it for a hub name and download
                raise FileNotFoundError(f"upstream '{name}': its checkpoint {ckpt} does not exist")
            hub = hub_module(name)
            if not hasattr(hub, name):
                raise ValueError(f"unknown s3prl upstream '{name}' (see s3prl.hub; local checkpoints: "
                                 f"hubert_local / wav2vec2_local with upstream_conf {{ckpt: PATH}})")
            self.model = getattr(hub, name)(**self.conf)
            self.frame_shift = self.model.get_downsample_rates("hidden_states")
        self.model.eval()

    def provenance(self) -> dict[str, Any]:
        """What the features are: with `feature_hash`, which k-means dirs and unit sets record."""
        prov = {"upstream": self.name, "layer": self.layer, "upstream_conf": self.config,
                "frame_shift_samples": self.frame_shift}
        prov["feature_hash"] = feature_hash(prov)
        return prov

    def num_frames(self, num_samples: int) -> int:
        if self.name in BASELINE_UPSTREAMS:
            frame_length = int(self.config["kaldi"][self.config["kaldi"]["feat_type"]].get("frame_length", 25.0)
                               * SAMPLE_RATE / 1000)
            return max(0, 1 + (num_samples - frame_length) // self.frame_shift)
        if self.name == "whisper":
            return self.model.num_frames(num_samples)
        # wav2vec2/HuBERT-style conv front-ends: a 400-sample receptive field every 320 samples (25 ms / 20 ms)
        receptive = 400 if self.frame_shift == 320 else self.frame_shift
        return max(1, (num_samples - receptive) // self.frame_shift + 1)

    @torch.inference_mode()
    def extract(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """wavs: list of (N_i,) float tensors at 16 kHz -> list of (T_i, D) float32 features."""
        out = self.model(list(wavs))
        states = out["hidden_states"]
        try:
            hidden = states[self.layer]  # (B, T, D)
        except IndexError:
            raise ValueError(f"upstream '{self.name}' has {len(states)} layers; layer {self.layer} does not exist")
        feats = []
        for i, wav in enumerate(wavs):
            n = min(hidden.shape[1], self.num_frames(len(wav)))
            feats.append(hidden[i, :n].float().contiguous())
        return feats


class BatchedKaldiMfcc(torch.nn.Module):
    """s3prl's `mfcc` baseline (torchaudio.compliance.kaldi.mfcc -> deltas -> per-utterance CMVN), batched.

    Same arithmetic as torchaudio's Kaldi-compatible MFCC with its defaults (snip_edges, povey window,
    remove_dc_offset, preemphasis 0.97, no dither, energy floor 0, use_energy false, cepstral lifter 22,
    low/high freq 20/0, 23 mel bins), applied to a padded batch at once.  Options other than num_ceps,
    num_mel_bins, frame_length, frame_shift are not supported: `supports()` sends those configs to s3prl.
    """

    SUPPORTED_MFCC_KEYS = {"num_ceps", "num_mel_bins", "frame_length", "frame_shift"}

    @classmethod
    def supports(cls, config: dict) -> bool:
        kaldi = config.get("kaldi", {})
        return (kaldi.get("feat_type") == "mfcc" and set(kaldi.get("mfcc", {})) <= cls.SUPPORTED_MFCC_KEYS
                and set(config.get("delta", {})) <= {"order", "win_length"}
                and set(config.get("cmvn", {})) <= {"use_cmvn"})

    def __init__(self, config: dict):
        super().__init__()
        import torchaudio.compliance.kaldi as kaldi
        import torchaudio.functional as taf

        mfcc = config["kaldi"]["mfcc"]
        self.num_ceps = int(mfcc.get("num_ceps", 13))
        num_mel_bins = int(mfcc.get("num_mel_bins", 23))
        self.frame_length_samples = int(mfcc.get("frame_length", 25.0) * SAMPLE_RATE / 1000)
        self.frame_shift_samples = int(mfcc.get("frame_shift", 10.0) * SAMPLE_RATE / 1000)
        self.padded_length = 1 << math.ceil(math.log2(self.frame_length_samples))
        self.delta_order = int(config.get("delta", {}).get("order", 2))
        self.delta_win = int(config.get("delta", {}).get("win_length", 5))
        self.use_cmvn = bool(config.get("cmvn", {}).get("use_cmvn", True))
        mel, _ = kaldi.get_mel_banks(num_mel_bins, self.padded_length, float(SAMPLE_RATE), 20.0, 0.0,
                                     100.0, -500.0, 1.0)
        mel = torch.nn.functional.pad(mel, (0, 1))  # (M, F): the Nyquist bin gets weight 0, as in torchaudio
        dct = taf.create_dct(self.num_ceps, num_mel_bins, "ortho")  # (M, C)
        lifter = 1.0 + 11.0 * torch.sin(math.pi * torch.arange(self.num_ceps) / 22.0)  # Q = 22
        window = torch.hann_window(self.frame_length_samples, periodic=False).pow(0.85)  # povey
        self.register_buffer("mel", mel.T.contiguous(), persistent=False)  # (F, M)
        if float(window[0]) != 0.0:
            raise AssertionError("the fused pre-emphasis in _mfcc relies on the povey window starting at 0")
        self.register_buffer("liftered_dct", dct * lifter, persistent=False)  # (M, C)
        self.register_buffer("window_tail", window[1:].contiguous(), persistent=False)  # (L - 1,)

    def get_downsample_rates(self, key: str) -> int:
        return self.frame_shift_samples

    def _mfcc(self, wavs: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, T, C) for equal-length rows (the caller pads and trims).

        Kaldi frames a signal, removes each frame's mean, pre-emphasises (x_i - 0.97 x_{i-1}, x_{-1} = x_0) and
        windows it.  Written out, windowed sample i >= 1 is (x_i - 0.97 x_{i-1} - 0.03 mean) w_i, and the povey
        window's w_0 is 0: three fused passes straight into the zero-padded FFT buffer, no other temporaries.
        """
        length, shift, padded_length = self.frame_length_samples, self.frame_shift_samples, self.padded_length
        frames = wavs.unfold(1, length, shift)  # (B, T, L), a view
        mean = frames.mean(dim=-1, keepdim=True)  # (B, T, 1)
        buf = frames.new_zeros(frames.shape[0], frames.shape[1], padded_length)  # (B, T, P)
        body = buf[..., 1:length]
        torch.mul(frames[..., 1:], self.window_tail, out=body)
        body.addcmul_(frames[..., :-1], self.window_tail, value=-0.97)
        body.addcmul_(mean, self.window_tail, value=-0.03)
        spectrum = torch.fft.rfft(buf)  # (B, T, F)
        power = spectrum.real.square() + spectrum.imag.square()
        eps = torch.finfo(torch.float32).eps
        logmel = torch.clamp(power @ self.mel, min=eps).log()  # (B, T, M)
        return logmel @ self.liftered_dct  # (B, T, C)

    def _deltas(self, x: torch.Tensor) -> torch.Tensor:
        """Regression deltas along time with edge replication, (B, T, C) -> (B, T, C), like torchaudio's."""
        n = (self.delta_win - 1) // 2
        padded = torch.nn.functional.pad(x.transpose(1, 2), (n, n), mode="replicate")  # (B, C, T + 2n)
        t = x.shape[1]
        num = sum(k * (padded[..., n + k:n + k + t] - padded[..., n - k:n - k + t]) for k in range(1, n + 1))
        return (num / (2 * sum(k * k for k in range(1, n + 1)))).transpose(1, 2)

    def forward(self, wavs: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        batch = torch.nn.utils.rnn.pad_sequence(list(wavs), batch_first=True).float()  # (B, N)
        ceps = self._mfcc(batch)  # (B, T, C)
        frames = torch.tensor([max(0, 1 + (len(w) - self.frame_length_samples) // self.frame_shift_samples)
                               for w in wavs])  # (B,)
        # Each utterance's last frame is repeated over the padding, so that deltas see the same edge
        # replication as they would on the utterance alone.
        last = torch.minimum(torch.arange(ceps.shape[1]).unsqueeze(0), (frames - 1).clamp(min=0).unsqueeze(1))
        index = last.unsqueeze(-1).expand(-1, -1, ceps.shape[2])  # (B, T, C)
        parts = [ceps.gather(1, index)]
        for _ in range(self.delta_order):
            parts.append(self._deltas(parts[-1]).gather(1, index))
        x = torch.cat(parts, dim=-1)  # (B, T, D)
        if self.use_cmvn:
            mask = (torch.arange(x.shape[1]).unsqueeze(0) < frames.unsqueeze(1)).unsqueeze(-1)  # (B, T, 1)
            count = frames.view(-1, 1, 1).to(x.dtype)
            mean = (x * mask).sum(dim=1, keepdim=True) / count
            var = ((x - mean).square() * mask).sum(dim=1, keepdim=True) / (count - 1)  # unbiased, as torch.std
            x = (x - mean) / (1e-10 + var.sqrt())
        return {"last_hidden_state": x, "hidden_states": [x]}
