"""Next-token prediction on one tower: the unimodal pre-training objective, and the perplexity it reports."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from zipper.models.audio_gain import gain_stats, roll_condition


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
                    only: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed cross-entropy, correct predictions and count over real positions.

    logits (B, T-1, V) predict tokens[:, 1:] (B, T-1); lengths (B,) count real tokens including <bos>;
    only (B, T-1): further restrict which predictions count (e.g. not a prompt's).
    """
    targets = tokens[:, 1:]
    mask = torch.arange(targets.shape[1], device=tokens.device)[None, :] < (lengths - 1)[:, None]  # (B, T-1)
    if only is not None:
        mask = mask & only
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    nll = (nll.view_as(targets) * mask).sum()
    correct = ((logits.argmax(dim=-1) == targets) & mask).sum()
    return nll, correct, mask.sum()


class TowerLM(nn.Module):
    """Wraps a tower for the trainer: `(tokens, lengths) -> (loss per token, stats, weight = tokens)`."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, **_) -> tuple[torch.Tensor, dict, torch.Tensor]:
        logits = self.tower(tokens[:, :-1]).logits  # (B, T-1, V)
        nll, correct, count = next_token_loss(logits, tokens, lengths)
        loss = nll / count.clamp(min=1)
        stats = {"loss": loss.detach(), "acc": (correct / count.clamp(min=1)).detach()}
        return loss, stats, count.detach()


def task_forward(task_loss: Callable, task: str, speech: torch.Tensor, speech_lengths: torch.Tensor,
                 text: torch.Tensor, text_lengths: torch.Tensor, measure_gain: bool = False,
                 aux_loss: Optional[Callable[[], tuple[torch.Tensor, dict]]] = None,
                 mismatched_loss: Optional[Callable] = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """A fused model's `forward` for the trainer: `task_loss(task, speech, ..) -> (nll, correct, count)` made
    into (mean loss, stats, weight = target tokens).  measure_gain (validation): the same batch again with the
    conditioning side rolled by one row, and the difference of the losses (zipper.models.audio_gain).
    aux_loss() -> (loss, stats), called right after the matched pass: an auxiliary objective added to the loss
    that is trained on (stats' "loss" stays the next-token loss, the one every model is compared on).
    mismatched_loss: what scores the mismatched pairs, when task_loss keeps state from the matched pass (the
    Zipper's memory of both segments, which the mismatched pass must not see); task_loss by default."""
    nll, correct, count = task_loss(task, speech, speech_lengths, text, text_lengths)
    loss = nll / count.clamp(min=1)
    acc = (correct / count.clamp(min=1)).detach()
    stats = {"loss": loss.detach(), "acc": acc, f"{task}_loss": loss.detach(), f"{task}_acc": acc}
    trained = loss
    if aux_loss is not None:
        extra, extra_stats = aux_loss()
        trained = loss + extra
        stats.update(extra_stats)
    if measure_gain and speech.shape[0] > 1:  # one row has no other row to be mismatched with
        with torch.no_grad():
            rolled = roll_condition(task, speech, speech_lengths, text, text_lengths)
            other, _, other_count = (mismatched_loss or task_loss)(task, *rolled)
        stats.update(gain_stats(task, loss, other / other_count.clamp(min=1)))
    return trained, stats, count.detach()


def transcript_ctc_loss(ctc: nn.Module, weight: float, states: torch.Tensor, state_lengths: torch.Tensor,
                        text: torch.Tensor, text_lengths: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The auxiliary CTC aid of both fused models: (weight x CTC loss per text token, stats) of the transcript
    (text rows <bos> t1 .. tn <eos>, read without <bos>/<eos>) off speech states (B, S, D) with ESPnet's CTC."""
    targets, target_lengths = text[:, 1:-1], text_lengths - 2
    per_batch = ctc(states, state_lengths, targets, target_lengths)  # summed over tokens, / batch size
    per_token = per_batch * states.shape[0] / target_lengths.sum().clamp(min=1)
    return weight * per_token, {"asr_ctc": per_token.detach()}


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 700.0))
