"""Whisper's encoder as a feature upstream: speaker-independent frames for k-means, with no download.

The built-in corpus has ~100 synthetic voices and no offline SSL checkpoint (HuBERT, w2v-BERT).  MFCC k-means
units are voice-dependent (docs/vocoder.md), so a vocoder or a judge must relearn every voice.  Whisper's
encoder was trained to map any voice to the same text, its last layer keeps little of the voice, and a
CTranslate2 copy of it is already installed from PyPI for the Whisper judge (zipper.scoring.whisper_judge).

CTranslate2 returns only the last encoder layer (after the final layer norm), one 20 ms frame per two 10 ms
mel frames.  Utterances are encoded one at a time and unpadded (CTranslate2 accepts fewer than 3000 mel
frames): padding to Whisper's 30 s window would cost ~8x on synth_en's 4 s utterances, and a batch padded to
its longest member changes the shorter members' frames (the encoder attends over the padding).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

SAMPLE_RATE = 16000
FRAME_SHIFT = 320  # samples per encoder frame: 10 ms mel hop x conv stride 2


class WhisperEncoder(torch.nn.Module):
    """`forward(wavs)` -> {"hidden_states": [(B, T, D)]}, like an s3prl upstream with one layer.

    conf: model (a CTranslate2 Whisper dir or a packaged name, default tiny.en), compute_type (int8),
    threads (CTranslate2 intra-op threads, default: torch's).
    """

    def __init__(self, conf: dict[str, Any] | None = None):
        super().__init__()
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        from zipper.scoring.whisper_judge import locate_model

        conf = dict(conf or {})
        unknown = set(conf) - {"model", "compute_type", "threads"}
        if unknown:
            raise ValueError(f"whisper upstream: unknown upstream_conf keys {sorted(unknown)} "
                             "(known: model, compute_type, threads)")
        self.model_name = str(conf.get("model", "tiny.en"))
        self.compute_type = str(conf.get("compute_type", "int8"))
        threads = int(conf.get("threads", 0)) or torch.get_num_threads()
        self.model_dir = locate_model(self.model_name)
        self.ct2 = ctranslate2
        self.encoder = ctranslate2.models.Whisper(str(self.model_dir), device="cpu",
                                                  compute_type=self.compute_type, intra_threads=threads)
        self.features = FeatureExtractor(feature_size=self.encoder.n_mels)

    def provenance_conf(self) -> dict[str, Any]:
        return {"model": self.model_name, "compute_type": self.compute_type}

    def get_downsample_rates(self, key: str) -> int:
        return FRAME_SHIFT

    def num_frames(self, num_samples: int) -> int:
        """Encoder frames of `num_samples` samples: faster-whisper's mel frames, halved by the stride-2 conv."""
        mel_frames = num_samples // 160 + 1
        return (mel_frames + 1) // 2

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 samples at 16 kHz -> (T, D) float32 encoder frames."""
        mel = self.features(wav.astype(np.float32))  # (n_mels, M)
        if mel.shape[1] > 3000:
            raise ValueError(f"whisper upstream: an utterance of {len(wav) / SAMPLE_RATE:.1f} s is longer than "
                             "Whisper's 30 s window")
        out = self.encoder.encode(self.ct2.StorageView.from_array(mel[None].astype(np.float32)), to_cpu=True)
        return np.asarray(out, dtype=np.float32)[0]  # (T, D)

    def forward(self, wavs: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        frames = [torch.from_numpy(self.encode(w.detach().cpu().float().numpy())) for w in wavs]
        hidden = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)  # (B, T, D)
        return {"last_hidden_state": hidden, "hidden_states": [hidden]}
