"""A decoder-only Transformer LM: one Zipper tower (text or speech units).

Pre-norm blocks (RMSNorm -> causal self-attention with rotary positions through
`scaled_dot_product_attention` -> RMSNorm -> SwiGLU MLP), a final RMSNorm and a softmax tied to the input
embedding, as the paper's towers have.  Two things fusion needs beyond a plain LM:
  * `block_hook(i, h) -> h` runs after block i, so that Zipper can insert cross-attention between blocks
    without the tower knowing about it, and every block's output can be returned;
  * a static KV cache (`KVCache`), preallocated and indexed by a Python int, so that incremental decoding
    never recomputes a prefix and never needs a host-device sync to know where to write.
Two ways to decode with it (docs/performance.md measures both):
  * by length (default): the step writes after `cache.length` and attends to the filled slots only;
  * by slot (`cache_position`, a device tensor): the step writes at the given slots and attends to the whole
    preallocated cache under a mask, so every step has the same shapes and the same tensors - what a CUDA
    graph or torch.compile without recompilation needs (zipper.inference.graphs).
No forward pass asks the device anything (no `.item()`, no `int(tensor)`) unless the caller gives explicit
positions with no cache, so a training step is one graph for torch.compile and never waits for the GPU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class TowerConfig:
    vocab_size: int
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 0  # 0: SwiGLU's usual 8/3 * d_model, rounded up to a multiple of 64
    dropout: float = 0.0
    max_len: int = 4096  # longest position the rotary table covers (grows on demand)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("the head dimension must be even for rotary positions")
        if not self.d_ff:
            self.d_ff = 64 * math.ceil(8 * self.d_model / 3 / 64)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class KVCache:
    """Keys and values of every layer for the positions decoded so far: (L, B, H, max_len, Dh) each.

    `length` is a Python int (how many positions are filled), so that writing the next step's keys needs
    no device sync; `reorder` follows beams.
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (n_layers, batch, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        self.max_len = max_len

    @classmethod
    def for_tower(cls, config: TowerConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> "KVCache":
        return cls(config.n_layers, batch, config.n_heads, max_len, config.head_dim, dtype, device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, Dh) after the filled positions; return all keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache of {self.max_len} positions is full (asked for {end})")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor,
              slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, Dh) at `slots` (T,) (a device tensor: no sync, same shapes every step);
        return the whole preallocated keys/values (B, H, max_len, Dh) - the caller masks what is not filled."""
        self.k[layer].index_copy_(2, slots, k.to(self.k.dtype))  # autocast: bf16 keys into an fp32 cache
        self.v[layer].index_copy_(2, slots, v.to(self.v.dtype))
        return self.k[layer], self.v[layer]

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: torch.Tensor, start: int = 0) -> None:
        """Keep batch rows `index` (beam search; replicating rows changes the batch size).

        Only the filled positions are copied: a beam step must not cost a copy of the whole preallocated cache.
        `start` > 0: the caller knows positions before it are equal in every row and its source row (beams of
        one prompt), so a same-size reorder leaves them alone.
        """
        n = self.length
        if len(index) == self.k.shape[1]:
            self.k[:, :, :, start:n] = self.k[:, index, :, start:n]
            self.v[:, :, :, start:n] = self.v[:, index, :, start:n]
            return
        k = self.k.new_zeros(self.k.shape[0], len(index), *self.k.shape[2:])
        v = torch.zeros_like(k)
        k[:, :, :, :n] = self.k[:, index, :, :n]
        v[:, :, :, :n] = self.v[:, index, :, :n]
        self.k, self.v = k, v


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary positions, computed once and extended when a longer position is asked."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)
        self._build(max_len)

    def _build(self, length: int) -> None:
        device = self.cos.device
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=device) / self.head_dim
        angles = torch.outer(torch.arange(length, dtype=torch.float64, device=device), self.theta ** -exponent)
        self.cos = angles.cos().float()  # (T, Dh/2)
        self.sin = angles.sin().float()

    def ensure(self, length: int) -> None:
        """Make the table cover positions < length (done outside any captured graph: it reallocates)."""
        if length > self.cos.shape[0]:
            self._build(max(length, 2 * self.cos.shape[0]))

    def span(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions start .. end-1 (Python ints): views of the table, no gather, no device sync."""
        self.ensure(end)
        return self.cos[None, None, start:end], self.sin[None, None, start:end]

    def forward(self, positions: torch.Tensor, bound: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (B, T) or (T,) -> cos, sin of shape (B or 1, 1, T, Dh/2).

        bound: a Python int above every position (e.g. the cache's length); without it the largest position
        is read from the device, a host-device sync.
        """
        if bound is None:
            bound = int(positions.max()) + 1 if positions.numel() else 0
        self.ensure(bound)
        cos, sin = self.cos[positions], self.sin[positions]
        if positions.dim() == 1:
            cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
        return cos.unsqueeze(1), sin.unsqueeze(1)


def rotary_angles(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-valued positions (T,) or (B, T) -> cos, sin (B or 1, 1, T, Dh/2), computed, not looked up: the
    cross-attention's positions are scaled (text tokens on the speech frame axis) and need not be integers."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim
    angles = positions.float()[..., None] * theta ** -exponent  # (..., T, Dh/2)
    if positions.dim() == 1:
        angles = angles.unsqueeze(0)
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dim: x (B, H, T, Dh)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, config: TowerConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: Optional[torch.Tensor],
                cache: Optional[KVCache], layer: int, slots: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        causal = mask is None
        if slots is not None:  # static: write at the slots, attend to the whole cache under `mask`
            k, v = cache.write(layer, k, v, slots)
            causal = False
        elif cache is not None:
            k, v = cache.update(layer, k, v)
            causal = causal and cache.length == 0  # a continuation sees every cached position
            if mask is None and cache.length > 0 and t > 1:
                mask = causal_mask(t, cache.length, x.device)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and t > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


def causal_mask(t: int, past: int, device: torch.device | str) -> torch.Tensor:
    """(T, past + T) bool: query i (at position past + i) sees keys 0 .. past + i."""
    return torch.ones(t, past + t, dtype=torch.bool, device=device).tril(diagonal=past)


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * up))


class Block(nn.Module):
    def __init__(self, config: TowerConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attn = SelfAttention(config)
        self.mlp_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = SwiGLU(config.d_model, config.d_ff, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope, mask, cache, layer, slots=None):
        x = x + self.dropout(self.attn(self.attn_norm(x), rope, mask, cache, layer, slots))
        return x + self.mlp(self.mlp_norm(x))


@dataclasses.dataclass
class TowerOutput:
    logits: Optional[torch.Tensor]  # (B, T, V), None when not asked for
    last_hidden: torch.Tensor  # (B, T, D): the last block's output, before the final norm
    hidden_states: list[torch.Tensor]  # every block's output (after its hook), when asked for


class DecoderTower(nn.Module):
    """`tower(tokens) -> TowerOutput`; `tower.logits(h)` is the tied softmax's input."""

    def __init__(self, config: TowerConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.rope = RotaryEmbedding(config.head_dim, config.max_len, config.rope_theta)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # residual-branch outputs scaled down with depth (GPT-2's rule), the rest N(0, std)
                scale = 1 / math.sqrt(2 * self.config.n_layers) if name.endswith(("attn.out.weight",
                                                                                 "mlp.down.weight")) else 1.0
                nn.init.normal_(p, std=std * scale)

    @property
    def d_model(self) -> int:
        return self.config.d_model

    @property
    def n_layers(self) -> int:
        return self.config.n_layers

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    supports_static_cache = True  # forward takes cache_position (zipper.inference.graphs relies on it)

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        weight = self.embed.weight
        self.rope.ensure(max_len)  # a captured decoding step must never have to grow the table
        return KVCache.for_tower(self.config, batch, max_len, dtype or weight.dtype, weight.device)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, D) last-block output -> (B, T, V), softmax tied to the input embedding."""
        return F.linear(self.norm(hidden), self.embed.weight)

    def forward(self, tokens: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None,
                positions: Optional[torch.Tensor] = None, key_padding_mask: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None, block_hook: Optional[BlockHook] = None,
                return_hidden: bool = False, return_logits: bool = True, logits_to_keep: int = 0,
                cache_position: Optional[torch.Tensor] = None) -> TowerOutput:
        """tokens (B, T) or inputs_embeds (B, T, D).

        positions: (B, T) or (T,) positions for the rotary table (default: after what the cache holds); with a
            cache they must be below its max_len (true of left padding), so that no device sync is needed.
        key_padding_mask: (B, S) True for real keys, S = cached + T (left-padded prompts); causal on top.
        cache: filled by this call and advanced by T.
        logits_to_keep: only the last n positions' logits (decoding needs the last one); 0: all.
        cache_position: (T,) long device tensor: the cache slots this call writes (static decoding).  Each query
            attends to the slots up to its own; the cache's `length` is left to the caller; positions default
            to the slots; no key_padding_mask.
        """
        h = self.embed(tokens) if inputs_embeds is None else inputs_embeds
        b, t, _ = h.shape
        past = cache.length if cache is not None else 0
        mask = None
        if cache_position is not None:
            if cache is None or key_padding_mask is not None:
                raise ValueError("cache_position needs a cache and no key_padding_mask")
            rope = self.rope(cache_position if positions is None else positions, bound=cache.max_len)
            # (T, max_len): each query sees the filled slots up to its own
            mask = torch.arange(cache.max_len, device=h.device)[None, :] <= cache_position[:, None]
        elif positions is None:
            rope = self.rope.span(past, past + t)
        else:
            rope = self.rope(positions, bound=cache.max_len if cache is not None else None)
        rope = (rope[0].to(h.dtype), rope[1].to(h.dtype))  # cast once, not once per layer
        if key_padding_mask is not None:
            mask = causal_mask(t, past, h.device).unsqueeze(0) & key_padding_mask[:, None, :]  # (B, T, S)
            mask = mask.unsqueeze(1)  # (B, 1, T, S)
            mask = mask | ~mask.any(dim=-1, keepdim=True)  # a padded query sees all (its output is unused)
        hidden_states = []
        for i, block in enumerate(self.blocks):
            h = block(h, rope, mask, cache, i, cache_position)
            if block_hook is not None:
                h = block_hook(i, h)
            if return_hidden:
                hidden_states.append(h)
        if cache is not None and cache_position is None:
            cache.advance(t)
        return TowerOutput(self._logits(h, return_logits, logits_to_keep), h, hidden_states)

    def _logits(self, h: torch.Tensor, wanted: bool, keep: int) -> Optional[torch.Tensor]:
        if not wanted:
            return None
        return self.logits(h[:, -keep:] if keep else h)
