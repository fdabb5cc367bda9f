"""Search limits: how long a hypothesis may grow."""

from __future__ import annotations

import pytest
import torch

from zipper.inference.search import SearchConfig, run_search

EOS, V = 2, 8


class NeverEnds:
    """A decoder that always prefers token 4 and never the end."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(tokens.shape[0], V)
        logits[:, 4] = 5.0
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        pass


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_max_len_ratio_bounds_each_hypothesis_by_its_input(method):
    first = NeverEnds().step(torch.zeros(2, 1, dtype=torch.long))
    config = SearchConfig(method=method, beam_size=2, max_len=40, max_len_ratio=0.5)
    hyps = run_search(NeverEnds(), first, EOS, config, input_lengths=[10, 20])
    # ESPnet's maxlenratio: at most ceil(0.5 x input) + 5 tokens; greedy steps the batch to the longest row's limit
    assert [len(h) for h in hyps] == ([10, 15] if method == "beam" else [15, 15])
    assert [len(h) for h in run_search(NeverEnds(), first, EOS, SearchConfig(method=method, max_len=40))] == [40, 40]
