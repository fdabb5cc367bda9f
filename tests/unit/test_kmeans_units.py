"""k-means fitting/assignment, unit dedup, and unit provenance checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zipper.tokens.kmeans import (assign_with_distance, fit, fit_position, kmeans_identity, kmeans_tag, position_basis,
                                  remove_position)
from zipper.tokens.units import dedup, undedup


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    labels = rng.integers(0, 4, size=2000)
    return (centers[labels] + 0.3 * rng.standard_normal((2000, 2))).astype(np.float32), labels, centers


@pytest.mark.parametrize("algorithm", ["faiss", "sklearn"])
def test_fit_recovers_separated_clusters(algorithm):
    x, labels, centers = blobs()
    centroids, mse = fit(x, 4, seed=0, algorithm=algorithm)
    def by_position(c):
        return c[np.argsort(c[:, 0] * 100 + c[:, 1])]

    np.testing.assert_allclose(by_position(centroids), by_position(centers), atol=0.1)
    assert mse < 0.3
    ids, _ = assign_with_distance(torch.from_numpy(x), torch.from_numpy(centroids))
    # the partition equals the true one up to renaming clusters
    mapping = {}
    for true, got in zip(labels, ids.numpy()):
        assert mapping.setdefault(int(got), int(true)) == int(true)


def test_assignment_equals_brute_force():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((300, 5)).astype(np.float32))
    c = torch.from_numpy(rng.standard_normal((7, 5)).astype(np.float32))
    ids, dist = assign_with_distance(x, c, chunk=64)
    brute = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    assert torch.equal(ids, brute.argmin(1))
    torch.testing.assert_close(dist, brute.min(1).values, atol=1e-4, rtol=1e-4)


def test_too_few_frames_and_unknown_algorithm():
    with pytest.raises(ValueError, match="too few for 8 clusters"):
        fit(np.zeros((5, 2), np.float32), 8, seed=0)
    with pytest.raises(ValueError, match="unknown k-means algorithm"):
        fit(np.zeros((50, 2), np.float32), 2, seed=0, algorithm="magic")


def test_tag_changes_with_every_identity_field():
    base = dict(feature_hash="f", upstream="mfcc", layer=-1, data_hash="d")
    ident = kmeans_identity(base, 256, 0.1, 1000, 0, "faiss", 20)
    tag = kmeans_tag("mfcc", ident)
    assert tag.startswith("mfcc_k256_")
    for change in [dict(n_clusters=128), dict(seed=1), dict(portion=0.2), dict(data_hash="e"),
                   dict(feature_hash="g"), dict(algorithm="sklearn")]:
        assert kmeans_tag("mfcc", {**ident, **change}) != tag
    assert kmeans_tag("mfcc", dict(reversed(list(ident.items())))) == tag  # key order does not matter


def test_removing_the_position_leaves_units_that_name_content():
    """Frames = one of 4 contents + a large function of the frame index (as Whisper's last layer has): plain
    k-means clusters by place, with the position removed the clusters are the contents."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 120, size=60)
    positions = np.concatenate([np.arange(n) for n in lengths])
    labels = rng.integers(0, 4, size=len(positions))
    content = np.eye(8, dtype=np.float32)[labels] * 3
    place = (position_basis(positions, 8).float().numpy() @ rng.standard_normal((9, 8)).astype(np.float32)) * 4
    x = (content + place + 0.1 * rng.standard_normal(content.shape)).astype(np.float32)

    def purity(frames):
        centroids, _ = fit(frames, 4, seed=0)
        ids = assign_with_distance(torch.from_numpy(frames), torch.from_numpy(centroids))[0].numpy()
        return sum(np.bincount(labels[ids == k], minlength=4).max() for k in range(4)) / len(ids)

    weights = fit_position(x, positions, 8)
    assert weights.shape == (9, 8)
    cleaned = remove_position(torch.from_numpy(x), positions, torch.from_numpy(weights)).numpy()
    assert purity(cleaned) > 0.99 > 0.6 > purity(x)
    ident = kmeans_identity(dict(feature_hash="f", upstream="whisper", layer=-1, data_hash="d"), 4, 0.1, 10, 0,
                            "faiss", 20)
    assert "remove_position" not in ident  # codebooks made before the option keep their names
    assert kmeans_tag("w", {**ident, "remove_position": 8}) != kmeans_tag("w", ident)


def test_dedup_keeps_durations():
    values, durations = dedup(np.array([5, 5, 5, 2, 2, 7, 5], dtype=np.int32))
    assert values.tolist() == [5, 2, 7, 5]
    assert durations.tolist() == [3, 2, 1, 1]
    assert undedup(values, durations).tolist() == [5, 5, 5, 2, 2, 7, 5]
    empty_values, empty_durations = dedup(np.array([], dtype=np.int32))
    assert empty_values.size == 0 and empty_durations.size == 0
