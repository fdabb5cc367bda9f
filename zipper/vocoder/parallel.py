"""Other voices reading the vocoder voice's sentences, as extra training pairs: another voice's units in, the
target voice's WORLD frames out, aligned in time by dynamic time warping.

Why: a single-voice vocoder learns from its own voice's units, but synthesis feeds it units of every voice (all of
synth_en's test voices are unseen).  Units are not speaker-free, so the vocoder meets at test time unit sequences
it never saw.  When another voice read the same sentence (synth_en's `train_vocoder` re-reads `train_speech`
sentences), its units and the target voice's audio form a parallel pair, as in parallel voice conversion: the
model learns to map any voice's units of a sentence to the target voice's acoustics.  The two readings differ in
timing, so the target's frames are warped onto the other voice's unit frames along a DTW path over the k-means
centroids of the two unit sequences (librosa.sequence.dtw; units only, no second feature extraction).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from zipper.vocoder.data import VocoderUtt

logger = logging.getLogger(__name__)


def sentence_key(u: VocoderUtt) -> str:
    """The utterance id without its speaker prefix: the same key for every voice's reading of one sentence (the
    synth_en convention `<speaker>-<sentence index>`); the whole id when it does not start with the speaker."""
    prefix = f"{u.speaker}-"
    return u.utt[len(prefix):] if u.utt.startswith(prefix) else u.utt


def pair_readings(targets: Sequence[VocoderUtt], others: Sequence[VocoderUtt]) -> list[tuple[VocoderUtt, VocoderUtt]]:
    """(other voice's reading, target voice's reading) of each sentence both read; readings by the target's own
    voice among `others` are left out (they are not another voice)."""
    by_key = {sentence_key(t): t for t in targets}
    voices = {t.speaker for t in targets}
    return [(o, by_key[sentence_key(o)]) for o in others
            if o.speaker not in voices and sentence_key(o) in by_key]


def align(source: np.ndarray, target: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """For each frame of unit sequence `source` (S,), the frame of `target` (T,) that DTW maps it to: (S,)
    non-decreasing indices (the middle one where a source frame spans several).  The cost of a frame pair is the
    distance between their units' centroids (K, D)."""
    import librosa
    from scipy.spatial.distance import cdist

    cost = cdist(centroids[source], centroids[target])  # (S, T)
    _, path = librosa.sequence.dtw(C=cost)  # (L, 2) pairs (s, t), from the end back to (0, 0)
    path = path[::-1]  # s non-decreasing: source frame s spans rows first[s] .. last[s] - 1
    first = np.searchsorted(path[:, 0], np.arange(len(source)), side="left")
    last = np.searchsorted(path[:, 0], np.arange(len(source)), side="right")
    return path[first + (last - first) // 2, 1].astype(np.int64)  # several target frames: the middle one


def warp(feats: np.ndarray, index: np.ndarray, ratio: int) -> np.ndarray:
    """Target features (T * ratio, dim) -> (len(index) * ratio, dim): the `ratio` frames of target unit index[s]
    for each source unit s."""
    per_unit = feats[:len(feats) // ratio * ratio].reshape(-1, ratio, feats.shape[1])  # (T, ratio, dim)
    return per_unit[np.minimum(index, len(per_unit) - 1)].reshape(-1, feats.shape[1])


def parallel_utterances(pairs: Sequence[tuple[VocoderUtt, VocoderUtt]], feats: dict[str, np.ndarray],
                        centroids: np.ndarray, ratio: int) -> tuple[list[VocoderUtt], dict[str, np.ndarray]]:
    """One training utterance per pair: the other voice's units, spoken by the target voice (its id
    `<other>><target>`), and its target features warped onto those units' frames."""
    utts, warped = [], {}
    for other, target in pairs:
        utt = f"{other.utt}>{target.utt}"
        index = align(other.units, target.units, centroids)
        utts.append(dataclasses.replace(other, utt=utt, speaker=target.speaker, wav=target.wav))
        warped[utt] = warp(feats[target.utt], index, ratio)
    if utts:
        length_ratio = np.mean([len(o.units) / len(t.units) for o, t in pairs])
        logger.info("%d parallel readings by other voices, aligned to the target voice's (mean length ratio %.2f)",
                    len(utts), length_ratio)
    return utts, warped
