"""Zipper: N >= 2 pre-trained decoder towers zipped together with gated cross-attention (PAPER.md section 1).

A sequence is a list of segments, each a run of one modality in the linear order ([speech][text] for ASR,
[text][speech] for TTS).  A token may attend only to other-modality tokens that come before it, so segments
are computed in order: a segment's tower runs block by block, and after every `interval[m]`-th block its
hidden states cross-attend (GatedCrossAttention) to the projected block outputs, at the paired layer, of
every other-modality segment already computed.  Tokens with nothing before them see no cross-attention at all;
tokens after them never influence them.  The same code serves teacher-forced training (all segments given)
and decoding (the output segment grows one token at a time with its tower's KV cache, the finished
segments' cross-attention keys/values computed once).

Where the paper is silent we chose, and say so:
  * input projection: h0 = e + tanh(a_in) * ReLU(MLP(e)), a_in = 0 at init - the paper's ReLU(MLP(embed)) as a
    gated residual, so that the fused model starts exactly as its towers (Flamingo's principle, and a test);
  * cross-tower projection p: 3-layer MLP (default) or linear, then ReLU, one per cross-attention layer;
  * with more than two towers, a tower attends to the concatenation of all other towers' projected states;
  * positions in the cross-attention: none (the paper's f_cross has none, and a token must find its place in
    the other modality by content alone), or, with `cross_rotary` (a deviation, off by default), rotary
    positions on one axis for both modalities: speech frames count 1, text tokens `position_scale["text"]`
    frames each (the training data's speech/text length ratio, kept in the model file), so that text token i
    and speech frame j are near exactly when they are near on the diagonal of the alignment.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zipper.models.gated_cross_attention import CrossMemory, GatedCrossAttention
from zipper.models.lm import next_token_loss, task_forward, transcript_ctc_loss

logger = logging.getLogger(__name__)


class Projection(nn.Module):
    """d_in -> d_out: a 3-layer MLP with ReLUs (or one linear layer), followed by ReLU (the paper's p)."""

    def __init__(self, d_in: int, d_out: int, kind: str = "mlp", hidden: int = 0):
        super().__init__()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(d_in, d_out)
        elif kind == "mlp":
            hidden = hidden or max(d_in, d_out)
            self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, d_out))
        else:
            raise ValueError(f"unknown projection '{kind}' (mlp or linear)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.net(x))


class InputProjection(nn.Module):
    """h0 = e + tanh(a) * ReLU(MLP(e)) with a = 0 at init: identity until training opens the gate."""

    def __init__(self, d_model: int, kind: str = "mlp", hidden: int = 0):
        super().__init__()
        self.proj = Projection(d_model, d_model, kind, hidden)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return e + torch.tanh(self.gate) * self.proj(e)


@dataclasses.dataclass
class Segment:
    modality: str
    tokens: torch.Tensor  # (B, T)
    lengths: torch.Tensor  # (B,) real tokens per row (right padding)


@dataclasses.dataclass
class Memory:
    """One modality's states at its cross-attention layers, for the segments computed so far."""

    states: list[torch.Tensor]  # per cross layer n: (B, S, d_modality)
    mask: torch.Tensor  # (B, S) True for real tokens


def lengths_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]


class ZipperModel(nn.Module):
    def __init__(self, towers: dict[str, nn.Module], intervals: dict[str, int], n_cross_layers: int = 0,
                 cross_heads: int = 4, cross_ff: int = 0, cross_dropout: float = 0.0, projection: str = "mlp",
                 projection_hidden: int = 0, input_projection: Sequence[str] = (), freeze: Sequence[str] = (),
                 gate_lr_scale: float = 1.0, ctc_weight: float = 0.0, cross_memory_norm: bool = True,
                 guided_attention_weight: float = 0.0, guided_attention_sigma: float = 0.4,
                 cross_rotary: bool = False, cross_residual_dropout: float = 0.0):
        super().__init__()
        if len(towers) < 2:
            raise ValueError("Zipper needs at least two towers")
        if set(intervals) != set(towers):
            raise ValueError(f"intervals {sorted(intervals)} do not name the towers {sorted(towers)}")
        for name in list(input_projection) + list(freeze):
            if name not in towers:
                raise ValueError(f"'{name}' is not a tower (towers: {sorted(towers)})")
        self.towers = nn.ModuleDict(towers)
        self.intervals = dict(intervals)
        most = min(t.n_layers // intervals[m] for m, t in towers.items())
        self.n_cross = n_cross_layers or most
        if not 1 <= self.n_cross <= most:
            raise ValueError(f"{self.n_cross} cross-attention layers do not fit: with intervals {intervals} the "
                             f"towers have room for at most {most}")
        # block index (0-based) after which cross layer n (0-based) sits, per tower
        self.cross_after = {m: {(n + 1) * intervals[m] - 1: n for n in range(self.n_cross)} for m in towers}
        self.cross = nn.ModuleDict({m: nn.ModuleList(
            GatedCrossAttention(t.d_model, cross_heads, cross_ff, cross_dropout, memory_norm=cross_memory_norm,
                                rotary=cross_rotary, residual_dropout=cross_residual_dropout)
            for _ in range(self.n_cross))
            for m, t in towers.items()})
        self.proj = nn.ModuleDict({f"{m}<-{o}": nn.ModuleList(
            Projection(towers[o].d_model, towers[m].d_model, projection, projection_hidden)
            for _ in range(self.n_cross)) for m in towers for o in towers if o != m})
        self.input_proj = nn.ModuleDict({m: InputProjection(towers[m].d_model, projection, projection_hidden)
                                         for m in input_projection})
        self.gate_lr_scale = gate_lr_scale
        self.cross_rotary = cross_rotary
        if cross_rotary:  # frames per token of each tower on the common position axis (set_position_scale)
            self.register_buffer("position_scale", torch.ones(len(towers)))
        # a deviation from the paper, off by default: an auxiliary CTC head that reads the transcript from the
        # speech tower's states (Kim, Hori & Watanabe 2017), so that they carry text before attention aligns
        self.ctc_weight = ctc_weight
        self.ctc = None
        if ctc_weight > 0:
            from espnet2.asr.ctc import CTC

            self.ctc = CTC(towers["text"].vocab_size, towers["speech"].d_model)  # blank = 0 = <pad>, never a target
        # another deviation, off by default: a guided-attention loss (Tachibana et al. 2017, ESPnet's TTS) that
        # favours the diagonal in every cross-attention layer of the output tower while training
        self.guided_attention_weight = guided_attention_weight
        self.guided_attention = None
        if guided_attention_weight > 0:
            from espnet.nets.pytorch_backend.e2e_tts_tacotron2 import GuidedAttentionLoss

            self.guided_attention = GuidedAttentionLoss(sigma=guided_attention_sigma)
        self.frozen = set(freeze)
        for m in self.frozen:
            for p in self.towers[m].parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen:  # a frozen tower keeps its pre-trained behaviour: no dropout either
            self.towers[m].eval()
        return self

    # ------------------------------------------------------------------------------------------- memory
    def set_position_scale(self, scale: dict[str, float]) -> None:
        """How many units of the common position axis one token of each named tower spans (cross_rotary)."""
        names = list(self.towers)
        for m, value in scale.items():
            if not value > 0:
                raise ValueError(f"position scale of '{m}' must be positive, got {value}")
            self.position_scale[names.index(m)] = float(value)

    def positions(self, modality: str, start, length: int, device: torch.device) -> Optional[torch.Tensor]:
        """(T,) positions start .. start+length-1 of `modality` on the common axis; None without cross_rotary.
        start: an int, or a (T,) long tensor of positions already (static decoding's cache slots)."""
        if not self.cross_rotary:
            return None
        scale = self.position_scale[list(self.towers).index(modality)]
        if torch.is_tensor(start):
            return start.float() * scale
        return torch.arange(start, start + length, device=device, dtype=torch.float32) * scale

    def cross_memory(self, modality: str, memory: dict[str, Memory]) -> list[Optional[CrossMemory]]:
        """Per cross layer n of `modality`: the keys/values/mask over every other modality's memory, or None
        (no other memory yet, or no row sees any of it)."""
        others = [o for o in self.towers if o != modality and o in memory]
        if not others:
            return [None] * self.n_cross
        mask = torch.cat([memory[o].mask for o in others], dim=1)
        positions = None
        if self.cross_rotary:
            positions = torch.cat([self.positions(o, 0, memory[o].mask.shape[1], mask.device) for o in others])
        out = []
        for n in range(self.n_cross):
            states = torch.cat([self.proj[f"{modality}<-{o}"][n](memory[o].states[n]) for o in others], dim=1)
            layer = self.cross[modality][n]
            if n == 0:  # the visibility questions, asked once
                first = layer.prepare(layer.memory_kv(states, positions), mask)
                if first is None:
                    return [None] * self.n_cross
                out.append(first)
            else:
                out.append(CrossMemory(*layer.memory_kv(states, positions), first.mask, first.visible))
        return out

    def run_segment(self, segment: Segment, memory: dict[str, Memory], cache=None,
                    cross: Optional[list] = None, return_logits: bool = True, logits_to_keep: int = 0,
                    cache_position: Optional[torch.Tensor] = None):
        """Run one segment's tower with cross-attention to `memory` (or the prepared `cross`); returns
        (TowerOutput, states per cross layer).  logits_to_keep / cache_position: as the tower's forward."""
        m = segment.modality
        tower = self.towers[m]
        e = tower.embed(segment.tokens)
        if m in self.input_proj:
            e = self.input_proj[m](e)
        if cross is None:
            cross = self.cross_memory(m, memory)
        recorded: list[torch.Tensor] = []
        after = self.cross_after[m]
        start = cache_position if cache_position is not None else (cache.length if cache is not None else 0)
        positions = self.positions(m, start, e.shape[1], e.device)  # (T,) the queries', or None

        def hook(i: int, h: torch.Tensor) -> torch.Tensor:
            n = after.get(i)
            if n is None:
                return h
            if cross[n] is not None:
                h = self.cross[m][n](h, prepared=cross[n], positions=positions)
            recorded.append(h)
            return h

        extra = {} if cache_position is None else {"cache_position": cache_position}  # HF towers: no static path
        if logits_to_keep:
            extra["logits_to_keep"] = logits_to_keep
        out = tower(inputs_embeds=e, cache=cache, block_hook=hook, return_logits=return_logits, **extra)
        return out, recorded

    @staticmethod
    def extend_memory(memory: dict[str, Memory], segment: Segment, recorded: list[torch.Tensor]) -> None:
        mask = lengths_mask(segment.lengths, segment.tokens.shape[1])
        if segment.modality in memory:
            old = memory[segment.modality]
            memory[segment.modality] = Memory([torch.cat([a, b], dim=1) for a, b in zip(old.states, recorded)],
                                              torch.cat([old.mask, mask], dim=1))
        else:
            memory[segment.modality] = Memory(recorded, mask)

    def forward_segments(self, segments: Sequence[Segment], logits_for: Optional[set[int]] = None,
                         memory: Optional[dict[str, Memory]] = None):
        """Teacher-forced pass over segments in order; returns each segment's TowerOutput (logits if asked).
        `memory`: a dict to fill with every modality's states at the cross layers (empty by default)."""
        memory = {} if memory is None else memory
        outputs = []
        for i, segment in enumerate(segments):
            out, recorded = self.run_segment(segment, memory,
                                             return_logits=logits_for is None or i in logits_for)
            self.extend_memory(memory, segment, recorded)
            outputs.append(out)
        return outputs

    def task_loss(self, task: str, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                  text_lengths: torch.Tensor, memory: Optional[dict[str, Memory]] = None,
                  history: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced ASR ([speech][text], loss on text) or TTS ([text][speech], loss on speech): summed
        nll, correct predictions and count of the target segment; `memory` is filled as in forward_segments.
        history (B, T): what the target segment reads instead of its own tokens (--history_noise), same shape."""
        if task not in ("asr", "tts"):
            raise ValueError(f"unknown task '{task}'")
        out_modality = "text" if task == "asr" else "speech"
        tokens = {"speech": speech, "text": text}
        target = tokens[out_modality]
        if history is not None:
            if history.shape != target.shape:
                raise ValueError(f"history of shape {tuple(history.shape)} does not match the {out_modality} "
                                 f"targets' {tuple(target.shape)}")
            tokens[out_modality] = history
        speech_seg = Segment("speech", tokens["speech"], speech_lengths)
        text_seg = Segment("text", tokens["text"], text_lengths)
        order = [speech_seg, text_seg] if task == "asr" else [text_seg, speech_seg]
        logits = self.forward_segments(order, logits_for={1}, memory=memory)[1].logits[:, :-1]  # (B, T-1, V)
        return next_token_loss(logits, target, order[1].lengths)

    def forward(self, task: str, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                text_lengths: torch.Tensor, measure_gain: bool = False, history: Optional[torch.Tensor] = None,
                **_) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Mean loss of `task` on the batch; measure_gain: also the loss on mismatched pairs (audio_gain).
        The training aids, when configured, add to the loss trained on: ASR batches ctc_weight x the CTC loss,
        training batches guided_attention_weight x the guided-attention loss of the output tower; `history`: the
        target side's noisy input (task_loss), for the matched pass only."""
        memory: dict[str, Memory] = {}
        out_modality, query_lengths, memory_lengths = (("text", text_lengths, speech_lengths) if task == "asr"
                                                       else ("speech", speech_lengths, text_lengths))
        use_ctc = self.ctc is not None and task == "asr"
        guided = self.guided_attention is not None and self.training
        for layer in self.cross[out_modality]:
            layer.keep_probs = guided

        def aux() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            total, stats = self.ctc_loss(memory["speech"], text, text_lengths) if use_ctc else (0.0, {})
            if guided:
                loss = self.guided_attention_loss(self.cross[out_modality], query_lengths, memory_lengths)
                total = total + self.guided_attention_weight * loss
                stats[f"{task}_guided"] = loss.detach()
            return total, stats

        # the matched pass fills `memory` for the aids; the mismatched pass gets its own (a shared one would let
        # its text attend to the matched speech too, and the gain would read ~0)
        matched = functools.partial(self.task_loss, memory=memory, history=history)
        return task_forward(matched, task, speech, speech_lengths, text, text_lengths, measure_gain,
                            aux if use_ctc or guided else None, mismatched_loss=self.task_loss)

    def guided_attention_loss(self, layers: nn.ModuleList, query_lengths: torch.Tensor,
                              memory_lengths: torch.Tensor) -> torch.Tensor:
        """Mean over the cross layers of ESPnet's guided-attention loss on every head's weights."""
        losses = []
        for layer in layers:
            probs = layer.last_probs  # (B, H, T, S)
            b, h, t, s = probs.shape
            losses.append(self.guided_attention(probs.reshape(b * h, t, s), memory_lengths.repeat_interleave(h),
                                                query_lengths.repeat_interleave(h)))
            layer.last_probs = None
        return torch.stack(losses).mean()

    def ctc_loss(self, speech: Memory, text: torch.Tensor, text_lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(ctc_weight x CTC loss per text token, stats): the transcript (without <bos>/<eos>) read off the
        speech tower's states at its last cross-attention layer - the states the text side attends to."""
        states = speech.states[-1]  # (B, S, d_speech), <bos> .. <eos> included
        return transcript_ctc_loss(self.ctc, self.ctc_weight, states, speech.mask.sum(dim=1), text, text_lengths)

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Gates at lr * gate_lr_scale: a zero-initialised scalar gate opens only as fast as its learning rate
        lets it, and a short run (the CPU presets) cannot wait as long as the paper's million steps."""
        gates = [p for name, p in self.named_parameters() if p.requires_grad and name.endswith("gate")]
        ids = {id(p) for p in gates}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": rest, "lr": lr}, {"params": gates, "lr": lr * self.gate_lr_scale}]

    # -------------------------------------------------------------------------------------- model files
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen towers (they stay in their own experiments, unchanged)."""
        frozen = tuple(f"towers.{m}." for m in self.frozen)
        return {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)}

    def load_checkpoint_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        frozen = tuple(f"towers.{m}." for m in self.frozen)
        missing = [k for k in missing if not k.startswith(frozen)]
        if missing or unexpected:
            raise KeyError(f"model file does not fit this Zipper: missing {missing[:5]}, unexpected {unexpected[:5]}")

    # ------------------------------------------------------------------------------------------ reports
    def parameter_report(self) -> list[str]:
        lines = []
        for m, tower in self.towers.items():
            total = sum(p.numel() for p in tower.parameters())
            trainable = sum(p.numel() for p in tower.parameters() if p.requires_grad)
            lines.append(f"tower {m}: {total / 1e6:.2f} M parameters, {trainable / 1e6:.2f} M trainable"
                         f"{' (frozen)' if m in self.frozen else ''}")
        fusion = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("towers."))
        lines.append(f"fusion (cross-attention, projections, input projections): {fusion / 1e6:.2f} M, trainable")
        return lines

    def gate_report(self) -> dict[str, list[dict[str, float]]]:
        report = {m: [layer.gate_values() for layer in layers] for m, layers in self.cross.items()}
        for m, proj in self.input_proj.items():
            report[f"{m}_input"] = [{"gate": float(torch.tanh(proj.gate))}]
        return report
