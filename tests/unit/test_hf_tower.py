"""Any Hugging Face causal LM as a tower: same logits as the model it wraps, hooks, cache, tokenizer adapter.

The models are tiny and randomly initialised from configs built here: nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
from zipper.models.hf_tower import HFTokenizer, HFTower  # noqa: E402


def tiny_models():
    torch.manual_seed(0)
    return {
        "gpt2": transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=100, n_embd=32, n_layer=3, n_head=4, bos_token_id=0, eos_token_id=1)),
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, bos_token_id=0, eos_token_id=1)),
        "qwen2": transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
            vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, bos_token_id=0, eos_token_id=1)),
    }


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])
def test_adapter_matches_the_wrapped_model(name):
    model = tiny_models()[name].eval()
    tower = HFTower(model)
    x = torch.randint(0, 100, (2, 7))
    out = tower(x, return_hidden=True)
    torch.testing.assert_close(out.logits, model(x).logits, atol=1e-6, rtol=1e-6)
    assert (tower.n_layers, tower.d_model, tower.vocab_size) == (3, 32, 100)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 7, 32)
    # cached incremental decoding gives the same logits
    cache = tower.new_cache()
    steps = [tower(x[:, :4], cache=cache).logits] + [tower(x[:, i:i + 1], cache=cache).logits for i in range(4, 7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(x).logits, atol=1e-5, rtol=1e-5)
    assert cache.length == 7
    # a hook between blocks changes what follows, and inputs_embeds are honoured
    hooked = tower(x, block_hook=lambda i, h: h * 0.5 if i == 1 else h).logits
    assert not torch.allclose(hooked, out.logits)
    torch.testing.assert_close(tower(inputs_embeds=tower.embed(x)).logits, out.logits)


def test_hooks_are_removed_after_the_call():
    model = tiny_models()["llama"].eval()
    tower = HFTower(model)
    x = torch.randint(0, 100, (1, 4))
    tower(x, block_hook=lambda i, h: h * 0)
    torch.testing.assert_close(tower(x).logits, model(x).logits)


def test_tokenizer_adapter(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran"]
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")
    fast.save_pretrained(tmp_path)
    adapter = HFTokenizer(str(tmp_path))
    assert (adapter.bos_id, adapter.eos_id, adapter.pad_id) == (0, 1, 1)  # no pad token: eos pads
    ids = adapter.encode("the cat sat")
    assert ids == [3, 4, 5]
    assert adapter.decode([0] + ids + [1]) == "the cat sat"
