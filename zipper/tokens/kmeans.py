"""k-means over frame features: the codebook that turns features into discrete speech units.

Fitting uses faiss (fast, multi-threaded) or scikit-learn's MiniBatchKMeans; assignment is a plain nearest-
centroid search in torch so that decoding-time code needs neither.  A k-means dir holds `centroids.npy` and
`provenance.json` (upstream, layer, K, seed, data hash, ...); its name carries a hash of what made it, so two
configurations never share a folder.

Features whose frames say where they are in the utterance get clustered by position as much as by content:
Whisper's last encoder layer predicts a frame's index with R^2 0.99 from a linear map, and 28 % of its variance
is explained by 16 sinusoids of the frame index (docs/learning.md, measured on synth_en dev).  With
`remove_position` > 0 channels, a least-squares map from sinusoids of the frame index to the features is
fitted on the same sample as the centroids (`position.npy`) and subtracted from every frame before both the
fit and the assignment, so that units name content, not place.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import kaldiio
import numpy as np
import torch

from zipper.data.kaldi_dir import read_kv
from zipper.utils.provenance import read_provenance, short_hash

logger = logging.getLogger(__name__)
CENTROIDS_FILE = "centroids.npy"
POSITION_FILE = "position.npy"
UNIT_ENCODER_DIR = "unit_encoder"  # a copy of the unit encoder when the features were its states


def kmeans_identity(feats_provenance: dict[str, Any], n_clusters: int, portion: float, max_frames: int,
                    seed: int, algorithm: str, niter: int, remove_position: int = 0) -> dict[str, Any]:
    """Everything that determines the codebook; its hash names the k-means dir (remove_position only when
    used, so that the codebooks made before it keep their names)."""
    extra = {"remove_position": remove_position} if remove_position else {}
    return {**extra,
        "feature_hash": feats_provenance["feature_hash"],
        "upstream": feats_provenance["upstream"],
        "layer": feats_provenance["layer"],
        "data_hash": feats_provenance["data_hash"],
        "n_clusters": n_clusters,
        "portion": portion,
        "max_frames": max_frames,
        "seed": seed,
        "algorithm": algorithm,
        "niter": niter,
    }


def kmeans_tag(feat_tag: str, identity: dict[str, Any]) -> str:
    return f"{feat_tag}_k{identity['n_clusters']}_{short_hash(identity)}"


def load_sample(feats_scp: str | os.PathLike, portion: float, max_frames: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, D) of a seeded `portion` of the utterances, at most `max_frames` of them (sub-sampled
    evenly), and each frame's index in its utterance (N,)."""
    scp = read_kv(feats_scp)
    utts = sorted(scp)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(utts, max(1, round(portion * len(utts)))))
    feats = [kaldiio.load_mat(scp[u]) for u in chosen]
    x = np.concatenate(feats, axis=0).astype(np.float32)
    positions = np.concatenate([np.arange(len(f)) for f in feats])
    if len(x) > max_frames:
        index = np.sort(np.random.default_rng(seed).choice(len(x), size=max_frames, replace=False))
        x, positions = x[index], positions[index]
    return np.ascontiguousarray(x), positions


def position_basis(positions: np.ndarray | torch.Tensor, channels: int) -> torch.Tensor:
    """(N,) frame indices -> (N, 2 * (channels // 2) + 1): sines and cosines of geometric wavelengths
    (2 pi .. 2 pi x 10^4 frames) and a constant."""
    t = torch.as_tensor(positions, dtype=torch.float64)[:, None]
    half = channels // 2
    inv = torch.exp(-np.log(10000.0) * torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
    angles = t * inv[None]
    return torch.cat([angles.sin(), angles.cos(), torch.ones_like(t)], dim=1)


def fit_position(x: np.ndarray, positions: np.ndarray, channels: int) -> np.ndarray:
    """Least-squares map (2 * (channels // 2) + 1, D) float64 from position_basis to the frames."""
    basis = position_basis(positions, channels)
    return torch.linalg.lstsq(basis, torch.from_numpy(x).double(), driver="gelsd").solution.numpy()  # float64


def remove_position(x: torch.Tensor, positions: np.ndarray | torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Frames (N, D) minus what their positions predict of them."""
    channels = weights.shape[0] - 1  # 2 * (channels // 2) sines and cosines + 1 constant
    # in float64: the slowest sinusoids are nearly the constant, and the fitted map cancels large terms
    return (x.double() - position_basis(positions, channels) @ weights.double()).to(x.dtype)


def fit(x: np.ndarray, n_clusters: int, seed: int, algorithm: str = "faiss", niter: int = 20) -> tuple[np.ndarray, float]:
    """Centroids (K, D) float32 and the mean squared distance of `x` to its nearest centroid."""
    if len(x) < n_clusters:
        raise ValueError(f"{len(x)} frames are too few for {n_clusters} clusters; raise --portion")
    if algorithm == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], n_clusters, niter=niter, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, len(x) // n_clusters + 1))
        km.train(x)
        centroids = km.centroids.astype(np.float32)
    elif algorithm == "sklearn":
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, max_iter=niter, batch_size=10000,
                             n_init=1).fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    else:
        raise ValueError(f"unknown k-means algorithm '{algorithm}' (faiss or sklearn)")
    _, dist = assign_with_distance(torch.from_numpy(x), torch.from_numpy(centroids))
    return centroids, float(dist.mean())


def assign_with_distance(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row: x (N, D), centroids (K, D) -> ids (N,) int64, squared distances (N,).

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the first term does not change the argmin, so the search is one
    fused addmm and one min per chunk, and ||x||^2 is added to the N winners only.
    """
    c_sq = centroids.square().sum(dim=1)  # (K,)
    ids, dists = [], []
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        scores = torch.addmm(c_sq, part, centroids.T, beta=1.0, alpha=-2.0)  # (n, K)
        best, index = scores.min(dim=1)
        ids.append(index)
        dists.append((best + part.square().sum(dim=1)).clamp(min=0))
    return torch.cat(ids), torch.cat(dists)


class KMeansModel:
    """A fitted codebook: `model(feats (T, D)) -> units (T,) int32`."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / CENTROIDS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: stage 4 (k-means) has not finished for {directory}")
        self.centroids = torch.from_numpy(np.load(path))  # (K, D)
        self.provenance = read_provenance(directory)
        self.position: torch.Tensor | None = None  # (C, D) the fitted map of remove_position, if used
        if self.provenance.get("remove_position"):
            self.position = torch.from_numpy(np.load(self.directory / POSITION_FILE))
        self.encoder = None  # the unit encoder whose states were clustered (zipper/tokens/unit_encoder.py), if any
        if self.provenance.get("unit_encoder"):
            from zipper.tokens.unit_encoder import UnitEncoder

            self.encoder, _ = UnitEncoder.load(self.directory / UNIT_ENCODER_DIR)

    @property
    def n_clusters(self) -> int:
        return self.centroids.shape[0]

    def __call__(self, feats: np.ndarray | torch.Tensor, positions: np.ndarray | None = None) -> np.ndarray:
        """feats (T, D) of one utterance, or of several concatenated with each frame's index in its own
        utterance as `positions` (T,) (default 0 .. T-1)."""
        x = torch.tensor(feats, dtype=torch.float32)  # a copy: kaldiio may hand out read-only arrays
        if x.ndim != 2 or x.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"features of shape {tuple(x.shape)} do not fit centroids of dim "
                             f"{self.centroids.shape[1]}")
        if self.position is not None:
            x = remove_position(x, np.arange(len(x)) if positions is None else positions, self.position)
        ids, _ = assign_with_distance(x, self.centroids)
        return ids.numpy().astype(np.int32)

    def from_upstream(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """The upstream's frames of one utterance (T, D) -> its units: through the unit encoder first when the
        codebook was fitted on its states (what stages 3-5 do, for audio that never went through them)."""
        if self.encoder is None:
            return self(feats)
        return self(self.encoder.encode(feats))

