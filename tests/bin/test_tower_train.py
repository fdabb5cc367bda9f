"""Stages 7-8 CLIs: tower_train (speech, text, HF import, resumption, refusal) and lm_score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from token_data import WORDS, make_speech_token_list, make_text_dir, make_text_tokenizer, make_units
from zipper.bin import lm_score, tower_train
from zipper.utils.provenance import ProvenanceError

REPO = Path(__file__).resolve().parents[2]
DEBUG = str(REPO / "conf" / "tower_debug.yaml")


@pytest.fixture
def speech(tmp_path):
    train = make_units(tmp_path / "units" / "train", [f"s-{i:03d}" for i in range(40)], seed=0)
    valid = make_units(tmp_path / "units" / "dev", [f"s-{i:03d}" for i in range(8)], seed=1)
    tokens = make_speech_token_list(tmp_path / "token_list" / "speech")
    return ["--modality", "speech", "--train_data", str(train), "--valid_data", str(valid), "--token_list",
            str(tokens)]


def test_speech_tower_experiment_dir(tmp_path, speech, capsys):
    out = tmp_path / "exp" / "tower_speech"
    tower_train.main(["--config", DEBUG, *speech, "--output_dir", str(out)])
    for name in ("config.yaml", "checkpoint.pth", "1epoch.pth", "2epoch.pth", "valid.loss.best.pth",
                 "valid.loss.ave.pth", "history.json", "scores.json", "run.sh", ".done", "images/loss.png"):
        assert (out / name).exists(), name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["tower_conf"] == {"d_model": 32, "n_layers": 2, "n_heads": 2} and config["modality"] == "speech"
    scores = json.loads((out / "scores.json").read_text())
    assert scores["valid_ppl"] < scores["uniform_ppl"] == 20.0  # 12 units + 8 reserved slots
    assert "dev perplexity" in capsys.readouterr().out
    assert f"--config {out / 'config.yaml'}" in (out / "run.sh").read_text()

    # lm_score reproduces the dev perplexity from the experiment alone
    result = lm_score.main(["--exp_dir", str(out), "--data", speech[5]])
    assert result["ppl"] == pytest.approx(scores["valid_ppl"], rel=1e-5)
    assert result["unigram_ppl"] == pytest.approx(scores["unigram_ppl"])

    # finished: re-running trains nothing more; changing what is trained is refused
    before = (out / "2epoch.pth").stat().st_mtime_ns
    tower_train.main(["--config", DEBUG, *speech, "--output_dir", str(out)])
    assert (out / "2epoch.pth").stat().st_mtime_ns == before
    with pytest.raises(ProvenanceError, match="lr: 0.003 -> 0.1"):
        tower_train.main(["--config", DEBUG, *speech, "--output_dir", str(out), "--lr", "0.1"])
    tower_train.main(["--config", DEBUG, *speech, "--output_dir", str(out), "--max_epoch", "3"])  # harmless change
    assert (out / "3epoch.pth").exists()


def test_text_tower_with_sentencepiece(tmp_path):
    train = make_text_dir(tmp_path / "data" / "train_text", 60)
    dev = make_text_dir(tmp_path / "data" / "dev", 10, seed=1, prefix="dev")
    tokens = make_text_tokenizer(tmp_path / "token_list" / "text", train, vocab_size=40)
    out = tmp_path / "exp" / "tower_text"
    tower_train.main(["--config", DEBUG, "--modality", "text", "--train_data", str(train), "--valid_data", str(dev),
                      "--token_list", str(tokens), "--output_dir", str(out)])
    scores = json.loads((out / "scores.json").read_text())
    assert scores["uniform_ppl"] == 40.0 and scores["valid_ppl"] < 40.0


def tiny_hf_model(directory: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(sorted(set(WORDS)))}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(directory)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2,
                                                         bos_token_id=0, eos_token_id=1)).save_pretrained(directory)
    return directory


def test_hf_text_tower_import_without_training(tmp_path):
    model_dir = tiny_hf_model(tmp_path / "hf")
    train = make_text_dir(tmp_path / "data" / "train_text", 30)
    dev = make_text_dir(tmp_path / "data" / "dev", 6, seed=1, prefix="dev")
    out = tmp_path / "exp" / "tower_text_hf"
    tower_train.main(["--modality", "text", "--tower", "hf", "--hf_model", str(model_dir), "--max_epoch", "0",
                      "--train_data", str(train), "--valid_data", str(dev), "--output_dir", str(out)])
    scores = json.loads((out / "scores.json").read_text())
    assert scores["model"] == "pretrained" and scores["uniform_ppl"] == 3 + len(set(WORDS))
    assert not list(out.glob("*.pth"))  # the weights stay where they are
    assert lm_score.main(["--exp_dir", str(out), "--data", str(dev)])["ppl"] == pytest.approx(scores["valid_ppl"])


def test_ddp_on_two_cpu_processes(tmp_path, speech):
    """torchrun with 2 processes (gloo): the DDP path trains and rank 0 writes the experiment."""
    out = tmp_path / "exp" / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29517", "-m", "zipper.bin.tower_train", "--config", DEBUG, *speech,
                             "--output_dir", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "valid.loss.ave.pth").exists() and (out / ".done").exists()
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [3, 6]
