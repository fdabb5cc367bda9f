"""The speed paths compute what the plain paths compute: static-cache steps, uncached baselines, end checks every
n steps, prepared cross-attention memory; and the hot paths trace as one graph (no host-device sync inside)."""

from __future__ import annotations

import pytest
import torch

from zipper.inference.decoders import TowerDecoder, ZipperDecoder, decode_zipper
from zipper.inference.graphs import StepRunner
from zipper.inference.search import SearchConfig, greedy, sample
from zipper.models.lm import TowerLM
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.models.zipper import Segment, ZipperModel
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL


def tower(seed=0, vocab=40):
    torch.manual_seed(seed)
    return DecoderTower(TowerConfig(vocab_size=vocab, d_model=32, n_layers=3, n_heads=4)).eval()


def zipper(seed=0) -> ZipperModel:
    torch.manual_seed(seed)
    text = DecoderTower(TowerConfig(vocab_size=30, d_model=32, n_layers=4, n_heads=4))
    speech = DecoderTower(TowerConfig(vocab_size=20, d_model=24, n_layers=6, n_heads=4))
    model = ZipperModel({"text": text, "speech": speech}, {"text": 2, "speech": 3}, cross_heads=4,
                        input_projection=["text", "speech"], freeze=["text"]).eval()
    with torch.no_grad():  # open the gates so that cross-attention matters
        for layers in model.cross.values():
            for layer in layers:
                layer.attn_gate.fill_(0.7)
                layer.ff_gate.fill_(0.7)
    return model


def forced_logits(decoder, first: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logits of every step when the given tokens (B, N) are fed."""
    out = [first]
    for i in range(tokens.shape[1]):
        out.append(decoder.step(tokens[:, i:i + 1]))
    return torch.stack(out, dim=1)


@torch.no_grad()
def test_static_cache_steps_equal_the_growing_cache_and_no_cache():
    model = tower()
    prompts = torch.randint(0, 40, (3, 5))
    feed = torch.randint(0, 40, (3, 6))
    results = {}
    for name, kw in {"dynamic": {}, "static": {"step_mode": "eager"}, "uncached": {"cache": False}}.items():
        decoder = TowerDecoder(model, prompts, max_new=6, **kw)
        results[name] = forced_logits(decoder, decoder.first_logits, feed)
    torch.testing.assert_close(results["static"], results["dynamic"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results["uncached"], results["dynamic"], atol=1e-5, rtol=1e-5)
    full = model(torch.cat([prompts, feed], dim=1)).logits[:, 4:]
    torch.testing.assert_close(results["static"], full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_static_cache_follows_beams():
    model = tower()
    prompts = torch.randint(0, 40, (2, 4))
    a, b = TowerDecoder(model, prompts, 4), TowerDecoder(model, prompts, 4, step_mode="eager")
    for decoder in (a, b):
        decoder.step(torch.tensor([[3], [5]]))
        decoder.reorder(torch.tensor([1, 1, 0]))  # rows replicated: the batch grows
    torch.testing.assert_close(b.step(torch.tensor([[7], [8], [9]])), a.step(torch.tensor([[7], [8], [9]])),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("step_mode", ["dynamic", "eager"])
def test_zipper_decoding_with_and_without_caches_agrees(step_mode):
    model = zipper()
    g = torch.Generator().manual_seed(3)
    speech = Segment("speech", torch.randint(NUM_SPECIAL, 20, (2, 9), generator=g), torch.tensor([9, 6]))
    allowed = torch.ones(30, dtype=torch.bool)
    allowed[:NUM_SPECIAL] = False
    allowed[EOS] = True
    args = ([speech], ["text"], {"text": SearchConfig("greedy", max_len=7)}, {"text": allowed}, {"text": BOS},
            {"text": EOS})
    cached = decode_zipper(model, *args, step_mode=step_mode)
    assert cached == decode_zipper(model, *args, cache=False)
    assert cached == decode_zipper(model, *args)  # the default, growing cache
    beams = {"text": SearchConfig("beam", beam_size=3, max_len=5)}
    assert (decode_zipper(model, *args[:2], beams, *args[3:], step_mode=step_mode)
            == decode_zipper(model, *args[:2], beams, *args[3:]))


def test_end_checks_every_n_steps_give_the_same_tokens():
    class Fixed:  # row 0 ends at step 2, row 1 at step 4
        def __init__(self):
            self.t = 0

        def step(self, tokens):
            self.t += 1
            logits = torch.zeros(2, 6)
            logits[0, EOS if self.t >= 2 else 4] = 1
            logits[1, EOS if self.t >= 4 else 5] = 1
            return logits

        def reorder(self, index):
            pass

    first = torch.zeros(2, 6)
    first[:, 4] = 1
    expected = [[4, 4], [4, 5, 5, 5]]
    for every in (1, 3, 8):
        assert greedy(Fixed(), first, EOS, 20, stop_check_every=every) == expected
        config = SearchConfig("sample", max_len=20, temperature=1e-6, stop_check_every=every)
        assert sample(Fixed(), first, EOS, config) == expected


def test_hot_paths_trace_as_one_graph():
    """fullgraph=True fails on a graph break, which any .item()/int(tensor)/.tolist() inside would cause."""
    model = tower()
    lm = TowerLM(model).train()
    tokens = torch.randint(0, 40, (2, 9))
    compiled = torch.compile(lm, backend="eager", fullgraph=True)
    compiled(tokens, torch.tensor([9, 7]))[0].backward()
    with torch.no_grad():
        decoder = TowerDecoder(model.eval(), tokens, 3, step_mode="eager")
        step = torch.compile(decoder._static_step, backend="eager", fullgraph=True)
        step(tokens[:, :1], decoder.slot)
        fused = zipper()
        memory = {}
        speech = Segment("speech", torch.randint(NUM_SPECIAL, 20, (2, 5)), torch.tensor([5, 3]))
        _, recorded = fused.run_segment(speech, memory, return_logits=False)
        fused.extend_memory(memory, speech, recorded)
        zdec = ZipperDecoder(fused, "text", memory, batch=2, max_len=4, step_mode="eager")
        torch.compile(zdec._static_step, backend="eager", fullgraph=True)(torch.full((2, 1), BOS), zdec.slot)


def test_step_runner_modes():
    with pytest.raises(ValueError, match="unknown step mode"):
        StepRunner(lambda t, s: t, "fast")
    runner = StepRunner(lambda t, s: t + s, "eager")
    assert torch.equal(runner(torch.ones(2, 1, dtype=torch.long), torch.tensor([2])), torch.full((2, 1), 3))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA device"):
            StepRunner(lambda t, s: t, "cuda_graph")(torch.ones(1, 1), torch.zeros(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@torch.no_grad()
def test_cuda_graph_steps_equal_eager_steps():
    model = tower().cuda()
    prompts = torch.randint(0, 40, (2, 5), device="cuda")
    feed = torch.randint(0, 40, (2, 6), device="cuda")
    eager = TowerDecoder(model, prompts, 6, step_mode="eager")
    graph = TowerDecoder(model, prompts, 6, step_mode="cuda_graph")
    torch.testing.assert_close(forced_logits(graph, graph.first_logits, feed),
                               forced_logits(eager, eager.first_logits, feed), atol=1e-4, rtol=1e-4)
    assert graph.runner.captures == 1
