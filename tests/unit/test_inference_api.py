"""zipper.inference.api pieces that need no trained fusion model: audio -> units with a moved SSL upstream."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from zipper.inference.api import AudioToUnits
from zipper.tokens.features import FeatureUpstream
from zipper.utils.atomic import atomic_write_json


def test_units_from_an_ssl_upstream_whose_weights_moved(tmp_path):
    """A packed model carries the HuBERT dir the k-means names; at its new path the features are the same."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    original = tmp_path / "hubert"
    HubertModel(cfg).save_pretrained(original)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(original)
    prov = FeatureUpstream("hf_hubert_custom", layer=2, conf={"ckpt": str(original)}).provenance()
    inventory = {"kmeans_tag": "hubert_k4_0", "upstream": prov["upstream"], "layer": prov["layer"], "n_clusters": 4,
                 "seed": 0, "data_hash": "d", "feature_hash": prov["feature_hash"]}
    km = tmp_path / "km"
    km.mkdir()
    np.save(km / "centroids.npy", np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32))
    atomic_write_json(km / "provenance.json", dict(inventory, upstream_conf=prov["upstream_conf"]))
    samples = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    before = AudioToUnits(km, inventory)(samples, "x")
    assert before.shape == (49,)
    moved = tmp_path / "elsewhere" / "hubert"
    shutil.move(original, moved)
    assert AudioToUnits(km, inventory, upstream_ckpt=moved)(samples, "x").tolist() == before.tolist()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AudioToUnits(km, inventory)  # the k-means' own path is gone
