"""Search over any incremental decoder: greedy, beam, sampling (temperature / top-k / top-p), batched.

A decoder has consumed its prompt and offers `step(tokens (B, 1)) -> logits (B, V)` for the next position and
`reorder(index)` to follow beams or replicate rows; `first_logits` are the logits of the first token to
generate.  `allowed` (V,) bool restricts what may be generated (no <pad>, no other modality's tokens); a
`constraint` maps each row's generated ids (N, t) to what may follow them, (N, V') with V' <= V (a lexicon:
zipper/inference/lexicon.py).
Rows that reached `eos` keep being fed `eos` (their outputs are ignored) so that a batch steps together.
Greedy and sampling ask the device whether every row has ended (a host-device sync) only every
`stop_check_every` steps; the tokens are the same whatever the interval, a few steps may be wasted at the end.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Protocol, Sequence

import torch


class IncrementalDecoder(Protocol):
    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, index: torch.Tensor) -> None: ...


@dataclasses.dataclass
class SearchConfig:
    method: str = "greedy"  # greedy | beam | sample
    beam_size: int = 4
    length_penalty: float = 0.0  # beam: score / length ** penalty
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    nbest: int = 1  # sample: samples per input
    max_len: int = 256
    seed: int = 0
    stop_check_every: int = 0  # greedy/sample: steps between end checks (0: 1 on CPU, 8 on an accelerator)
    lexicon: str = ""  # text: a Kaldi text file whose words are the only ones the search may spell ("": any)
    max_len_ratio: float = 0.0  # at most ratio x the input's length + 5 tokens (ESPnet's maxlenratio; 0: max_len)
    ctc_weight: float = 0.0  # beam: (1 - w) x attention + w x the model's CTC prefix score (ESPnet's ctc_weight)


Constraint = Callable[[torch.Tensor], torch.Tensor]  # generated ids (N, t) -> allowed next ids (N, V' <= V)


class PrefixScorer(Protocol):
    """A second opinion on each next token given the whole input (zipper.inference.ctc_prefix)."""

    def scores(self, history: torch.Tensor) -> torch.Tensor: ...  # (N, t) -> (N, V) log-probability increments

    def select(self, flat: torch.Tensor) -> None: ...  # (B, k) the kept candidates, ids over (rows, V)


def check_interval(every: int, device: torch.device) -> int:
    """On a CPU a check costs nothing; on a GPU it stalls the host until the device has caught up."""
    return every if every > 0 else (1 if device.type == "cpu" else 8)


def restrict(logits: torch.Tensor, allowed: Optional[torch.Tensor], constraint: Optional[Constraint] = None,
             history: Optional[torch.Tensor] = None) -> torch.Tensor:
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    if constraint is not None:
        if history is None:
            history = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)
        ok = constraint(history)  # (N, V')
        if ok.shape[1] < logits.shape[1]:
            ok = torch.cat([ok, ok.new_zeros(ok.shape[0], logits.shape[1] - ok.shape[1])], dim=1)
        logits = logits.masked_fill(~ok, float("-inf"))
    return logits


def trim(row: list[int], eos: int) -> list[int]:
    return row[:row.index(eos)] if eos in row else row


def greedy(decoder: IncrementalDecoder, first_logits: torch.Tensor, eos: int, max_len: int,
           allowed: Optional[torch.Tensor] = None, stop_check_every: int = 0,
           constraint: Optional[Constraint] = None) -> list[list[int]]:
    logits = restrict(first_logits, allowed, constraint)
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    every = check_interval(stop_check_every, logits.device)
    out = []
    for step in range(max_len):
        token = logits.argmax(dim=-1).masked_fill(done, eos)  # (B,)
        out.append(token)
        done |= token == eos
        if step == max_len - 1 or ((step + 1) % every == 0 and bool(done.all())):
            break
        logits = restrict(decoder.step(token[:, None]), allowed, constraint, torch.stack(out, dim=1))
    tokens = torch.stack(out, dim=1).tolist()
    return [trim(row, eos) for row in tokens]


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


def sample(decoder: IncrementalDecoder, first_logits: torch.Tensor, eos: int, config: SearchConfig,
           allowed: Optional[torch.Tensor] = None, constraint: Optional[Constraint] = None) -> list[list[int]]:
    """One sample per row (replicate rows beforehand for several samples per input)."""
    generator = torch.Generator(device=first_logits.device).manual_seed(config.seed)
    logits = restrict(first_logits, allowed, constraint)
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    every = check_interval(config.stop_check_every, logits.device)
    out = []
    for step in range(config.max_len):
        probs = filter_logits(logits.float() / max(config.temperature, 1e-6), config.top_k, config.top_p).softmax(-1)
        token = torch.multinomial(probs, 1, generator=generator)[:, 0].masked_fill(done, eos)
        out.append(token)
        done |= token == eos
        if step == config.max_len - 1 or ((step + 1) % every == 0 and bool(done.all())):
            break
        logits = restrict(decoder.step(token[:, None]), allowed, constraint, torch.stack(out, dim=1))
    tokens = torch.stack(out, dim=1).tolist()
    return [trim(row, eos) for row in tokens]


def beam_search(decoder: IncrementalDecoder, first_logits: torch.Tensor, eos: int, config: SearchConfig,
                allowed: Optional[torch.Tensor] = None, constraint: Optional[Constraint] = None,
                limits: Optional[Sequence[int]] = None, prefix: Optional[PrefixScorer] = None) -> list[list[int]]:
    """Best hypothesis per row; the decoder's rows are expanded to B * beam (reorder) inside.

    limits: the most tokens per row (else config.max_len): a row stops there, taking its best ended hypothesis,
    or its best alive one if none ended.  Without them one row whose beams keep spelling holds up the batch.
    prefix: scores mixed in with weight config.ctc_weight before each pruning (joint CTC/attention decoding)."""
    b, v = first_logits.shape
    k = config.beam_size
    device = first_logits.device

    def joint(logp: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        logp = logp.masked_fill(logp.isnan(), float("-inf"))  # a row with nothing allowed: topk ranks NaN first
        if prefix is None:
            return logp
        return (1 - config.ctc_weight) * logp + config.ctc_weight * prefix.scores(history).to(logp)

    logp = joint(restrict(first_logits, allowed, constraint).float().log_softmax(-1),
                 first_logits.new_zeros(b, 0, dtype=torch.long))  # (B, V)
    scores, tokens = logp.topk(k, dim=-1)  # (B, k)
    if prefix is not None:
        prefix.select(tokens)
    decoder.reorder(torch.arange(b, device=device).repeat_interleave(k))
    history = tokens.reshape(b * k, 1)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    alive = scores.reshape(b * k)
    ended = history[:, 0] == eos

    def penalised(score: float, length: int) -> float:
        return score / (max(length, 1) ** config.length_penalty)

    for row in range(b * k):
        if bool(ended[row]):
            finished[row // k].append((penalised(float(alive[row]), 1), []))
    alive = alive.masked_fill(ended, float("-inf"))
    limits = [config.max_len] * b if limits is None else [min(n, config.max_len) for n in limits]
    for step in range(1, config.max_len):
        for i in range(b):
            if limits[i] == step:
                take_best_alive(finished[i], alive[i * k:(i + 1) * k], history[i * k:(i + 1) * k])
                alive[i * k:(i + 1) * k] = float("-inf")
            elif finished[i] and max(f[0] for f in finished[i]) >= penalised(float(alive[i * k:(i + 1) * k].max()),
                                                                             limits[i]):
                # log-probabilities only lower a sum: no alive beam can beat what ended, even at its longest
                alive[i * k:(i + 1) * k] = float("-inf")
        if all(len(f) >= k for f in finished) or bool(torch.isinf(alive).all()):
            break
        last = history[:, -1:].masked_fill(history[:, -1:] == eos, eos)
        logp = joint(restrict(decoder.step(last), allowed, constraint, history).float().log_softmax(-1),
                     history)  # (B*k, V)
        total = (alive[:, None] + logp).reshape(b, k * v)
        scores, flat = total.topk(k, dim=-1)  # (B, k)
        if prefix is not None:
            prefix.select(flat)
        parent = flat // v + (torch.arange(b, device=device) * k)[:, None]
        token = flat % v
        parent, token, scores = parent.reshape(-1), token.reshape(-1), scores.reshape(-1)
        decoder.reorder(parent)
        history = torch.cat([history[parent], token[:, None]], dim=1)
        ended = token == eos
        for row in torch.nonzero(ended & ~torch.isinf(scores)).flatten().tolist():
            finished[row // k].append((penalised(float(scores[row]), history.shape[1]), history[row, :-1].tolist()))
        alive = scores.masked_fill(ended, float("-inf"))
    results = []
    for i in range(b):
        take_best_alive(finished[i], alive[i * k:(i + 1) * k], history[i * k:(i + 1) * k])
        results.append(max(finished[i], key=lambda x: x[0])[1])
    return [trim(r, eos) for r in results]


def take_best_alive(finished: list[tuple[float, list[int]]], alive: torch.Tensor, history: torch.Tensor) -> None:
    """A row that must stop with nothing ended keeps its best alive hypothesis (alive (k,), history (k, t))."""
    if not finished and not bool(torch.isinf(alive).all()):
        finished.append((float(alive.max()), history[int(alive.argmax())].tolist()))


def run_search(decoder: IncrementalDecoder, first_logits: torch.Tensor, eos: int, config: SearchConfig,
               allowed: Optional[torch.Tensor] = None, constraint: Optional[Constraint] = None,
               input_lengths: Optional[Sequence[int]] = None, prefix: Optional[PrefixScorer] = None
               ) -> list[list[int]]:
    """input_lengths: per row, the length of what it is conditioned on (for config.max_len_ratio); prefix: the
    CTC prefix scorer when config.ctc_weight > 0 (beam search only)."""
    limits = None
    if config.max_len_ratio > 0 and input_lengths is not None:
        limits = [min(config.max_len, math.ceil(config.max_len_ratio * n) + 5) for n in input_lengths]
    if config.method == "beam":
        return beam_search(decoder, first_logits, eos, config, allowed, constraint, limits, prefix)
    if prefix is not None:
        raise ValueError(f"ctc_weight {config.ctc_weight}: joint CTC scoring needs method 'beam', not "
                         f"'{config.method}'")
    if limits:  # greedy and sampling step the batch together: the longest row's limit
        config = dataclasses.replace(config, max_len=max(limits))
    if config.method == "greedy":
        return greedy(decoder, first_logits, eos, config.max_len, allowed, config.stop_check_every, constraint)
    if config.method == "sample":
        return sample(decoder, first_logits, eos, config, allowed, constraint)
    raise ValueError(f"unknown search method '{config.method}' (greedy, beam, sample)")
