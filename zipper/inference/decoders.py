"""Incremental decoders over the trained models, for zipper.inference.search.

ZipperDecoder: the input segments are run once (prefill); the output modality's tower then decodes with its
own KV cache, its cross-attention keys/values over the finished modalities computed once and reused at every
step.  Several output modalities in a row ([text, speech]) decode one after the other, each finished one
becoming memory for the next (`decode_zipper`).
VocabExpansionDecoder: the single decoder with a left-padded prompt and one KV cache.
TowerDecoder: one tower continuing a prompt (text-only continuation; the decoding benchmark).
ZipperRecomputeDecoder and TowerDecoder(cache=False): the same decoding without any cache, every step
recomputing the whole sequence - the baseline a cache is measured against (zipper.bin.benchmark, tests).

`step_mode` (zipper.inference.graphs.DECODE_STEPS) chooses how a cached step runs on our own towers: `dynamic`
(the cache grows by length) or over the static cache with fixed shapes - `eager`, `compile`, `cuda_graph`,
`compile+cuda_graph`.  Hugging Face towers always run `dynamic` (their own DynamicCache).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch

from zipper.inference.ctc_prefix import CTCPrefixScorer
from zipper.inference.graphs import DECODE_STEPS, StepRunner
from zipper.inference.search import Constraint, SearchConfig, run_search
from zipper.models.zipper import Memory, Segment, ZipperModel
from zipper.tokens.token_list import NUM_SPECIAL

logger = logging.getLogger(__name__)


def allowed_tokens(vocab: int, start: int, stop: int, extra: Sequence[int], device) -> torch.Tensor:
    """(V,) bool: ids in [start, stop) plus `extra` may be generated."""
    allowed = torch.zeros(vocab, dtype=torch.bool, device=device)
    allowed[start:stop] = True
    allowed[list(extra)] = True
    return allowed


def follow_rows(source: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The input each row decodes after `reorder(index)`, and whether every row kept its input.

    Beams move within their input's rows, so what all rows of one input share (the prompt's cached keys, the
    cross-attention memory) needs no copy then; replicating rows (a new batch size) copies everything.
    """
    moved = source[index.cpu()]
    return moved, len(moved) == len(source) and torch.equal(moved, source)


def static_step_mode(tower, step_mode: str) -> str:
    """The step mode a tower can run: a tower without a static cache (HF) falls back to `dynamic`."""
    if step_mode not in DECODE_STEPS:
        raise ValueError(f"unknown decoding step '{step_mode}' ({', '.join(DECODE_STEPS)})")
    if step_mode != "dynamic" and not getattr(tower, "supports_static_cache", False):
        logger.warning("%s has no static cache: decoding step '%s' falls back to 'dynamic'", type(tower).__name__,
                       step_mode)
        return "dynamic"
    return step_mode


class ZipperDecoder:
    def __init__(self, model: ZipperModel, modality: str, memory: dict[str, Memory], batch: int, max_len: int,
                 record: bool = False, step_mode: str = "dynamic"):
        self.model, self.modality, self.record = model, modality, record
        tower = model.towers[modality]
        self.cache = tower.new_cache(batch, max_len + 1)
        self.cross = model.cross_memory(modality, memory)
        self.source = torch.arange(batch)  # which input each row decodes (its cross-attention memory)
        self.recorded: list[list[torch.Tensor]] = []  # per step, per cross layer: (B, 1, D)
        self.runner: Optional[StepRunner] = None
        if static_step_mode(tower, step_mode) != "dynamic":
            self.slot = torch.zeros(1, dtype=torch.long, device=tower.embed.weight.device)  # next slot to write
            self.runner = StepRunner(self._static_step, step_mode, watched=self._watched)

    def _watched(self) -> list[Optional[torch.Tensor]]:
        tensors = [self.cache.k, self.cache.v]
        for c in self.cross:
            if c is not None:
                tensors += [c.k, c.v, c.mask, c.visible]
        return tensors

    def _static_step(self, tokens: torch.Tensor, slot: torch.Tensor):
        segment = Segment(self.modality, tokens, torch.ones_like(tokens[:, 0]))
        out, recorded = self.model.run_segment(segment, {}, cache=self.cache, cross=self.cross, logits_to_keep=1,
                                               cache_position=slot)
        return out.logits[:, -1], recorded

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.runner is None:
            segment = Segment(self.modality, tokens, torch.ones_like(tokens[:, 0]))
            out, recorded = self.model.run_segment(segment, {}, cache=self.cache, cross=self.cross, logits_to_keep=1)
            logits = out.logits[:, -1]
        else:
            logits, recorded = self.runner(tokens, self.slot)
            self.slot.add_(1)  # on the device: no host-device copy per step
            self.cache.advance(1)  # host-side bookkeeping (reorder copies the filled slots)
            if self.runner.graphed:  # a replay overwrites its outputs
                logits = logits.clone()
                recorded = [h.clone() for h in recorded] if self.record else recorded
        if self.record:  # only when a later output modality will attend to this one
            self.recorded.append(recorded)
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder(index)
        source, kept = follow_rows(self.source, index)
        if not kept:
            self.cross = [None if c is None else c.index(index) for c in self.cross]
        self.source = source
        self.recorded = [[h[index] for h in step] for step in self.recorded]

    def memory_of(self, lengths: torch.Tensor) -> Memory:
        """This decoding as memory for a following modality: states of <bos> + the generated tokens."""
        states = [torch.cat([step[n] for step in self.recorded], dim=1) for n in range(self.model.n_cross)]
        mask = torch.arange(states[0].shape[1], device=lengths.device)[None, :] < lengths[:, None]
        return Memory(states, mask)


@torch.no_grad()
def decode_zipper(model: ZipperModel, inputs: Sequence[Segment], outputs: Sequence[str],
                  configs: dict[str, SearchConfig], allowed: dict[str, Optional[torch.Tensor]],
                  bos: dict[str, int], eos: dict[str, int], step_mode: str = "dynamic",
                  cache: bool = True, constraints: Optional[dict[str, Constraint]] = None
                  ) -> dict[str, list[list[int]]]:
    """Decode the output modalities in order after the input segments; returns token ids per modality.

    Beam search and several samples per input are for the last output modality (earlier ones decode greedily
    or with one sample, so that each row keeps one history to condition the next modality on).
    step_mode: how a cached step runs (module docstring).  cache=False: recompute everything at every step
    (ZipperRecomputeDecoder; one output modality) - only for measuring what the caches save.
    constraints: per output modality, what may follow each row's generated ids (a lexicon for text).
    """
    constraints = constraints or {}
    if not cache:
        if len(outputs) != 1:
            raise ValueError("uncached decoding is for one output modality")
        modality = outputs[0]
        config = configs[modality]
        decoder = ZipperRecomputeDecoder(model, inputs, modality)
        first = decoder.step(torch.full((inputs[0].tokens.shape[0], 1), bos[modality], dtype=torch.long,
                                        device=inputs[0].tokens.device))
        return {modality: run_search(decoder, first, eos[modality], config, allowed.get(modality),
                                     constraints.get(modality), inputs[0].lengths.tolist())}
    memory: dict[str, Memory] = {}
    for segment in inputs:
        _, recorded = model.run_segment(segment, memory, return_logits=False)
        model.extend_memory(memory, segment, recorded)
    batch = inputs[0].tokens.shape[0]
    device = inputs[0].tokens.device
    results: dict[str, list[list[int]]] = {}
    for i, modality in enumerate(outputs):
        config = configs[modality]
        decoder = ZipperDecoder(model, modality, memory, batch, config.max_len, record=i < len(outputs) - 1,
                                step_mode=step_mode)
        if config.method == "sample" and config.nbest > 1:
            if i != len(outputs) - 1:
                raise ValueError("several samples per input only for the last output modality")
            decoder.reorder(torch.arange(batch, device=device).repeat_interleave(config.nbest))
            rows = batch * config.nbest
        else:
            rows = batch
        first = decoder.step(torch.full((rows, 1), bos[modality], dtype=torch.long, device=device))
        prefix = (zipper_ctc_scorer(model, memory, modality, eos[modality], config.max_len) if config.ctc_weight > 0
                  else None)
        hyps = run_search(decoder, first, eos[modality], config, allowed.get(modality), constraints.get(modality),
                          inputs[0].lengths.tolist(), prefix)
        results[modality] = hyps
        if i < len(outputs) - 1:
            if config.method == "beam":
                raise ValueError("beam search only for the last output modality")
            lengths = torch.tensor([len(h) + 1 for h in hyps], device=device)  # <bos> + tokens
            new = decoder.memory_of(lengths)
            if modality in memory:
                old = memory[modality]
                memory[modality] = Memory([torch.cat([a, b], 1) for a, b in zip(old.states, new.states)],
                                          torch.cat([old.mask, new.mask], 1))
            else:
                memory[modality] = new
    return results


def missing_ctc_head(model, what: str) -> ValueError:
    """Decode config ctc_weight > 0 where joint CTC scoring cannot apply."""
    why = "has none" if getattr(model, "ctc", None) is None else what
    return ValueError(f"decode config ctc_weight > 0: joint CTC scoring is for ASR (text after speech) with a model "
                      f"trained with an auxiliary CTC head (ctc_weight in its preset); this {type(model).__name__} "
                      f"{why}")


def zipper_ctc_scorer(model: ZipperModel, memory: dict[str, Memory], modality: str, eos: int, max_len: int
                      ) -> CTCPrefixScorer:
    """The CTC head's reading of the speech memory, for joint decoding of text (decode config `ctc_weight`)."""
    if model.ctc is None or modality != "text" or "speech" not in memory:
        raise missing_ctc_head(model, f"decodes {modality}")
    speech = memory["speech"]
    log_probs = model.ctc.log_softmax(speech.states[-1])  # (B, S, V_text), blank = 0 = <pad>
    return CTCPrefixScorer(log_probs, speech.mask.sum(dim=1), blank=0, eos=eos, max_len=max_len)


def vocab_expansion_ctc_scorer(model, task: str, hidden: torch.Tensor, prompt_lengths: Sequence[int],
                               max_len: int) -> CTCPrefixScorer:
    """The baseline's CTC head on its left-padded ASR prompts' states at <boa> u1 .. um <eoa> (hidden (B, P, D))."""
    if getattr(model, "ctc", None) is None or task != "asr":
        raise missing_ctc_head(model, f"decodes {task}")
    start = len(model.task_prefix("asr", hidden.device))
    lengths = torch.tensor([n - start for n in prompt_lengths], device=hidden.device)
    states = hidden.new_zeros(hidden.shape[0], int(lengths.max()), hidden.shape[2])  # (B, S, D), right-padded
    for i, n in enumerate(lengths.tolist()):
        states[i, :n] = hidden[i, hidden.shape[1] - n:]
    return CTCPrefixScorer(model.ctc.log_softmax(states), lengths, blank=0, eos=model.eos, vocab=model.vocab_size,
                           max_len=max_len)


class ZipperRecomputeDecoder:
    """Zipper decoding with no cache at all: every step runs the input segments and the whole output so far
    again (only the last position's logits are computed, as Hugging Face generate does without a cache)."""

    def __init__(self, model: ZipperModel, inputs: Sequence[Segment], modality: str):
        self.model, self.inputs, self.modality = model, list(inputs), modality
        self.tokens: Optional[torch.Tensor] = None

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.tokens = tokens if self.tokens is None else torch.cat([self.tokens, tokens], dim=1)
        memory: dict[str, Memory] = {}
        for segment in self.inputs:
            _, recorded = self.model.run_segment(segment, memory, return_logits=False)
            self.model.extend_memory(memory, segment, recorded)
        lengths = torch.full_like(self.tokens[:, 0], self.tokens.shape[1])
        out, _ = self.model.run_segment(Segment(self.modality, self.tokens, lengths), memory, logits_to_keep=1)
        return out.logits[:, -1]

    def reorder(self, index: torch.Tensor) -> None:
        self.inputs = [Segment(s.modality, s.tokens[index], s.lengths[index]) for s in self.inputs]
        self.tokens = None if self.tokens is None else self.tokens[index]


class TowerDecoder:
    """One tower continuing prompts (B, P) of one length: the prompt is run once, then one token per step.

    cache=False: no cache, every step recomputes the whole sequence (only the last position's logits) - the
    baseline a cache is measured against.  step_mode: how a cached step runs (module docstring).
    """

    def __init__(self, tower, prompts: torch.Tensor, max_new: int, cache: bool = True, step_mode: str = "dynamic"):
        self.tower = tower
        self.cache = self.runner = None
        if not cache:
            self.tokens = prompts
            self.first_logits = tower(prompts, logits_to_keep=1).logits[:, -1]
            return
        b, p = prompts.shape
        self.cache = tower.new_cache(b, p + max_new + 1)
        self.first_logits = tower(prompts, cache=self.cache, logits_to_keep=1).logits[:, -1]
        if static_step_mode(tower, step_mode) != "dynamic":
            self.slot = torch.full((1,), p, dtype=torch.long, device=prompts.device)
            self.runner = StepRunner(self._static_step, step_mode, watched=lambda: (self.cache.k, self.cache.v))

    def _static_step(self, tokens: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        return self.tower(tokens, cache=self.cache, cache_position=slot, logits_to_keep=1).logits[:, -1]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            self.tokens = torch.cat([self.tokens, tokens], dim=1)
            return self.tower(self.tokens, logits_to_keep=1).logits[:, -1]
        if self.runner is None:
            return self.tower(tokens, cache=self.cache, logits_to_keep=1).logits[:, -1]
        logits = self.runner(tokens, self.slot)
        self.slot.add_(1)
        self.cache.advance(1)
        return logits.clone() if self.runner.graphed else logits

    def reorder(self, index: torch.Tensor) -> None:
        if self.cache is None:
            self.tokens = self.tokens[index]
        else:
            self.cache.reorder(index)
        self.first_logits = self.first_logits[index]


class VocabExpansionDecoder:
    """The baseline's tower over left-padded prompts (B, P), continued one token at a time."""

    def __init__(self, model, prompts: Sequence[torch.Tensor], max_len: int):
        self.tower = model.tower
        device = prompts[0].device
        longest = max(len(p) for p in prompts)
        self.mask = torch.zeros(len(prompts), longest, dtype=torch.bool, device=device)
        tokens = torch.full((len(prompts), longest), model.pad, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            tokens[i, longest - len(p):] = p
            self.mask[i, longest - len(p):] = True
        self.positions = (self.mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, P)
        self.prompt_len = longest
        self.source = torch.arange(len(prompts))  # which prompt each row continues
        self.cache = self.tower.new_cache(len(prompts), longest + max_len + 1)
        out = self.tower(tokens, positions=self.positions, key_padding_mask=self.mask, cache=self.cache,
                         logits_to_keep=1)
        self.first_logits = out.logits[:, -1]
        self.prompt_hidden = out.last_hidden  # (B, P, D): for the CTC aid's scorer
        self.next_position = self.positions[:, -1:] + 1  # (B, 1)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        logits = self.tower(tokens, positions=self.next_position, key_padding_mask=self.mask, cache=self.cache,
                            logits_to_keep=1).logits
        self.next_position = self.next_position + 1
        return logits[:, -1]

    def reorder(self, index: torch.Tensor) -> None:
        # the prompt (a whole utterance of units for ASR) is most of the cache: beams of one prompt share it
        self.source, kept = follow_rows(self.source, index)
        self.cache.reorder(index, start=self.prompt_len if kept else 0)
        self.mask = self.mask[index]
        self.next_position = self.next_position[index]
        self.first_logits = self.first_logits[index]


@torch.no_grad()
def decode_vocab_expansion(model, task: str, rows: Sequence[torch.Tensor], config: SearchConfig,
                           constraint: Optional[Constraint] = None) -> list[list[int]]:
    """ASR: rows are speech-tower rows (<bos> u.. <eos>) -> text ids; TTS: text rows -> unit ids (0-based)."""
    device = rows[0].device
    vocab = model.vocab_size
    if task == "asr":
        prompts = [model.asr_prompt(r) for r in rows]
        allowed = allowed_tokens(vocab, NUM_SPECIAL if model.use_task_tags else 0, model.text_vocab,
                                 [model.eos], device)
        eos = model.eos
    else:
        prompts = [model.tts_prompt(r) for r in rows]
        allowed = allowed_tokens(vocab, model.text_vocab, model.text_vocab + model.n_units, [model.eoa], device)
        eos = model.eoa
    decoder = VocabExpansionDecoder(model, prompts, config.max_len)
    prefix = None
    if config.ctc_weight > 0:
        prefix = vocab_expansion_ctc_scorer(model, task, decoder.prompt_hidden, [len(p) for p in prompts],
                                            config.max_len)
    first = decoder.first_logits
    if config.method == "sample" and config.nbest > 1:
        index = torch.arange(len(rows), device=device).repeat_interleave(config.nbest)
        decoder.reorder(index)
        first = decoder.first_logits
    hyps = run_search(decoder, first, eos, config, allowed, constraint if task == "asr" else None,
                      [len(r) for r in rows], prefix)
    if task == "tts":
        hyps = [[t - model.text_vocab for t in h] for h in hyps]
    return hyps
