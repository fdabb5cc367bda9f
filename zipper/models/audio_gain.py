"""Does a fused model use the other modality?  The "audio gain" of a task, in nats per target token.

A fused model that has learned ASR predicts a transcript better from its own speech than from another
utterance's; one that ignores the speech (a text LM with a content-free bias from the cross-attention) predicts
both equally well.  So every fused model's validation scores each batch twice: as given (matched pairs) and
with the conditioning side - the speech for ASR, the text for TTS - rolled by one row, so that every row is
conditioned on another row's input (mismatched pairs).  The gain is the difference of the two mean losses:
~0 means the model ignores the other modality, whatever its loss says.
"""

from __future__ import annotations

import torch

# the segment each task conditions on: ASR reads speech and writes text, TTS the reverse
CONDITION = {"asr": "speech", "tts": "text"}


def roll_condition(task: str, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                   text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(speech, speech_lengths, text, text_lengths) with the conditioning side rolled by one batch row:
    row i is then conditioned on row i-1's input and still predicts its own target."""
    if CONDITION[task] == "speech":
        return speech.roll(1, dims=0), speech_lengths.roll(1, dims=0), text, text_lengths
    return speech, speech_lengths, text.roll(1, dims=0), text_lengths.roll(1, dims=0)


def gain_stats(task: str, matched: torch.Tensor, mismatched: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-task statistics of one batch: both mean losses (nats/token) and their difference."""
    return {f"{task}_loss_mismatched": mismatched.detach(), f"{task}_gain": (mismatched - matched).detach()}
