"""Flamingo-style gated cross-attention followed by a gated feed-forward layer (the paper's f_cross).

    y <- y + tanh(a_attn) * XAttn(LN(y), memory)
    y <- y + tanh(a_ff)   * FFW(LN(y))

with both gates scalars initialised to 0, so that an untrained fused model computes exactly what its towers
compute alone.  The memory is RMS-normalised before its keys and values (as Flamingo's media are: they leave
its Perceiver through a LayerNorm; the paper is silent): the projected states of another tower can be 50x
smaller than the queries (measured: rms 0.03 after the ReLU-MLP projection vs 2 in the text stream), and then
the attention is uniform, its output a content-free mean, and its gradients vanish (docs/learning.md).
With `rotary` (a deviation, off by default; the paper is silent on positions in f_cross), queries and keys
are rotated by their positions on a common axis (ZipperModel puts text tokens on the speech frame axis), so
that a head can prefer the diagonal of the alignment before it can match content (docs/learning.md).
A batch row with no visible memory (no token of the other modality before it) is returned unchanged -
exactly, not approximately - because attending over an empty set is undefined and a softmax over masked keys
would otherwise leak padding.  Keys and values of a memory can be computed once
(`memory_kv`, `prepare` -> CrossMemory) and reused at every decoding step; which rows see anything is decided
then too, so that a step never asks the device (no host-device sync in the decoding loop).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from zipper.models.tower import apply_rotary, rotary_angles


@dataclasses.dataclass
class CrossMemory:
    """A memory made ready for many queries: keys/values (B, H, S, Dh), the attention mask (B, 1, 1, S) or None,
    and which rows see at least one memory token (`visible` (B,), None when all do)."""

    k: torch.Tensor
    v: torch.Tensor
    mask: Optional[torch.Tensor] = None
    visible: Optional[torch.Tensor] = None

    def index(self, rows: torch.Tensor) -> "CrossMemory":
        """Keep batch rows `rows` (beams, replicated samples)."""
        pick = (lambda x: None if x is None else x[rows])
        return CrossMemory(self.k[rows], self.v[rows], pick(self.mask), pick(self.visible))


class GatedCrossAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int = 0, dropout: float = 0.0, norm_eps: float = 1e-5,
                 memory_norm: bool = True, rotary: bool = False, rope_theta: float = 10000.0,
                 residual_dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.attn_norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.memory_norm = nn.RMSNorm(d_model, eps=norm_eps) if memory_norm else nn.Identity()
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.ff_norm = nn.RMSNorm(d_model, eps=norm_eps)
        d_ff = d_ff or 4 * d_model
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff, bias=False), nn.GELU(), nn.Linear(d_ff, d_model, bias=False))
        self.attn_gate = nn.Parameter(torch.zeros(()))
        self.ff_gate = nn.Parameter(torch.zeros(()))
        self.dropout = dropout  # on the attention weights
        self.residual_dropout = residual_dropout  # on what each branch adds to y (a Transformer's usual dropout)
        self.rotary, self.rope_theta = rotary, rope_theta
        self.keep_probs = False  # set to keep the attention weights of the last call in `last_probs`
        self.last_probs: Optional[torch.Tensor] = None  # (B, H, T, S)

    def memory_kv(self, memory: torch.Tensor, positions: Optional[torch.Tensor] = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, S, D) -> keys, values (B, H, S, Dh), reusable across decoding steps.
        positions (S,) or (B, S): where each memory token sits (rotary layers; default 0 .. S-1)."""
        b, s, _ = memory.shape
        k, v = self.kv(self.memory_norm(memory)).view(b, s, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.rotate(k, positions), v

    def rotate(self, x: torch.Tensor, positions: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, H, T, Dh) rotated by positions (T,) or (B, T) (default 0 .. T-1); unchanged unless rotary."""
        if not self.rotary:
            return x
        if positions is None:
            positions = torch.arange(x.shape[2], device=x.device)
        return apply_rotary(x, *rotary_angles(positions, self.head_dim, self.rope_theta))

    @staticmethod
    def prepare(memory_kv: tuple[torch.Tensor, torch.Tensor], memory_mask: Optional[torch.Tensor] = None
                ) -> Optional[CrossMemory]:
        """Keys/values and mask (B, S) True = visible -> CrossMemory, or None when no row sees anything.

        The questions asked of the device here (does any row / every row see something, is anything padded)
        are asked once per memory, not once per layer and step, and not at all under torch.compile."""
        k, v = memory_kv
        if k.shape[2] == 0:
            return None
        if memory_mask is None:
            return CrossMemory(k, v)
        visible = memory_mask.any(dim=1)  # (B,) rows that see at least one memory token
        if torch.compiler.is_compiling():  # no questions (a graph break): mask and put back unconditionally
            return CrossMemory(k, v, (memory_mask | ~visible[:, None])[:, None, None, :], visible)
        flags = torch.stack([visible.any(), visible.all(), memory_mask.all()]).tolist()  # one sync for all three
        if not flags[0]:
            return None
        if flags[2]:  # no padding: no mask, so that SDPA may take its fastest kernel
            return CrossMemory(k, v)
        # rows that see nothing attend to everything (finite numbers), then are put back untouched in forward
        mask = (memory_mask | ~visible[:, None])[:, None, None, :]  # (B, 1, 1, S)
        return CrossMemory(k, v, mask, None if flags[1] else visible)

    def forward(self, y: torch.Tensor, memory: Optional[torch.Tensor] = None,
                memory_mask: Optional[torch.Tensor] = None,
                memory_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                prepared: Optional[CrossMemory] = None, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """y (B, T, D) queries; memory (B, S, D), or precomputed memory_kv, or a `prepare`d CrossMemory;
        memory_mask (B, S) True = visible; positions (T,) or (B, T): the queries' (rotary layers only)."""
        if prepared is None:
            if memory_kv is None:
                if memory is None or memory.shape[1] == 0:
                    return y
                memory_kv = self.memory_kv(memory)
            prepared = self.prepare(memory_kv, memory_mask)
            if prepared is None:
                return y
        b, t, d = y.shape
        q = self.q(self.attn_norm(y)).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        q = self.rotate(q, positions)
        if self.keep_probs:  # the weights themselves, for a loss on them (guided attention): no fused kernel
            scores = q @ prepared.k.transpose(-1, -2) / self.head_dim ** 0.5  # (B, H, T, S)
            if prepared.mask is not None:
                scores = scores.masked_fill(~prepared.mask, float("-inf"))
            self.last_probs = scores.softmax(dim=-1)
            attended = F.dropout(self.last_probs, self.dropout, self.training) @ prepared.v
        else:
            attended = F.scaled_dot_product_attention(q, prepared.k, prepared.v, attn_mask=prepared.mask,
                                                      dropout_p=self.dropout if self.training else 0.0)
        attn_out = self.out(attended.transpose(1, 2).reshape(b, t, d))  # (B, T, D)
        out = y + torch.tanh(self.attn_gate) * F.dropout(attn_out, self.residual_dropout, self.training)
        ff_out = self.ff(self.ff_norm(out))  # (B, T, D)
        out = out + torch.tanh(self.ff_gate) * F.dropout(ff_out, self.residual_dropout, self.training)
        if prepared.visible is not None:
            out = torch.where(prepared.visible[:, None, None], out, y)
        return out

    def gate_values(self) -> dict[str, float]:
        return {"attn": float(torch.tanh(self.attn_gate)), "ff": float(torch.tanh(self.ff_gate))}
