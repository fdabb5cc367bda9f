"""Flamingo-style gated cross-attention followed by a gated feed-forward layer (the paper's f_cross).

    y <- y + tanh(a_attn) * XAttn(LN(y), memory)
    y <- y + tanh(a_ff)   * FFW(LN(y))

with both gates scalars initialised to 0, so that an untrained fused model computes exactly what its towers
compute alone.  A batch row with no visible memory (no token of the other modality before it) is returned
unchanged - exactly, not approximately - because attending over an empty set is undefined and a softmax
over masked keys would otherwise leak padding.  Keys and values of a memory can be computed once
(`memory_kv`) and reused at every decoding step.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class GatedCrossAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int = 0, dropout: float = 0.0, norm_eps: float = 1e-5):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.attn_norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.ff_norm = nn.RMSNorm(d_model, eps=norm_eps)
        d_ff = d_ff or 4 * d_model
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff, bias=False), nn.GELU(), nn.Linear(d_ff, d_model, bias=False))
        self.attn_gate = nn.Parameter(torch.zeros(()))
        self.ff_gate = nn.Parameter(torch.zeros(()))
        self.dropout = dropout

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, S, D) -> keys, values (B, H, S, Dh), reusable across decoding steps."""
        b, s, _ = memory.shape
        k, v = self.kv(memory).view(b, s, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, y: torch.Tensor, memory: Optional[torch.Tensor] = None,
                memory_mask: Optional[torch.Tensor] = None,
                memory_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """y (B, T, D) queries; memory (B, S, D) or precomputed memory_kv; memory_mask (B, S) True = visible."""
        if memory_kv is None:
            if memory is None or memory.shape[1] == 0:
                return y
            memory_kv = self.memory_kv(memory)
        k, v = memory_kv
        b, t, d = y.shape
        visible = None
        if memory_mask is not None:
            visible = memory_mask.any(dim=1)  # (B,) rows that see at least one memory token
            if not bool(visible.any()):
                return y
            # rows that see nothing attend to everything (finite numbers), then are put back untouched below
            mask = (memory_mask | ~visible[:, None])[:, None, None, :]  # (B, 1, 1, S)
        else:
            mask = None
        q = self.q(self.attn_norm(y)).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                  dropout_p=self.dropout if self.training else 0.0)
        out = y + torch.tanh(self.attn_gate) * self.out(attended.transpose(1, 2).reshape(b, t, d))
        out = out + torch.tanh(self.ff_gate) * self.ff(self.ff_norm(out))
        if visible is not None and not bool(visible.all()):
            out = torch.where(visible[:, None, None], out, y)
        return out

    def gate_values(self) -> dict[str, float]:
        return {"attn": float(torch.tanh(self.attn_gate)), "ff": float(torch.tanh(self.ff_gate))}
