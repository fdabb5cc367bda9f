"""Any Hugging Face causal LM as a Zipper tower (GPT-2, Llama, Qwen2, OLMo, ...), with its own tokenizer.

It exposes what `DecoderTower` exposes - `embed`, `forward(tokens | inputs_embeds, positions, key_padding_mask,
cache, block_hook, return_hidden) -> TowerOutput`, `new_cache`, `d_model`, `n_layers`, `vocab_size` - so that
fusion and decoding do not care which kind of tower they hold.  Between-block access uses forward hooks on
the model's decoder layers (found by name: `layers`, `h`, `blocks`), so no architecture is re-implemented
here; the KV cache is the model's own `DynamicCache`.  The softmax is the model's `lm_head` (tied to the
input embedding where the model ties them, as GPT-2 and small Qwen2 do).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Optional, Sequence

import torch
from torch import nn

from zipper.models.tower import BlockHook, TowerOutput

logger = logging.getLogger(__name__)
LAYER_LIST_NAMES = ("layers", "h", "blocks", "block")
UNSUPPORTED_CONFIG_KEYS = ("final_logit_softcapping", "logit_scale")  # logits != lm_head(hidden)


def find_decoder_layers(base: nn.Module) -> nn.ModuleList:
    for name in LAYER_LIST_NAMES:
        layers = getattr(base, name, None)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    raise ValueError(f"cannot find the decoder layers of {type(base).__name__} (looked for {LAYER_LIST_NAMES})")


class HFCache:
    """The model's DynamicCache behind the interface of zipper.models.tower.KVCache (length, reorder)."""

    def __init__(self):
        from transformers import DynamicCache

        self.hf = DynamicCache()

    @property
    def length(self) -> int:
        return self.hf.get_seq_length()

    def reorder(self, index: torch.Tensor, start: int = 0) -> None:
        self.hf.reorder_cache(index)  # the whole cache: DynamicCache has no partial reorder


class HFTower(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        for key in UNSUPPORTED_CONFIG_KEYS:
            if getattr(model.config, key, None):
                raise ValueError(f"{type(model).__name__} uses {key}: its logits are not lm_head(hidden), "
                                 "which this adapter assumes")
        self.model = model
        self.base = model.base_model
        self.blocks = find_decoder_layers(self.base)
        self.embed = model.get_input_embeddings()
        # transformers renamed `past_key_values` to `cache` (5.2x); take whichever this version's model has
        params = inspect.signature(self.base.forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: str = "float32", **kwargs: Any) -> "HFTower":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype), **kwargs)
        return cls(model)

    @property
    def d_model(self) -> int:
        return self.embed.embedding_dim

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def vocab_size(self) -> int:
        return self.embed.num_embeddings

    def new_cache(self, batch: int = 0, max_len: int = 0, dtype: torch.dtype | None = None) -> HFCache:
        return HFCache()

    def forward(self, tokens: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None,
                positions: Optional[torch.Tensor] = None, key_padding_mask: Optional[torch.Tensor] = None,
                cache: Optional[HFCache] = None, block_hook: Optional[BlockHook] = None,
                return_hidden: bool = False, return_logits: bool = True, logits_to_keep: int = 0) -> TowerOutput:
        if inputs_embeds is None:
            inputs_embeds = self.embed(tokens)
        hidden_states: list[torch.Tensor] = []

        def hook_for(i: int):
            def hook(module, args, output):
                h = output[0] if isinstance(output, tuple) else output
                if block_hook is not None:
                    h = block_hook(i, h)
                if return_hidden or i == len(self.blocks) - 1:
                    hidden_states.append(h)
                return (h, *output[1:]) if isinstance(output, tuple) else h
            return hook

        handles = [block.register_forward_hook(hook_for(i)) for i, block in enumerate(self.blocks)]
        try:
            b, t = inputs_embeds.shape[:2]
            if positions is not None and positions.dim() == 1:
                positions = positions.unsqueeze(0).expand(b, -1)
            out = self.base(inputs_embeds=inputs_embeds,
                            attention_mask=key_padding_mask.long() if key_padding_mask is not None else None,
                            position_ids=positions, use_cache=cache is not None,
                            **{self.cache_kwarg: cache.hf if cache is not None else None})
        finally:
            for handle in handles:
                handle.remove()
        last_hidden = out.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else out.last_hidden_state
        logits = self.model.lm_head(last_hidden) if return_logits else None
        last = hidden_states[-1]
        return TowerOutput(logits, last, hidden_states if return_hidden else [])


class HFTokenizer:
    """A Hugging Face tokenizer behind zipper.data.sequences.Tokenizer (encode/decode, bos/eos/pad ids)."""

    def __init__(self, name_or_path_or_tokenizer: Any):
        if isinstance(name_or_path_or_tokenizer, str):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path_or_tokenizer)
        else:
            self.tokenizer = name_or_path_or_tokenizer
        tok = self.tokenizer
        self.eos_id = tok.eos_token_id
        if self.eos_id is None:
            raise ValueError(f"tokenizer {tok.name_or_path} has no eos token: a tower must be able to stop")
        self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else self.eos_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in (self.bos_id, self.eos_id, self.pad_id)],
                                     skip_special_tokens=True)
