"""Joint CTC/attention scoring of a beam search's text hypotheses (ESPnet's hybrid decoding, Watanabe et al. 2017).

A model trained with the auxiliary CTC head (`ctc_weight` in the Zipper preset) can also score, at every step,
how well each hypothesis' prefix fits the whole utterance under CTC: score = (1 - w) x attention + w x CTC.  The
CTC prefix score punishes what attention decoders do when they lose their place (words dropped, repeated, or an
end before the audio ends).  The prefix probabilities come from ESPnet's vectorised `CTCPrefixScoreTH`; this
module only feeds it our beam search's layout (rows b * k + j, flat candidate ids over (k, V) per input).
"""

from __future__ import annotations

from typing import Optional

import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScoreTH


class CTCPrefixScorer:
    """Per-step CTC prefix scores over the whole vocabulary for the rows of a batched beam search.

    log_probs (B, T, V): per input, the CTC head's log-posteriors over the output vocabulary (blank included);
    lengths (B,): real frames per input; vocab: the search's vocabulary when larger than the CTC head's (the
    baseline's text ids come first in its expanded vocabulary; the rest scores -inf); max_len: the longest
    hypothesis the search may make (a prefix longer than the input has probability 0, but must still be scored).
    The search calls `scores(history)` before each pruning, then `select(flat)` with what it kept."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int, vocab: int = 0,
                 max_len: int = 0):
        b, t, o = log_probs.shape
        if t < max_len + 1:  # ESPnet's scorer cannot extend a prefix longer than the input; it makes every frame
            # past an input's length blank for sure, which changes no probability (an input's end is lengths - 1)
            log_probs = torch.cat([log_probs, log_probs.new_zeros(b, max_len + 1 - t, o)], dim=1)
        self.scorer = CTCPrefixScoreTH(log_probs.float().clone(), lengths, blank, eos)
        self.odim = log_probs.shape[-1]
        self.vocab = max(vocab, self.odim)
        self.blank = blank
        self.state: Optional[tuple] = None
        self.pending: Optional[tuple] = None

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """history (N, t): each row's generated ids (N = B before the first pruning, B * k after it) -> (N, V),
        the log CTC probability each next token adds to the row's prefix (eos: that the prefix is all)."""
        # the scorer reads only each prefix's length and last id; blank stands for <sos> (never a next token)
        # (ids beyond the head's, only ever picked by rows already dead, read as blank too)
        history = history.masked_fill(history >= self.odim, self.blank)
        prefixes = [[self.blank] + row for row in history.tolist()]
        increments, self.pending = self.scorer(prefixes, self.state)
        if self.vocab > self.odim:
            increments = torch.cat([increments, increments.new_full((increments.shape[0], self.vocab - self.odim),
                                                                    float("-inf"))], dim=1)
        return increments

    def select(self, flat: torch.Tensor) -> None:
        """flat (B, k): the kept candidates, ids over (rows of an input) x V as the beam search ranks them."""
        r, log_psi, f_min, f_max, idmap = self.pending  # r (T, 2, N, V), log_psi (N, V)
        if self.vocab > self.odim:  # ids over (rows, vocab) -> over (rows, the head's odim)
            flat = flat // self.vocab * self.odim + (flat % self.vocab).clamp(max=self.odim - 1)
        k = flat.shape[1]
        if self.state is None and k > 1:
            # the first pruning turns one row per input into k: copy each input's row so that the scorer (which
            # keeps its row count) sees k rows per input; the kept ids (< V) all point at the first copy
            r, log_psi = r.repeat_interleave(k, dim=2), log_psi.repeat_interleave(k, dim=0)
        self.state = self.scorer.index_select_state((r, log_psi, f_min, f_max, idmap), flat)
        self.pending = None
