"""Every shipped preset parses as its trainer's options and builds its model, so that a typo in a YAML file
fails here rather than an hour into a recipe run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from zipper.bin import judge_train, tower_train, train_unit_encoder, vocoder_train, zipper_train
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.models.zipper import ZipperModel
from zipper.tokens.unit_encoder import UnitEncoder, UnitEncoderConfig
from zipper.utils.cli import load_config_defaults
from zipper.vocoder.inference import build_vocoder

CONF = Path(__file__).resolve().parents[2] / "conf"


def presets(prefix: str) -> list[Path]:
    found = sorted(CONF.glob(f"{prefix}*.yaml")) + sorted((CONF / "tuning").glob(f"{prefix}*.yaml"))
    assert found, f"no {prefix}*.yaml under {CONF}"
    return found


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("path", presets("zipper_") + presets("vocabexp_"), ids=lambda p: p.name)
def test_fusion_presets_parse_and_zipper_presets_build(path):
    load_config_defaults(zipper_train.get_parser(), str(path))  # raises on an unknown option
    config = load(path)
    if config["model"] != "zipper":
        assert config["model"] == "vocab_expansion"
        return
    conf = dict(config.get("model_conf") or {})
    intervals = conf.pop("intervals", {"text": 1, "speech": 1})
    towers = {"text": DecoderTower(TowerConfig(vocab_size=30, d_model=32, n_layers=6, n_heads=4)),
              "speech": DecoderTower(TowerConfig(vocab_size=20, d_model=24, n_layers=6, n_heads=4))}
    model = ZipperModel(towers, intervals, **conf)
    for name in conf.get("freeze", []):
        assert not any(p.requires_grad for p in model.towers[name].parameters()), name
    assert hasattr(model, "position_scale") == bool(conf.get("cross_rotary", False))


def test_the_default_and_its_paper_faithful_twin_differ_only_in_cross_attention_positions():
    default, paper = load(CONF / "zipper_xs_rope.yaml"), load(CONF / "zipper_xs.yaml")
    assert default["model_conf"].pop("cross_rotary") is True
    assert paper["model_conf"].pop("cross_rotary") is False
    assert default == paper
    baseline = load(CONF / "vocabexp_xs.yaml")  # the same budget for the baseline
    assert baseline["max_epoch"] * baseline["num_iters_per_epoch"] == default["max_epoch"] * default["num_iters_per_epoch"]
    assert baseline["history_noise"] == default["history_noise"] == {"asr": 0.2}  # the same training aids
    assert baseline["model_conf"]["ctc_weight"] == default["model_conf"]["ctc_weight"] == 0.3


@pytest.mark.parametrize("path", presets("tower_"), ids=lambda p: p.name)
def test_tower_presets_parse_and_build(path):
    load_config_defaults(tower_train.get_parser(), str(path))
    tower = DecoderTower(TowerConfig(vocab_size=50, **load(path)["tower_conf"]))
    assert sum(p.numel() for p in tower.parameters()) > 0


@pytest.mark.parametrize("path", presets("judge_"), ids=lambda p: p.name)
def test_judge_presets_parse(path):
    load_config_defaults(judge_train.get_parser(), str(path))


@pytest.mark.parametrize("path", presets("vocoder_"), ids=lambda p: p.name)
def test_vocoder_presets_parse_and_build(path):
    parser = vocoder_train.get_parser()
    load_config_defaults(parser, str(path))
    args = parser.parse_args(["--train_units", "u", "--train_audio", "a", "--valid_units", "u", "--valid_audio", "a",
                              "--output_dir", "o"])
    speakers = ["spkA", "spkB"] if args.train_speakers == "all" else ["spkA"]
    model = build_vocoder(args, {"n_units": 16, "hop_length": 320, "fs": 16000, "speakers": speakers})
    assert model.n_units == 16 and sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", presets("unit_encoder_"), ids=lambda p: p.name)
def test_unit_encoder_presets_parse_and_build(path):
    parser = train_unit_encoder.get_parser()
    load_config_defaults(parser, str(path))
    args = parser.parse_args(["--train_feats", "f", "--train_text", "t", "--valid_feats", "f", "--valid_text", "t",
                              "--output_dir", "o"])
    model = UnitEncoder(UnitEncoderConfig(**args.encoder_conf), input_dim=384, n_chars=30)
    assert model.encode(np.zeros((7, 384), np.float32)).shape == (-(-7 // model.config.stride), model.output_dim)
