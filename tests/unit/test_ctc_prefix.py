"""Joint CTC/attention decoding: the prefix scores add up to CTC's own likelihood, and they steer a beam search."""

from __future__ import annotations

import pytest
import torch

from zipper.inference.ctc_prefix import CTCPrefixScorer
from zipper.inference.decoders import decode_vocab_expansion, decode_zipper
from zipper.inference.search import SearchConfig, run_search
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.models.vocab_expansion import VocabExpansionModel
from zipper.models.zipper import Segment, ZipperModel
from zipper.tokens.token_list import BOS, NUM_SPECIAL, PAD

BLANK, EOS, V = 0, 2, 8


def posteriors(spellings: list[list[int]], frames: int, sharp: float = 4.0, noise: float = 0.3) -> torch.Tensor:
    """(B, T, V) log-posteriors that mostly spell each row's tokens, separated by blanks, plus noise."""
    torch.manual_seed(0)
    logits = noise * torch.randn(len(spellings), frames, V)
    for b, tokens in enumerate(spellings):
        path = [t for token in tokens for t in (token, BLANK)]
        for i, token in enumerate(path):
            logits[b, i, token] += sharp
        logits[b, len(path):, BLANK] += sharp
    return logits.log_softmax(-1)


def test_increments_along_a_sequence_sum_to_the_ctc_log_likelihood():
    targets = [[3, 4, 4, 5], [6, 3]]
    log_probs = posteriors(targets, frames=12, sharp=1.0, noise=1.0)
    lengths = torch.tensor([12, 9])
    scorer = CTCPrefixScorer(log_probs, lengths, BLANK, EOS)
    history = torch.zeros(2, 0, dtype=torch.long)
    total = torch.zeros(2)
    for step in range(5):
        inc = scorer.scores(history)  # (2, V)
        nxt = torch.tensor([t[step] if step < len(t) else EOS for t in targets])
        done = torch.tensor([step > len(t) for t in targets])
        total += torch.where(done, torch.zeros(2), inc[torch.arange(2), nxt])
        scorer.select(nxt[:, None])
        history = torch.cat([history, nxt[:, None]], dim=1)
    padded = torch.tensor([[3, 4, 4, 5], [6, 3, 0, 0]])
    expected = -torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), padded, lengths, torch.tensor([4, 2]),
                                             blank=BLANK, reduction="none")
    assert torch.allclose(total, expected, atol=1e-3)


class UniformDecoder:
    """An attention decoder with no opinion: every token equally likely, at every step."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.zeros(tokens.shape[0], V)

    def reorder(self, index: torch.Tensor) -> None:
        pass


def test_the_ctc_prefix_score_steers_the_beam_to_what_the_audio_spells():
    targets = [[5, 3, 6], [4, 4, 7, 3]]
    log_probs = posteriors(targets, frames=14)
    allowed = torch.ones(V, dtype=torch.bool)
    allowed[BLANK] = False
    config = SearchConfig(method="beam", beam_size=3, max_len=10, ctc_weight=0.5)
    first = torch.zeros(2, V)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([14, 14]), BLANK, EOS)
    assert run_search(UniformDecoder(), first, EOS, config, allowed, prefix=scorer) == targets
    plain = run_search(UniformDecoder(), first, EOS, SearchConfig(method="beam", beam_size=3, max_len=10), allowed)
    assert plain != targets


def test_hypotheses_longer_than_the_input_are_scored_not_crashed_on():
    log_probs = posteriors([[5, 3], [4]], frames=4)  # 4 frames; the uniform decoder may spell up to 9 tokens
    scorer = CTCPrefixScorer(log_probs, torch.tensor([4, 3]), BLANK, EOS, max_len=9)
    config = SearchConfig(method="beam", beam_size=2, max_len=9, ctc_weight=0.5)
    allowed = torch.ones(V, dtype=torch.bool)
    allowed[BLANK] = False
    assert run_search(UniformDecoder(), torch.zeros(2, V), EOS, config, allowed, prefix=scorer) == [[5, 3], [4]]
    scorer = CTCPrefixScorer(log_probs[:1], torch.tensor([4]), BLANK, EOS, max_len=9)
    history = torch.zeros(1, 0, dtype=torch.long)
    total = 0.0
    for _ in range(7):  # a prefix of 7 tokens over 4 frames
        total += float(scorer.scores(history)[0, 3])
        scorer.select(torch.tensor([[3]]))
        history = torch.cat([history, torch.tensor([[3]])], dim=1)
    assert total < -1e6  # probability 0


def test_joint_scoring_is_refused_without_a_beam():
    scorer = CTCPrefixScorer(posteriors([[3]], frames=4), torch.tensor([4]), BLANK, EOS)
    with pytest.raises(ValueError, match="needs method 'beam'"):
        run_search(UniformDecoder(), torch.zeros(1, V), EOS, SearchConfig(ctc_weight=0.3), prefix=scorer)


def zipper(ctc_weight: float) -> ZipperModel:
    torch.manual_seed(0)
    text = DecoderTower(TowerConfig(vocab_size=V, d_model=16, n_layers=2, n_heads=2))
    speech = DecoderTower(TowerConfig(vocab_size=12, d_model=16, n_layers=2, n_heads=2))
    return ZipperModel({"text": text, "speech": speech}, {"text": 1, "speech": 1}, cross_heads=2,
                       ctc_weight=ctc_weight).eval()


def test_a_zipper_without_a_ctc_head_refuses_joint_decoding_by_name():
    speech = Segment("speech", torch.randint(3, 12, (2, 6)), torch.tensor([6, 4]))
    configs = {"text": SearchConfig(method="beam", beam_size=2, max_len=5, ctc_weight=0.3)}
    allowed = {"text": None}
    with pytest.raises(ValueError, match="auxiliary CTC head"):
        decode_zipper(zipper(0.0), [speech], ["text"], configs, allowed, {"text": 1}, {"text": EOS})
    hyps = decode_zipper(zipper(0.3), [speech], ["text"], configs, allowed, {"text": 1}, {"text": EOS})
    assert len(hyps["text"]) == 2 and all(len(h) <= 5 for h in hyps["text"])


def test_the_baselines_joint_decoding_reads_each_left_padded_prompt_as_if_alone():
    def baseline(ctc_weight: float) -> VocabExpansionModel:  # the expansion grows the tower: a new one each time
        torch.manual_seed(0)
        tower = DecoderTower(TowerConfig(vocab_size=16, d_model=16, n_layers=2, n_heads=2))
        tokenizer = type("Tok", (), {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD})()
        return VocabExpansionModel(tower, tokenizer, n_units=12, use_task_tags=True, ctc_weight=ctc_weight).eval()

    speech = [torch.tensor([BOS, 9, 10, 11, 12, 13, EOS]), torch.tensor([BOS, 13, 4, EOS])]
    config = SearchConfig(method="beam", beam_size=3, max_len=6, ctc_weight=0.5)
    with pytest.raises(ValueError, match="auxiliary CTC head"):
        decode_vocab_expansion(baseline(0.0), "asr", speech, config)
    model = baseline(0.3)
    torch.nn.init.normal_(model.ctc.ctc_lo.weight, std=2.0)  # an opinionated head, so that it steers the beam
    hyps = decode_vocab_expansion(model, "asr", speech, config)
    assert all(NUM_SPECIAL <= t < 16 for h in hyps for t in h)  # text ids only (no blank, no units)
    assert hyps == [decode_vocab_expansion(model, "asr", [s], config)[0] for s in speech]
    assert hyps != decode_vocab_expansion(model, "asr", speech, SearchConfig(method="beam", beam_size=3, max_len=6))


def test_one_decode_config_serves_models_without_a_ctc_head(caplog):
    from zipper.inference.api import with_usable_ctc

    configs = {"text": SearchConfig(method="beam", ctc_weight=0.5), "speech": SearchConfig()}
    assert with_usable_ctc(zipper(0.3), configs) is configs
    with caplog.at_level("WARNING"):
        used = with_usable_ctc(zipper(0.0), configs)
    assert used["text"].ctc_weight == 0.0 and used["text"].beam_size == configs["text"].beam_size
    assert "has no CTC head" in caplog.text

