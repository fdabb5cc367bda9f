"""What a fusion run builds: paired ASR/TTS data, and either Zipper or the vocabulary-expansion baseline.

Paired data are the units of an aligned set (stage 5) and its transcripts; every utterance yields an ASR
example (speech -> text) and a TTS example (text -> speech).  Batches hold one task each (the segment order
differs), the tasks mixed per epoch by `--tasks` weights (1.0 = one pass over that task's examples).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zipper.data.kaldi_dir import read_kv
from zipper.data.sequences import LengthBatchSampler, UnitSequences, pad_batch, rank_share, with_bos_eos
from zipper.tasks.tower_task import load_tower
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL, PAD, TokenList
from zipper.utils.cli import str2bool, yaml_value

logger = logging.getLogger(__name__)
TASKS = ("asr", "tts")


def add_fusion_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fusion")
    group.add_argument("--model", default="zipper", choices=["zipper", "vocab_expansion"],
                       help="zipper: fuse the two towers; vocab_expansion: the single-decoder baseline")
    group.add_argument("--model_conf", type=yaml_value, default={},
                       help="YAML dict: zipper (intervals, n_cross_layers, cross_heads, projection, "
                            "projection_hidden, input_projection, freeze) or baseline (init) options")
    group.add_argument("--text_tower_exp", required=True, help="pre-trained text tower experiment (stage 8)")
    group.add_argument("--speech_tower_exp", default="", help="pre-trained speech tower experiment (stage 7; zipper)")
    group.add_argument("--speech_token_list", required=True, help="speech token list dir (stage 6)")
    group.add_argument("--tower_checkpoint", default="valid.loss.ave.pth", help="which model file of the towers")
    group.add_argument("--train_units", required=True, help="units of the aligned training set")
    group.add_argument("--train_text", required=True, help="data dir (or text file) of the aligned training set")
    group.add_argument("--valid_units", required=True, help="units of the validation set")
    group.add_argument("--valid_text", required=True, help="data dir (or text file) of the validation set")
    group.add_argument("--tasks", type=yaml_value, default={"asr": 1.0, "tts": 1.0},
                       help="YAML dict task -> weight (passes over its examples per epoch)")
    group.add_argument("--dedup", type=str2bool, default=True, help="collapse runs of repeated units")
    group.add_argument("--max_speech_len", type=int, default=1024, help="longest unit sequence (tokens)")
    group.add_argument("--max_text_len", type=int, default=256, help="longest text sequence (tokens)")
    group.add_argument("--condition_noise", type=float, default=0.0,
                       help="training only: probability that each token of the conditioning side (the units for "
                            "ASR, the text for TTS) is replaced by a random token of its vocabulary, against "
                            "learning the aligned pairs by heart")
    group.add_argument("--history_noise", type=yaml_value, default=0.0,
                       help="training only: probability that each token the predicted side is conditioned on "
                            "(its own teacher-forced history: the text for ASR, the units for TTS) is replaced "
                            "by a random token; the loss still targets the clean tokens.  One number for every "
                            "task, or a YAML dict task -> probability (e.g. '{asr: 0.4}': TTS stays clean)")


@dataclasses.dataclass
class PairedData:
    utts: list[str]
    speech: list[np.ndarray]  # speech-tower token ids with <bos>/<eos>
    text: list[np.ndarray]  # text-tower token ids with <bos>/<eos>


def text_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "text" if path.is_dir() else path


def load_paired(units_dir: str, text: str, speech_tokens: TokenList, tokenizer: Any, dedup: bool,
                max_speech_len: int, max_text_len: int) -> PairedData:
    """Utterances with both units and a transcript; reports (and drops) the ones missing either."""
    transcripts = read_kv(text_file(text))
    unit_set = UnitSequences(units_dir, speech_tokens, dedup_runs=dedup)
    by_utt = dict(zip(unit_set.keys, unit_set.sequences))
    utts = [u for u in transcripts if u in by_utt]
    missing = len(transcripts) - len(utts)
    if not utts:
        raise ValueError(f"no utterance of {text_file(text)} has units in {units_dir}")
    if missing:
        logger.warning("%d of %d utterances of %s have no units in %s: left out", missing, len(transcripts),
                       text_file(text), units_dir)
    speech = [with_bos_eos(by_utt[u], BOS, EOS, max_speech_len) for u in utts]
    text_ids = [with_bos_eos(np.asarray(tokenizer.encode(transcripts[u]), dtype=np.int64), tokenizer.bos_id,
                             tokenizer.eos_id, max_text_len) for u in utts]
    return PairedData(utts, speech, text_ids)


def position_scale(data: PairedData) -> dict[str, float]:
    """Frames per token of each modality on the cross-attention's common position axis (cross_rotary): a
    speech unit is 1, a text token the training pairs' mean speech/text length ratio."""
    speech, text = sum(len(s) for s in data.speech), sum(len(t) for t in data.text)
    return {"speech": 1.0, "text": speech / max(text, 1)}


class PairedBatches:
    """BatchSource of (task, indices): one task per batch, length-bucketed on speech + text length."""

    def __init__(self, data: PairedData, tasks: dict[str, float], text_pad: int, batch_bins: int, seed: int,
                 shuffle: bool, max_batch_size: int = 0, rank: int = 0, world_size: int = 1,
                 measure_gain: bool = False, condition_noise: float = 0.0,
                 vocab_sizes: dict[str, int] | None = None, history_noise: float | dict[str, float] = 0.0):
        unknown = set(tasks) - set(TASKS)
        if unknown or not tasks:
            raise ValueError(f"--tasks must weight some of {TASKS}, got {tasks}")
        self.data, self.tasks, self.text_pad = data, dict(tasks), text_pad
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.measure_gain = measure_gain  # validation: also score mismatched pairs (zipper.models.audio_gain)
        history = per_task(history_noise, "history_noise")
        probabilities = {"condition_noise": condition_noise, **{f"history_noise ({t})": p for t, p in history.items()}}
        for name, value in probabilities.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--{name} must be in [0, 1), not {value}")
            if value and not vocab_sizes:
                raise ValueError(f"{name} needs the vocabulary sizes to draw tokens from")
        self.condition_noise, self.history_noise = condition_noise, history
        self.vocab_sizes = dict(vocab_sizes or {})
        lengths = [len(s) + len(t) for s, t in zip(data.speech, data.text)]
        self.sampler = LengthBatchSampler(lengths, batch_bins, seed, shuffle, max_batch_size)

    def batches(self, epoch: int) -> list[tuple[str, list[int]]]:
        out: list[tuple[str, list[int]]] = []
        for i, (task, weight) in enumerate(sorted(self.tasks.items())):
            if weight <= 0:
                continue
            own = self.sampler.batches(epoch * len(TASKS) + i)  # each task its own order
            count = max(1, round(weight * len(own)))
            out.extend((task, own[k % len(own)]) for k in range(count))
        if self.shuffle:
            random.Random(self.seed + epoch).shuffle(out)
        return rank_share(out, self.rank, self.world_size)

    def collate(self, item: tuple[str, list[int]]) -> dict[str, Any]:
        task, indices = item
        sequences = {"speech": [self.data.speech[i] for i in indices], "text": [self.data.text[i] for i in indices]}
        condition, predicted = ("speech", "text") if task == "asr" else ("text", "speech")
        rng = np.random.default_rng([self.seed, len(indices), *indices])  # the same batch, the same noise
        if self.condition_noise:  # the conditioning side; the predicted one stays clean
            sequences[condition] = [replace_tokens(x, self.condition_noise, self.vocab_sizes[condition], rng)
                                    for x in sequences[condition]]
        pads = {"speech": PAD, "text": self.text_pad}
        speech, speech_lengths = pad_batch(sequences["speech"], pads["speech"])
        text, text_lengths = pad_batch(sequences["text"], pads["text"])
        batch = {"task": task, "speech": speech, "speech_lengths": speech_lengths, "text": text,
                 "text_lengths": text_lengths, "measure_gain": self.measure_gain}
        if self.history_noise[task]:  # what the predicted side reads; its targets stay `batch[predicted]`
            noisy = [replace_tokens(x, self.history_noise[task], self.vocab_sizes[predicted], rng)
                     for x in sequences[predicted]]
            batch["history"] = pad_batch(noisy, pads[predicted])[0]
        return batch


def per_task(value: float | dict[str, float], name: str) -> dict[str, float]:
    """A probability per task from one number (every task) or a dict task -> number (the others 0)."""
    if isinstance(value, dict):
        unknown = set(value) - set(TASKS)
        if unknown:
            raise ValueError(f"--{name}: unknown task {sorted(unknown)[0]!r}; the tasks are {list(TASKS)}")
        return {task: float(value.get(task, 0.0)) for task in TASKS}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"--{name} must be a number or a dict task -> number, not {value!r}")
    return {task: float(value) for task in TASKS}


def replace_tokens(ids: np.ndarray, probability: float, vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of `ids` (T,) = <bos> ... <eos> with each token between them that is not a reserved slot replaced,
    with `probability`, by a token drawn uniformly from NUM_SPECIAL .. vocab_size - 1."""
    out = np.array(ids, copy=True)
    hit = (out >= NUM_SPECIAL) & (rng.random(len(out)) < probability)
    hit[:1] = hit[-1:] = False  # <bos> and <eos> stay, whatever their ids (a Hugging Face tower's are high)
    out[hit] = rng.integers(NUM_SPECIAL, vocab_size, int(hit.sum()))
    return out


def build_model(args) -> tuple[torch.nn.Module, Any]:
    """(model, text tokenizer) for --model zipper or vocab_expansion, from the pre-trained towers."""
    text_tower, tokenizer, _ = load_tower(args.text_tower_exp, args.tower_checkpoint)
    speech_tokens = TokenList(args.speech_token_list)
    conf = dict(args.model_conf or {})
    if args.model == "vocab_expansion":
        from zipper.models.vocab_expansion import VocabExpansionModel

        model = VocabExpansionModel(text_tower, tokenizer, n_units=len(speech_tokens) - NUM_SPECIAL, **conf)
        return model.train(), tokenizer
    from zipper.models.zipper import ZipperModel

    if not args.speech_tower_exp:
        raise ValueError("--speech_tower_exp is required for --model zipper")
    speech_tower, _, speech_config = load_tower(args.speech_tower_exp, args.tower_checkpoint)
    tower_tokens = TokenList(speech_config.token_list)
    if tower_tokens.provenance != speech_tokens.provenance:
        raise ValueError(f"the speech tower {args.speech_tower_exp} was trained on {speech_config.token_list}, "
                         f"not on {args.speech_token_list}")
    intervals = conf.pop("intervals", {"text": 1, "speech": 1})
    model = ZipperModel({"text": text_tower, "speech": speech_tower}, intervals, **conf)
    model.text_eos, model.speech_eos = tokenizer.eos_id, EOS
    return model.train(), tokenizer


@torch.no_grad()
def unimodal_scores(model: torch.nn.Module, tokenizer: Any, train_args, modality: str, data: str,
                    batch_bins: int = 8192, device: str | torch.device = "cpu") -> dict[str, float]:
    """Next-token perplexity of a fused model on one modality alone (what fusion kept of a tower's LM).

    Zipper: the tower with its input projection, a single segment (cross-attention sees nothing, so adds 0);
    the baseline: the expanded decoder on text (it has no speech LM: units only follow a task prompt).
    """
    from zipper.data.sequences import TextSequences
    from zipper.models.lm import next_token_loss, perplexity
    from zipper.models.zipper import Segment
    from zipper.tasks.tower_task import SequenceBatches

    if modality == "speech":
        if train_args.model != "zipper":
            raise ValueError("the vocabulary-expansion baseline has no speech language model to score")
        seqs = UnitSequences(data, TokenList(train_args.speech_token_list), dedup_runs=train_args.dedup).sequences
        bos, eos, pad = BOS, EOS, PAD
    else:
        seqs = TextSequences(text_file(data), tokenizer).sequences
        bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    source = SequenceBatches([with_bos_eos(s, bos, eos, 1 << 30) for s in seqs], pad, batch_bins, 0, False)
    model.eval()
    nll = correct = count = 0.0
    for indices in source.batches(0):
        batch = source.collate(indices)
        tokens, lengths = batch["tokens"].to(device), batch["lengths"].to(device)
        if train_args.model == "zipper":
            logits = model.forward_segments([Segment(modality, tokens, lengths)])[0].logits[:, :-1]
        else:
            logits = model.tower(tokens[:, :-1]).logits
        n, c, k = next_token_loss(logits, tokens, lengths)
        nll, correct, count = nll + float(n), correct + float(c), count + float(k)
    return {"loss": nll / count, "ppl": perplexity(nll / count), "acc": correct / count, "tokens": int(count)}
