"""A decoding step with fixed shapes, run eagerly, through torch.compile, or replayed from a captured CUDA graph.

The step is `fn(tokens (B, 1), slot (1,)) -> tensor or tuple of tensors`, where `slot` is a long tensor on the
model's device saying which static-cache slot the step writes (DecoderTower's `cache_position`).  Every call then
has the same shapes and touches the same tensors, which is what a CUDA graph needs: the graph is captured on the
first call and replayed after that (one launch per step instead of one per kernel, and no Python per layer).
The caller advances `slot` in place on the device (`slot.add_(1)`), so no step copies anything from the host.

Modes: `eager` (the static step as plain PyTorch), `compile` (torch.compile, fixed shapes: compiled once),
`cuda_graph`, `compile+cuda_graph`.  A graph is captured again when the batch size changes or a watched tensor
(the cache, the cross-attention memory) is replaced, e.g. when beam search first expands each input to k rows.
Outputs of a replayed graph live in the graph's memory and are overwritten by the next replay: callers copy what
they keep (the decoders below return clones).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

STEP_MODES = ("eager", "compile", "cuda_graph", "compile+cuda_graph")
DECODE_STEPS = ("dynamic",) + STEP_MODES  # "dynamic": the cache grows by length (no fixed shapes)


class StepRunner:
    def __init__(self, fn: Callable, mode: str = "eager", watched: Callable[[], Sequence[torch.Tensor]] = tuple,
                 warmup: int = 2):
        if mode not in STEP_MODES:
            raise ValueError(f"unknown step mode '{mode}' ({', '.join(STEP_MODES)})")
        self.mode = mode
        self.fn = torch.compile(fn, dynamic=False) if mode.startswith("compile") else fn
        self.graphed = mode.endswith("cuda_graph")
        self.watched, self.warmup = watched, warmup
        self.graph = None
        self.key: tuple = ()
        self.captures = 0  # how many times a graph was captured (tests and logs read it)

    def __call__(self, tokens: torch.Tensor, slot: torch.Tensor):
        if not self.graphed:
            return self.fn(tokens, slot)
        key = (tuple(tokens.shape), tuple(t.data_ptr() for t in self.watched() if t is not None))
        if self.graph is None or key != self.key:
            self._capture(tokens, slot)
            self.key = key
        self.tokens.copy_(tokens)
        self.slot.copy_(slot)
        self.graph.replay()
        return self.outputs

    def _capture(self, tokens: torch.Tensor, slot: torch.Tensor) -> None:
        if tokens.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.graph = None
        self.tokens, self.slot = tokens.clone(), slot.clone()
        # warm-up on a side stream (cuBLAS workspaces, compilation, lazy initialisation happen outside the
        # capture); it writes the cache slot the replay below writes again with the same values
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.fn(self.tokens, self.slot)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.outputs = self.fn(self.tokens, self.slot)
        self.graph = graph
        self.captures += 1
