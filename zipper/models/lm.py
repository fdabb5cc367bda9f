"""Next-token prediction on one tower: the unimodal pre-training objective, and the perplexity it reports."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 700.0))
