"""A fused model must be seen to learn from the other modality, not only to lower its loss.

A debug-size Zipper (and the baseline) learns eight ASR + TTS pairs whose targets only the other modality can
tell apart; its audio gain (loss on mismatched pairs minus loss on matched pairs, zipper.models.audio_gain) must
then be clearly positive.  The same training with the cross-attention output zeroed by hand must leave the gain
at zero: "trains but learns nothing" cannot land unseen.
"""

from __future__ import annotations

import pytest
import torch

from zipper.models.gated_cross_attention import GatedCrossAttention
from zipper.models.lm import TowerLM
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.models.vocab_expansion import VocabExpansionModel
from zipper.models.zipper import ZipperModel
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL, PAD

N_PAIRS, LENGTH, N_WORDS = 32, 6, 8
TEXT_VOCAB = SPEECH_VOCAB = NUM_SPECIAL + N_WORDS


def pairs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random (speech, text) pairs where text word i is a fixed function of speech unit i, as in read speech: the
    text alone says nothing of its next word (it is random), the speech says all of it, in order."""
    words_of_unit = torch.randperm(N_WORDS, generator=torch.Generator().manual_seed(99)) + NUM_SPECIAL
    g = torch.Generator().manual_seed(seed)  # unit k is read as word words_of_unit[k], the same in every draw
    units = torch.randint(0, N_WORDS, (N_PAIRS, LENGTH), generator=g)
    frame = (lambda x: torch.cat([torch.full((N_PAIRS, 1), BOS), x, torch.full((N_PAIRS, 1), EOS)], dim=1))
    lengths = torch.full((N_PAIRS,), LENGTH + 2)
    return {"speech": frame(units + NUM_SPECIAL), "speech_lengths": lengths, "text": frame(words_of_unit[units]),
            "text_lengths": lengths}


def pretrained_tower(vocab: int, tokens: torch.Tensor, lengths: torch.Tensor, steps: int = 60) -> DecoderTower:
    """A tower pre-trained on its own modality of the pairs alone (the paper's unpaired pre-training in small):
    it learns the sequences' shape, but not which one follows - that takes the other modality."""
    tower = DecoderTower(TowerConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, dropout=0.0))
    lm = TowerLM(tower)
    optimizer = torch.optim.Adam(lm.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = lm(tokens, lengths)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tower


def fused(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    batch = pairs(seed=1)  # unpaired pre-training data: other sentences than the aligned pairs
    text = pretrained_tower(TEXT_VOCAB, batch["text"], batch["text_lengths"])
    if kind == "baseline":
        tokenizer = type("Tok", (), {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD})()
        return VocabExpansionModel(text, tokenizer, n_units=SPEECH_VOCAB - NUM_SPECIAL)
    speech = pretrained_tower(SPEECH_VOCAB, batch["speech"], batch["speech_lengths"])
    return ZipperModel({"text": text, "speech": speech}, {"text": 1, "speech": 1}, cross_heads=4,
                       projection="linear", input_projection=["text", "speech"], freeze=["text"],
                       gate_lr_scale=10.0)


def train_and_measure(model: torch.nn.Module, steps: int = 120) -> dict[str, float]:
    """Adam on both tasks of the eight pairs; then the validation statistics of each task, gains included."""
    batch = pairs()
    groups = (model.optimizer_groups(3e-3) if hasattr(model, "optimizer_groups")
              else [{"params": [p for p in model.parameters() if p.requires_grad]}])
    optimizer = torch.optim.Adam(groups, lr=3e-3)
    model.train()
    for _ in range(steps):
        for task in ("asr", "tts"):
            loss, _, _ = model(task, **batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    stats: dict[str, float] = {}
    with torch.no_grad():
        for task in ("asr", "tts"):
            stats.update({k: float(v) for k, v in model(task, **batch, measure_gain=True)[1].items()
                          if k.startswith(task)})
    return stats


def zero_cross_attention(monkeypatch) -> None:
    """Fusion that passes nothing: every gated cross-attention layer returns its input."""
    monkeypatch.setattr(GatedCrossAttention, "forward", lambda self, y, *a, **kw: y)


@pytest.mark.parametrize("kind", ["zipper", "baseline"])
def test_fused_model_learns_to_use_the_other_modality(kind):
    stats = train_and_measure(fused(kind))
    for task in ("asr", "tts"):
        assert stats[f"{task}_acc"] > 0.9 and stats[f"{task}_loss"] < 1.0, stats  # it learned the pairs ...
        assert stats[f"{task}_gain"] > 0.5, stats  # ... from the other modality (chance: ln 8 = 2.08 nats)
        assert stats[f"{task}_loss_mismatched"] == pytest.approx(stats[f"{task}_loss"] + stats[f"{task}_gain"])


def test_zipper_with_zeroed_cross_attention_shows_no_gain(monkeypatch):
    zero_cross_attention(monkeypatch)
    stats = train_and_measure(fused("zipper"))
    for task in ("asr", "tts"):
        assert abs(stats[f"{task}_gain"]) < 1e-6, stats  # the check above would fail
    assert stats["asr_loss"] > 1.5, stats  # the frozen text tower cannot learn the words without the speech


@pytest.mark.parametrize("kind", ["zipper", "baseline"])
def test_mismatched_loss_is_that_of_the_rolled_batch_scored_on_its_own(kind):
    """The mismatched pass must see nothing of the matched one (the Zipper once reused its memory, so the
    text still attended to its own speech and the gain read ~0)."""
    from zipper.models.audio_gain import roll_condition

    model = fused(kind).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(1.0)  # open gates: the other modality now moves the loss
        batch = pairs()
        for task in ("asr", "tts"):
            stats = model(task, **batch, measure_gain=True)[1]
            keys = ("speech", "speech_lengths", "text", "text_lengths")
            rolled = dict(zip(keys, roll_condition(task, *(batch[k] for k in keys))))
            alone = model(task, **rolled)[1]["loss"]
            assert float(stats[f"{task}_loss_mismatched"]) == pytest.approx(float(alone), rel=1e-5)
            assert abs(float(stats[f"{task}_gain"])) > 1e-3  # the check means something


def test_gain_is_zero_for_a_batch_of_one():
    model = fused("zipper").eval()
    batch = {k: v[:1] for k, v in pairs().items()}
    stats = model("asr", **batch, measure_gain=True)[1]
    assert "asr_gain" not in stats  # a single row has no other row to be mismatched with


def test_ctc_aid_trains_on_its_weighted_loss_and_reports_the_next_token_loss():
    text, speech = fused("zipper").towers.values()
    model = ZipperModel({"text": text, "speech": speech}, {"text": 1, "speech": 1}, cross_heads=4,
                        projection="linear", freeze=["text"], ctc_weight=0.5).eval()
    batch = pairs()
    trained, stats, _ = model("asr", **batch)
    assert float(trained) == pytest.approx(float(stats["loss"]) + 0.5 * float(stats["asr_ctc"]))
    assert stats["asr_ctc"] > 0 and "ctc.ctc_lo.weight" in model.checkpoint_state_dict()
    trained, stats, _ = model("tts", **batch)  # TTS batches: no CTC (the speech follows the text there)
    assert float(trained) == float(stats["loss"]) and "asr_ctc" not in stats


def test_the_baseline_gets_the_same_ctc_aid_on_its_speech_positions():
    text = fused("baseline").tower
    tokenizer = type("Tok", (), {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD})()
    model = VocabExpansionModel(text, tokenizer, n_units=SPEECH_VOCAB - NUM_SPECIAL, ctc_weight=0.5).eval()
    batch = pairs()
    trained, stats, _ = model("asr", **batch)
    assert float(trained) == pytest.approx(float(stats["loss"]) + 0.5 * float(stats["asr_ctc"]))
    # the CTC head reads the decoder's states at <boa> u1 .. um <eoa>: as many as the speech rows' tokens
    tokens = model.build("asr", **batch)[0]
    states = model.speech_states(model.tower(tokens[:, :-1]).last_hidden, batch["speech_lengths"])
    assert states.shape[1] == LENGTH + 2
    loss, _ = model.ctc_loss(states, batch["speech_lengths"], batch["text"], batch["text_lengths"])
    assert float(loss) == pytest.approx(0.5 * float(stats["asr_ctc"]), rel=1e-5)
    trained, stats, _ = model("tts", **batch)
    assert float(trained) == float(stats["loss"]) and "asr_ctc" not in stats


def test_guided_attention_aid_is_a_training_loss_on_the_output_towers_attention():
    text, speech = fused("zipper").towers.values()
    model = ZipperModel({"text": text, "speech": speech}, {"text": 1, "speech": 1}, cross_heads=4,
                        projection="linear", freeze=["text"], guided_attention_weight=2.0)
    batch = pairs()
    for task in ("asr", "tts"):
        trained, stats, _ = model.train()(task, **batch)
        assert 0 < float(stats[f"{task}_guided"]) < 1
        assert float(trained) == pytest.approx(float(stats["loss"]) + 2.0 * float(stats[f"{task}_guided"]))
        _, stats, _ = model.eval()(task, **batch)
        assert f"{task}_guided" not in stats  # validation and decoding use the fused kernel, no weights kept
    # the weights it sees are those the layer computed: the same output as the fused kernel's
    layer = model.cross["text"][0]
    y, memory = torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    with torch.no_grad():
        layer.attn_gate.fill_(1.0)
    layer.eval().keep_probs = False
    fused_out = layer(y, memory)
    layer.keep_probs = True
    assert torch.allclose(layer(y, memory), fused_out, atol=1e-5) and layer.last_probs.shape == (2, 4, 3, 5)
