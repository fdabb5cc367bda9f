"""Zipper fusion (PAPER.md section 1) and the baseline: what the paper's architecture promises, checked exactly."""

from __future__ import annotations

import pytest
import torch

from zipper.inference.decoders import allowed_tokens, decode_vocab_expansion, decode_zipper
from zipper.inference.search import SearchConfig
from zipper.models.gated_cross_attention import GatedCrossAttention
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.models.vocab_expansion import VocabExpansionModel
from zipper.models.zipper import Segment, ZipperModel
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL, PAD


def towers(seed=0):
    torch.manual_seed(seed)
    text = DecoderTower(TowerConfig(vocab_size=30, d_model=32, n_layers=4, n_heads=4))
    speech = DecoderTower(TowerConfig(vocab_size=20, d_model=24, n_layers=6, n_heads=4))
    return text, speech


def zipper(freeze=("text",), seed=0, **kw) -> ZipperModel:
    text, speech = towers(seed)
    return ZipperModel({"text": text, "speech": speech}, {"text": 2, "speech": 3}, cross_heads=4,
                       input_projection=["text", "speech"], freeze=freeze, **kw)


def open_gates(model: ZipperModel, value=0.7) -> None:
    with torch.no_grad():
        for layers in model.cross.values():
            for layer in layers:
                layer.attn_gate.fill_(value)
                layer.ff_gate.fill_(value)
        for proj in model.input_proj.values():
            proj.gate.fill_(value)


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randint(NUM_SPECIAL, 20, (2, 9), generator=g)
    text = torch.randint(NUM_SPECIAL, 30, (2, 6), generator=g)
    return (Segment("speech", speech, torch.tensor([9, 7])), Segment("text", text, torch.tensor([6, 4])))


@pytest.mark.parametrize("order", ["asr", "tts"])
def test_gates_at_zero_reproduce_each_tower_bit_for_bit(order):
    model = zipper().eval()
    speech, text = batch()
    segments = [speech, text] if order == "asr" else [text, speech]
    outputs = model.forward_segments(segments)
    for segment, out in zip(segments, outputs):
        alone = model.towers[segment.modality](segment.tokens).logits
        assert torch.equal(out.logits, alone)


def test_cross_layers_sit_after_every_interval():
    model = zipper()
    assert model.n_cross == 2  # text: 4 // 2, speech: 6 // 3
    assert model.cross_after == {"text": {1: 0, 3: 1}, "speech": {2: 0, 5: 1}}
    with pytest.raises(ValueError, match="do not fit"):
        ZipperModel(dict(zip(["text", "speech"], towers())), {"text": 2, "speech": 3}, n_cross_layers=3)


def test_no_leak_from_later_tokens_in_either_direction():
    model = zipper().eval()
    open_gates(model)
    speech, text = batch()
    asr = model.forward_segments([speech, text])
    other_text = Segment("text", torch.randint(NUM_SPECIAL, 30, (2, 6)), text.lengths)
    assert torch.equal(model.forward_segments([speech, other_text])[0].logits, asr[0].logits)
    tts = model.forward_segments([text, speech])
    other_speech = Segment("speech", torch.randint(NUM_SPECIAL, 20, (2, 9)), speech.lengths)
    assert torch.equal(model.forward_segments([text, other_speech])[0].logits, tts[0].logits)
    # and the later segment does depend on the earlier one (the gates are open)
    assert not torch.allclose(model.forward_segments([other_speech, text])[1].logits, asr[1].logits)
    # padding beyond a row's length is invisible
    padded = speech.tokens.clone()
    padded[1, 7:] = 3
    moved = model.forward_segments([Segment("speech", padded, speech.lengths), text])
    assert torch.equal(moved[1].logits, asr[1].logits)


def test_a_row_that_sees_nothing_gets_exactly_no_cross_attention():
    torch.manual_seed(0)
    layer = GatedCrossAttention(16, 4)
    with torch.no_grad():
        layer.attn_gate.fill_(1.0)
        layer.ff_gate.fill_(1.0)
    y, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [False] * 5])
    out = layer(y, memory, mask)
    assert torch.equal(out[1], y[1]) and not torch.allclose(out[0], y[0])
    assert torch.equal(layer(y, memory, torch.zeros(2, 5, dtype=torch.bool)), y)
    assert torch.equal(layer(y, memory[:, :0]), y)


def test_memory_scale_does_not_flatten_the_attention():
    """The memory is normalised before keys and values: a tower whose projected states are 20x smaller (as
    a fresh ReLU-MLP projection makes them) is attended to exactly as sharply as an O(1) one."""
    torch.manual_seed(0)
    layer = GatedCrossAttention(16, 4)
    with torch.no_grad():
        layer.attn_gate.fill_(1.0)
    y, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    assert torch.allclose(layer(y, memory * 0.05), layer(y, memory), atol=1e-2)
    raw = GatedCrossAttention(16, 4, memory_norm=False)
    raw.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("memory_norm")})
    assert not torch.allclose(raw(y, memory * 0.05), raw(y, memory), atol=1e-2)  # without it, it would


def test_residual_dropout_acts_in_training_only():
    """`residual_dropout` drops what the attention and feed-forward branches add to y while training; in
    evaluation the layer computes exactly what it computes without the option."""
    torch.manual_seed(0)
    plain = GatedCrossAttention(16, 4)
    with torch.no_grad():
        plain.attn_gate.fill_(1.0)
        plain.ff_gate.fill_(1.0)
    dropped = GatedCrossAttention(16, 4, residual_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    y, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    plain.eval(), dropped.eval()
    assert torch.equal(dropped(y, memory), plain(y, memory))
    dropped.train()
    torch.manual_seed(1)
    out = dropped(y, memory)
    assert not torch.allclose(out, plain(y, memory))
    torch.manual_seed(1)
    assert torch.equal(dropped(y, memory), out)  # the noise is the dropout's, seeded


def naive_greedy(model: ZipperModel, inputs, modality: str, bos: int, eos: int, allowed, max_len: int):
    """Recompute the whole forward at every step (no cache) and take the argmax."""
    out = [[] for _ in range(inputs[0].tokens.shape[0])]
    for row in range(len(out)):
        one = [Segment(s.modality, s.tokens[row:row + 1, :int(s.lengths[row])], s.lengths[row:row + 1])
               for s in inputs]
        tokens = [bos]
        for _ in range(max_len):
            seg = Segment(modality, torch.tensor([tokens]), torch.tensor([len(tokens)]))
            logits = model.forward_segments(one + [seg])[-1].logits[0, -1].masked_fill(~allowed, float("-inf"))
            nxt = int(logits.argmax())
            if nxt == eos:
                break
            tokens.append(nxt)
        out[row] = tokens[1:]
    return out


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("task", ["asr", "tts"])
def test_cached_decoding_gives_the_same_tokens_as_uncached(task, rotary):
    model = zipper(seed=3, cross_rotary=rotary).eval()
    if rotary:
        model.set_position_scale({"text": 2.5})
    open_gates(model, 0.5)
    speech, text = batch(seed=4)
    inputs, modality = ([speech], "text") if task == "asr" else ([text], "speech")
    vocab = model.towers[modality].vocab_size
    allowed = allowed_tokens(vocab, NUM_SPECIAL, vocab, [EOS], "cpu")
    configs = {modality: SearchConfig(method="greedy", max_len=8)}
    cached = decode_zipper(model, inputs, [modality], configs, {modality: allowed}, {modality: BOS},
                           {modality: EOS})[modality]
    assert cached == naive_greedy(model, inputs, modality, BOS, EOS, allowed, 8)
    assert any(len(h) > 0 for h in cached)


def test_beam_of_one_equals_greedy_and_chained_outputs_decode():
    model = zipper(seed=5).eval()
    open_gates(model, 0.5)
    speech, _ = batch(seed=6)
    allowed = {m: allowed_tokens(t.vocab_size, NUM_SPECIAL, t.vocab_size, [EOS], "cpu")
               for m, t in model.towers.items()}
    ids = {"text": BOS, "speech": BOS}
    ends = {"text": EOS, "speech": EOS}
    greedy = decode_zipper(model, [speech], ["text"], {"text": SearchConfig("greedy", max_len=6)}, allowed, ids, ends)
    beam1 = decode_zipper(model, [speech], ["text"], {"text": SearchConfig("beam", beam_size=1, max_len=6)}, allowed,
                          ids, ends)
    assert greedy == beam1
    chained = decode_zipper(model, [speech], ["text", "speech"],
                            {"text": SearchConfig("greedy", max_len=5), "speech": SearchConfig("sample", max_len=5,
                                                                                             nbest=2)},
                            allowed, ids, ends)
    assert chained["text"] == decode_zipper(model, [speech], ["text"], {"text": SearchConfig("greedy", max_len=5)},
                                            allowed, ids, ends)["text"]
    assert len(chained["speech"]) == 4  # 2 inputs x 2 samples


@pytest.mark.parametrize("freeze", [("text",), ("text", "speech")])
def test_frozen_towers_do_not_move_and_the_rest_does(freeze):
    model = zipper(freeze=freeze).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    speech, text = batch()
    for task in ("asr", "tts") * 3:  # gates start at 0: what they scale gets gradients from the 2nd step on
        loss, stats, weight = model(task, speech.tokens, speech.lengths, text.tokens, text.lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert f"{task}_loss" in stats and int(weight) > 0
    after = model.state_dict()
    for name, value in after.items():
        tower = name.split(".")[1] if name.startswith("towers.") else None
        if tower in freeze:
            assert torch.equal(value, before[name]), name
    for name in ("cross.text.0.attn_gate", "cross.speech.1.ff_gate", "input_proj.text.gate",
                 "proj.text<-speech.0.net.0.weight"):
        assert not torch.equal(after[name], before[name]), name
    speech_moved = any(not torch.equal(after[k], before[k]) for k in after if k.startswith("towers.speech."))
    assert speech_moved == ("speech" not in freeze)
    # model files leave the frozen towers out, and load back
    state = model.checkpoint_state_dict()
    assert not any(k.startswith(tuple(f"towers.{m}." for m in freeze)) for k in state)
    fresh = zipper(freeze=freeze)
    fresh.load_checkpoint_state_dict(state)
    assert torch.equal(fresh.state_dict()["cross.text.0.attn_gate"], after["cross.text.0.attn_gate"])


class Tok:
    bos_id, eos_id, pad_id = BOS, EOS, PAD


def test_baseline_keeps_the_text_embeddings_and_masks_the_prompt():
    text, _ = towers()
    original = text.embed.weight.detach().clone()
    model = VocabExpansionModel(text, Tok(), n_units=12, init="mean", use_task_tags=True)
    assert model.vocab_size == 30 + 12 + 2 and model.tower.embed.weight.shape == (44, 32)
    assert torch.equal(model.tower.embed.weight[:30], original)
    x = torch.randint(NUM_SPECIAL, 30, (1, 5))
    assert model.tower(x).logits.shape == (1, 5, 44)  # the tied softmax covers the new tokens
    speech = torch.tensor([[BOS, 9, 10, 11, EOS]])
    text_row = torch.tensor([[BOS, 12, 13, EOS]])
    tokens, lengths, prompts = model.build("asr", speech, torch.tensor([5]), text_row, torch.tensor([4]))
    from zipper.tokens.token_list import ASR
    assert tokens[0].tolist() == [BOS, ASR, 42, 31, 32, 33, 43, 12, 13, EOS] and int(prompts[0]) == 7
    tokens, _, prompts = model.build("tts", speech, torch.tensor([5]), text_row, torch.tensor([4]))
    assert tokens[0].tolist()[int(prompts[0]):] == [31, 32, 33, 43]
    loss, stats, weight = model("asr", speech, torch.tensor([5]), text_row, torch.tensor([4]))
    assert int(weight) == 3  # t1, t2, <eos>


def test_baseline_decodes_within_its_modality():
    text, _ = towers(seed=7)
    model = VocabExpansionModel(text, Tok(), n_units=12).eval()
    speech = [torch.tensor([BOS, 9, 10, 11, 12, EOS]), torch.tensor([BOS, 13, EOS])]
    hyps = decode_vocab_expansion(model, "asr", speech, SearchConfig("greedy", max_len=5))
    assert all(NUM_SPECIAL <= t < 30 for h in hyps for t in h)
    texts = [torch.tensor([BOS, 14, 15, EOS]), torch.tensor([BOS, 16, EOS])]
    units = decode_vocab_expansion(model, "tts", texts, SearchConfig("sample", max_len=6, nbest=2))
    assert len(units) == 4 and all(0 <= u < 12 for h in units for u in h)
    # left-padded batch decoding equals decoding each row alone
    alone = [decode_vocab_expansion(model, "asr", [s], SearchConfig("greedy", max_len=5))[0] for s in speech]
    assert hyps == alone


def test_baseline_beams_share_the_prompt_cache(monkeypatch):
    from zipper.models.tower import KVCache

    text, _ = towers(seed=7)
    model = VocabExpansionModel(text, Tok(), n_units=12).eval()
    speech = [torch.tensor([BOS, 9, 10, 11, 12, 13, 14, EOS]), torch.tensor([BOS, 13, 9, EOS])]
    beam = SearchConfig("beam", beam_size=3, max_len=6)
    starts = []
    full_reorder = KVCache.reorder

    def spy(self, index, start=0):
        starts.append(start)
        return full_reorder(self, index, start)

    monkeypatch.setattr(KVCache, "reorder", spy)
    shared = decode_vocab_expansion(model, "asr", speech, beam)
    longest = max(len(model.asr_prompt(r)) for r in speech)
    assert starts[0] == 0 and set(starts[1:]) == {longest}  # replicate rows once, then skip the (padded) prompt
    monkeypatch.setattr(KVCache, "reorder", lambda self, index, start=0: full_reorder(self, index))
    assert decode_vocab_expansion(model, "asr", speech, beam) == shared


def test_zipper_with_a_hugging_face_text_tower():
    transformers = pytest.importorskip("transformers")
    from zipper.models.hf_tower import HFTower

    torch.manual_seed(0)
    hf = HFTower(transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=40, n_embd=32, n_layer=4, n_head=4,
                                                                      bos_token_id=0, eos_token_id=1)))
    _, speech_tower = towers()
    model = ZipperModel({"text": hf, "speech": speech_tower}, {"text": 2, "speech": 3},
                        input_projection=["text"], freeze=["text"]).eval()
    speech, _ = batch()
    text = Segment("text", torch.randint(2, 40, (2, 5)), torch.tensor([5, 3]))
    out = model.forward_segments([speech, text])
    assert torch.equal(out[1].logits, hf(text.tokens).logits)
    open_gates(model)
    assert not torch.allclose(model.forward_segments([speech, text])[1].logits, out[1].logits)


def test_rotary_cross_attention_puts_both_modalities_on_one_axis():
    """cross_rotary: the cross-attention scores depend on where a query and a key sit (text token i at
    i x position_scale["text"] speech frames); it still sees no later token, and the scale is in the model file."""
    model = zipper(cross_rotary=True).eval()
    open_gates(model)
    speech, text = batch()
    plain = model.forward_segments([speech, text])[1].logits
    model.set_position_scale({"text": 3.0})
    scaled = model.forward_segments([speech, text])[1].logits
    assert not torch.allclose(plain, scaled)  # the same tokens, other positions: other attention
    other_text = Segment("text", torch.randint(NUM_SPECIAL, 30, (2, 6)), text.lengths)
    assert torch.equal(model.forward_segments([speech, other_text])[0].logits,
                       model.forward_segments([speech, text])[0].logits)
    again = zipper(cross_rotary=True).eval()
    again.load_checkpoint_state_dict(model.checkpoint_state_dict())
    assert float(again.position_scale[0]) == 3.0
    assert torch.equal(again.forward_segments([speech, text])[1].logits, scaled)
    with pytest.raises(ValueError, match="must be positive"):
        model.set_position_scale({"text": 0.0})


def test_rotary_keys_and_queries_prefer_the_diagonal_without_content():
    """With identical content everywhere, a rotary layer still attends most to the key at its own position."""
    torch.manual_seed(0)
    layer = GatedCrossAttention(16, 1, rotary=True, rope_theta=100.0)
    with torch.no_grad():
        layer.q.weight.copy_(torch.eye(16) * 4)
        layer.kv.weight.copy_(torch.cat([torch.eye(16) * 4, torch.eye(16)]))
    layer.keep_probs = True
    same = torch.ones(1, 6, 16)
    prepared = layer.prepare(layer.memory_kv(same, torch.arange(6.0)))
    layer(same, prepared=prepared, positions=torch.arange(6.0))
    assert torch.equal(layer.last_probs[0, 0].argmax(dim=-1), torch.arange(6))
