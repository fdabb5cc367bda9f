"""The single-decoder baseline (AudioPaLM-like): the pre-trained text LM with its vocabulary extended by the
speech units, fully fine-tuned on the same ASR/TTS data (PAPER.md section 2, "Single Decoder").

Vocabulary: the text tower's V tokens, then unit u at V + u, then begin/end of audio at V + K, V + K + 1.
Sequences, with the task tags our token lists reserve (<asr>, <tts>; an HF tokenizer gets none):
    ASR  <bos> <asr> <boa> u1 .. um <eoa> t1 .. tn <eos>     loss on t1 .. <eos>
    TTS  <bos> <tts> t1 .. tn <boa> u1 .. um <eoa>           loss on u1 .. <eoa>
The original text embeddings (and, tied to them, the text softmax) are kept as they were at initialisation;
the new rows are initialised from the text embeddings' statistics ("mean": their mean plus noise of their
std; "normal": N(0, their std)).
ctc_weight > 0: the Zipper's auxiliary CTC aid, here on the decoder's last states at <boa> u1 .. um <eoa> of ASR
rows, so that a comparison with a CTC-aided Zipper stays fair (and joint CTC/attention decoding works alike).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Optional

import torch
from torch import nn

from zipper.models.lm import next_token_loss, task_forward, transcript_ctc_loss
from zipper.tokens.token_list import ASR, NUM_SPECIAL, TTS

logger = logging.getLogger(__name__)


def expanded_rows(old: torch.Tensor, n_new: int, init: str, generator: torch.Generator) -> torch.Tensor:
    std = old.float().std()
    noise = torch.randn(n_new, old.shape[1], generator=generator) * std
    if init == "mean":
        return (old.float().mean(dim=0, keepdim=True) + noise).to(old.dtype)
    if init == "normal":
        return noise.to(old.dtype)
    raise ValueError(f"unknown embedding init '{init}' (mean or normal)")


class VocabExpansionModel(nn.Module):
    def __init__(self, tower: nn.Module, tokenizer: Any, n_units: int, init: str = "mean", seed: int = 0,
                 use_task_tags: Optional[bool] = None, ctc_weight: float = 0.0):
        super().__init__()
        self.tower = tower
        self.text_vocab = tower.vocab_size
        self.n_units = n_units
        self.boa, self.eoa = self.text_vocab + n_units, self.text_vocab + n_units + 1
        self.bos, self.eos, self.pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
        # our token lists reserve <asr>/<tts>; an HF tokenizer has no such slots, the <boa> position tells
        self.use_task_tags = (type(tokenizer).__name__ == "TextTokenizer") if use_task_tags is None else use_task_tags
        generator = torch.Generator().manual_seed(seed)
        self._expand(n_units + 2, init, generator)
        self.ctc_weight = ctc_weight
        self.ctc = None
        if ctc_weight > 0:
            from espnet2.asr.ctc import CTC
            self.ctc = CTC(self.text_vocab, tower.d_model)  # over the text ids; blank = 0 = <pad>, never a target

    def _expand(self, n_new: int, init: str, generator: torch.Generator) -> None:
        embed = self.tower.embed
        old = embed.weight.data
        new = nn.Embedding(old.shape[0] + n_new, old.shape[1]).to(device=old.device, dtype=old.dtype)
        new.weight.data[:old.shape[0]] = old
        new.weight.data[old.shape[0]:] = expanded_rows(old, n_new, init, generator)
        if hasattr(self.tower, "model"):  # Hugging Face tower: resize through the model so lm_head follows
            self.tower.model.resize_token_embeddings(old.shape[0] + n_new)
            self.tower.model.get_input_embeddings().weight.data.copy_(new.weight.data)
            out = self.tower.model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != self.tower.model.get_input_embeddings().weight.data_ptr():
                out.weight.data[old.shape[0]:] = new.weight.data[old.shape[0]:]
            self.tower.embed = self.tower.model.get_input_embeddings()
        else:
            self.tower.embed = new
            self.tower.config.vocab_size = old.shape[0] + n_new

    @property
    def vocab_size(self) -> int:
        return self.text_vocab + self.n_units + 2

    def unit_tokens(self, speech_row: torch.Tensor) -> torch.Tensor:
        """A speech-tower row <bos> u.. <eos> (ids NUM_SPECIAL + u) -> this vocabulary's unit ids."""
        return speech_row[1:-1] - NUM_SPECIAL + self.text_vocab

    def task_prefix(self, task: str, device) -> torch.Tensor:
        tags = [ASR if task == "asr" else TTS] if self.use_task_tags else []
        return torch.tensor([self.bos] + tags, device=device)

    def asr_prompt(self, speech_row: torch.Tensor) -> torch.Tensor:
        d = speech_row.device
        return torch.cat([self.task_prefix("asr", d), torch.tensor([self.boa], device=d),
                          self.unit_tokens(speech_row), torch.tensor([self.eoa], device=d)])

    def tts_prompt(self, text_row: torch.Tensor) -> torch.Tensor:
        """<bos> <tts> t1..tn <boa> from a text row <bos> t1..tn <eos>."""
        d = text_row.device
        return torch.cat([self.task_prefix("tts", d), text_row[1:-1], torch.tensor([self.boa], device=d)])

    def build(self, task: str, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
              text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded sequences (B, T), their lengths, and each row's prompt length (loss starts after it)."""
        rows, prompts = [], []
        for i in range(speech.shape[0]):
            s_row, t_row = speech[i, :speech_lengths[i]], text[i, :text_lengths[i]]
            if task == "asr":
                prompt = self.asr_prompt(s_row)
                target = t_row[1:]  # t1 .. tn <eos>
            else:
                prompt = self.tts_prompt(t_row)
                target = torch.cat([self.unit_tokens(s_row), torch.tensor([self.eoa], device=s_row.device)])
            rows.append(torch.cat([prompt, target]))
            prompts.append(len(prompt))
        lengths = torch.tensor([len(r) for r in rows], device=speech.device)
        tokens = torch.full((len(rows), int(lengths.max())), self.pad, dtype=torch.long, device=speech.device)
        for i, r in enumerate(rows):
            tokens[i, :len(r)] = r
        return tokens, lengths, torch.tensor(prompts, device=speech.device)

    def task_loss(self, task: str, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                  text_lengths: torch.Tensor, history: Optional[torch.Tensor] = None,
                  ctc_states: Optional[list[torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed nll, correct predictions and count over the target part of each row.  history: the target
        side's noisy input (--history_noise; the text for ASR, the units for TTS), read instead of it;
        ctc_states: a list that receives the ASR rows' speech states (for the CTC aid)."""
        tokens, lengths, prompts = self.build(task, speech, speech_lengths, text, text_lengths)
        read = tokens
        if history is not None:  # the same rows with the target side's tokens replaced: lengths and prompts stay
            noisy_speech, noisy_text = (speech, history) if task == "asr" else (history, text)
            read = self.build(task, noisy_speech, speech_lengths, noisy_text, text_lengths)[0]
        out = self.tower(read[:, :-1])
        if ctc_states is not None:
            ctc_states.append(self.speech_states(out.last_hidden, speech_lengths))
        # predict only the target part: positions from prompt-1 on (position p predicts token p+1)
        keep = torch.arange(tokens.shape[1] - 1, device=tokens.device)[None, :] >= (prompts - 1)[:, None]
        return next_token_loss(out.logits, tokens, lengths, keep)

    def speech_states(self, hidden: torch.Tensor, speech_lengths: torch.Tensor) -> torch.Tensor:
        """ASR rows' states (B, T, D) -> those at <boa> u1 .. um <eoa> (B, S, D): as many as the speech rows
        <bos> u1 .. um <eos> have (speech_lengths), right-padded."""
        start = len(self.task_prefix("asr", hidden.device))  # <boa>'s position
        return hidden[:, start:start + int(speech_lengths.max())]

    def ctc_loss(self, states: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                 text_lengths: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(ctc_weight x CTC loss per text token, stats) off the states at <boa> u1 .. um <eoa> (speech_states)."""
        return transcript_ctc_loss(self.ctc, self.ctc_weight, states, speech_lengths, text, text_lengths)

    def forward(self, task: str, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                text_lengths: torch.Tensor, measure_gain: bool = False, history: Optional[torch.Tensor] = None,
                **_) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Mean loss of `task` on the batch; measure_gain: also the loss on mismatched pairs (audio_gain); ASR
        batches add ctc_weight x the CTC loss to the loss trained on, when configured."""
        states: list[torch.Tensor] = []
        use_ctc = self.ctc is not None and task == "asr"
        matched = functools.partial(self.task_loss, history=history, ctc_states=states if use_ctc else None)
        aux = (lambda: self.ctc_loss(states[0], speech_lengths, text, text_lengths)) if use_ctc else None
        return task_forward(matched, task, speech, speech_lengths, text, text_lengths, measure_gain, aux,
                            mismatched_loss=self.task_loss)
