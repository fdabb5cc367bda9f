"""What a tower pre-training run builds from its config: the tower, its tokenizer, its data.

An experiment dir keeps the resolved `config.yaml`; `load_tower(exp_dir)` rebuilds the tower and tokenizer
from it, so later stages (fusion, scoring) name an experiment instead of repeating its options.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from zipper.data.sequences import LengthBatchSampler, TextSequences, UnitSequences, pad_batch, with_bos_eos
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.tokens.token_list import BOS, EOS, PAD, TokenList
from zipper.utils.cli import str2bool, yaml_value

logger = logging.getLogger(__name__)
TOWERS = ("decoder", "hf")


def add_tower_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tower")
    group.add_argument("--modality", required=True, choices=["speech", "text"], help="what the tower models")
    group.add_argument("--tower", default="decoder", choices=TOWERS,
                       help="decoder: zipper.models.tower.DecoderTower; hf: a Hugging Face causal LM (--hf_model)")
    group.add_argument("--tower_conf", type=yaml_value, default={},
                       help="YAML dict of TowerConfig fields (d_model, n_layers, n_heads, d_ff, dropout, ...)")
    group.add_argument("--hf_model", default="", help="with --tower hf: model name or local dir (its tokenizer too)")
    group.add_argument("--token_list", default="",
                       help="token list dir (stage 6): data/token_list/speech_<km> or text_<type><size>")
    group.add_argument("--train_data", required=True,
                       help="speech: a units dir (dump/units/<km>/<set>); text: a data dir with `text`")
    group.add_argument("--valid_data", required=True, help="the same for validation")
    group.add_argument("--dedup", type=str2bool, default=True, help="speech: collapse runs of repeated units")
    group.add_argument("--max_len", type=int, default=1024, help="longest training sequence (tokens, incl. bos/eos)")


class Tokenizer:
    """Speech units have no text form: their tokenizer only knows the special ids (data come as units)."""

    bos_id, eos_id, pad_id = BOS, EOS, PAD


def build_tokenizer(args) -> Any:
    if args.tower == "hf":
        from zipper.models.hf_tower import HFTokenizer

        if args.modality != "text":
            raise ValueError("--tower hf is for text towers (a Hugging Face LM brings its own text tokenizer)")
        return HFTokenizer(args.hf_model)
    if not args.token_list:
        raise ValueError("--token_list is required for --tower decoder")
    if args.modality == "text":
        from zipper.tokens.text_tokenizer import TextTokenizer

        return TextTokenizer(args.token_list)
    return Tokenizer()


def vocab_size(args, tokenizer) -> int:
    return len(tokenizer) if args.modality == "text" else len(TokenList(args.token_list))


def build_tower(args, vocab: int) -> torch.nn.Module:
    if args.tower == "hf":
        from zipper.models.hf_tower import HFTower

        return HFTower.from_pretrained(args.hf_model)
    conf = dict(args.tower_conf or {})
    return DecoderTower(TowerConfig(vocab_size=vocab, **conf))


def load_sequences(args, data: str, tokenizer) -> list[np.ndarray]:
    """Token sequences of a data set with <bos>/<eos>, cut to --max_len."""
    if args.modality == "speech":
        seqs = UnitSequences(data, TokenList(args.token_list), dedup_runs=args.dedup).sequences
    else:
        text = Path(data) / "text" if Path(data).is_dir() else Path(data)
        seqs = TextSequences(text, tokenizer).sequences
    out = [with_bos_eos(s, tokenizer.bos_id, tokenizer.eos_id, args.max_len) for s in seqs]
    cut = sum(len(s) + 2 > args.max_len for s in seqs)
    if cut:
        logger.warning("%s: %d of %d sequences are longer than --max_len %d and were cut", data, cut, len(seqs),
                       args.max_len)
    return out


class SequenceBatches:
    """A BatchSource over padded token sequences: {"tokens": (B, T), "lengths": (B,)}."""

    def __init__(self, sequences: list[np.ndarray], pad_id: int, batch_bins: int, seed: int, shuffle: bool,
                 max_batch_size: int = 0, rank: int = 0, world_size: int = 1):
        self.sequences, self.pad_id = sequences, pad_id
        self.sampler = LengthBatchSampler([len(s) for s in sequences], batch_bins, seed, shuffle, max_batch_size,
                                          rank, world_size)

    def batches(self, epoch: int) -> list[list[int]]:
        return self.sampler.batches(epoch)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_batch([self.sequences[i] for i in indices], self.pad_id)
        return {"tokens": tokens, "lengths": lengths}


def unigram_perplexity(train: list[np.ndarray], valid: list[np.ndarray], vocab: int) -> float:
    """Perplexity of an add-one unigram model of `train` on `valid`'s predicted tokens (after <bos>)."""
    counts = np.bincount(np.concatenate([s[1:] for s in train]), minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    targets = np.concatenate([s[1:] for s in valid])
    return float(np.exp(-logp[targets].mean()))


@torch.no_grad()
def score_sequences(tower: torch.nn.Module, sequences: list[np.ndarray], pad_id: int, batch_bins: int = 8192,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean next-token NLL (nats), perplexity and accuracy of a tower on sequences with <bos>/<eos>."""
    from zipper.models.lm import next_token_loss, perplexity

    tower.eval()
    source = SequenceBatches(sequences, pad_id, batch_bins, seed=0, shuffle=False)
    nll = correct = count = 0.0
    for indices in source.batches(0):
        batch = source.collate(indices)
        tokens, lengths = batch["tokens"].to(device), batch["lengths"].to(device)
        logits = tower(tokens[:, :-1]).logits
        n, c, k = next_token_loss(logits, tokens, lengths)
        nll, correct, count = nll + float(n), correct + float(c), count + float(k)
    return {"loss": nll / count, "ppl": perplexity(nll / count), "acc": correct / count, "tokens": int(count)}


def read_config(exp_dir: str | Path) -> argparse.Namespace:
    path = Path(exp_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {exp_dir} is not a finished tower experiment")
    with open(path, encoding="utf-8") as f:
        return argparse.Namespace(**yaml.safe_load(f))


def load_tower(exp_dir: str | Path, checkpoint: str = "valid.loss.ave.pth", device: str = "cpu"):
    """(tower, tokenizer, config) of a tower experiment; an imported HF tower without training has no file."""
    args = read_config(exp_dir)
    tokenizer = build_tokenizer(args)
    tower = build_tower(args, vocab_size(args, tokenizer))
    path = Path(exp_dir) / checkpoint
    if path.exists():
        state = torch.load(path, map_location="cpu")
        state = {k[len("tower."):]: v for k, v in state.items() if k.startswith("tower.")} or state
        tower.load_state_dict(state)
    elif args.tower != "hf":
        raise FileNotFoundError(f"{path} is missing: has {exp_dir} finished training?")
    return tower.to(device).eval(), tokenizer, args
