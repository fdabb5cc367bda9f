"""Parallel readings for the WORLD vocoder: pairing by sentence, DTW alignment over unit centroids, warping."""

from __future__ import annotations

import numpy as np

from zipper.vocoder.data import VocoderUtt
from zipper.vocoder.parallel import align, pair_readings, parallel_utterances, sentence_key, warp


def utt(utt: str, speaker: str, units) -> VocoderUtt:
    return VocoderUtt(utt, speaker, f"/audio/{utt}.wav", np.asarray(units, dtype=np.int32))


def test_readings_pair_by_sentence_and_not_with_the_target_voice():
    targets = [utt("tgt-0001", "tgt", [0]), utt("tgt-0002", "tgt", [1])]
    others = [utt("a-0002", "a", [2]), utt("b-0001", "b", [3]), utt("b-0009", "b", [4]), utt("tgt-0001", "tgt", [5])]
    assert sentence_key(others[0]) == "0002" and sentence_key(utt("odd_id", "x", [0])) == "odd_id"
    pairs = pair_readings(targets, others)
    assert [(o.utt, t.utt) for o, t in pairs] == [("a-0002", "tgt-0002"), ("b-0001", "tgt-0001")]


def test_a_slower_reading_aligns_onto_the_target_frames():
    centroids = np.eye(4) * 10.0  # four units far apart
    target = np.array([0, 1, 2, 3])
    slow = np.array([0, 0, 1, 1, 1, 2, 3, 3])  # the same sentence, longer runs
    assert align(slow, target, centroids).tolist() == [0, 0, 1, 1, 1, 2, 3, 3]
    fast = np.array([0, 2, 3])  # a unit skipped: the others still find theirs
    index = align(fast, np.array([0, 1, 1, 2, 3]), centroids)
    assert index[1:].tolist() == [3, 4] and index[0] <= 2


def test_warp_takes_the_target_units_frames():
    feats = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)  # 3 units x 2 frames, dim 2
    out = warp(feats, np.array([2, 0, 0]), ratio=2)
    assert out.tolist() == [[8, 9], [10, 11], [0, 1], [2, 3], [0, 1], [2, 3]]


def test_parallel_utterances_speak_the_target_voice_on_the_other_voices_units():
    centroids = np.eye(3)
    target = utt("tgt-0001", "tgt", [0, 1, 2])
    other = utt("a-0001", "a", [0, 0, 1, 2, 2])
    feats = {"tgt-0001": np.arange(3 * 4, dtype=np.float32).reshape(6, 2)}  # ratio 2
    utts, warped = parallel_utterances([(other, target)], feats, centroids, ratio=2)
    assert [(u.utt, u.speaker, u.units.tolist()) for u in utts] == [("a-0001>tgt-0001", "tgt", [0, 0, 1, 2, 2])]
    assert warped["a-0001>tgt-0001"].shape == (10, 2)
    assert warped["a-0001>tgt-0001"][:4].tolist() == [[0, 1], [2, 3], [0, 1], [2, 3]]
