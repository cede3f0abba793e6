"""The two graphs of an engine, as torch modules: what `training/export.py` writes to ONNX and
what the torch runtime runs, so every runtime of an engine folder computes the same function.

The wrappers only flatten/unflatten `Memory` and `Cache` to tensors (engines.manifest names them);
the maths is `engines.model`'s.
"""

from __future__ import annotations

from torch import Tensor, nn

from engines.model import Cache, Memory, SignLLM


class EncoderGraph(nn.Module):
    def __init__(self, model: SignLLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lang: Tensor) -> tuple[Tensor, ...]:
        mem = self.model.encode(tokens, lang)
        start = self.model.start(mem)
        return mem.cross_k, mem.cross_v, mem.bias, mem.n_tokens, mem.group, start.kappa, start.ahead


class DecoderGraph(nn.Module):
    def __init__(self, model: SignLLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: Tensor, cross_k: Tensor, cross_v: Tensor, mem_bias: Tensor, n_tokens: Tensor,
                group: Tensor, cache_k: Tensor, cache_v: Tensor, cache_bias: Tensor, kappa: Tensor,
                pos: Tensor, ahead: Tensor) -> tuple[Tensor, ...]:
        out, c = self.model.step(frame, Memory(cross_k, cross_v, mem_bias, n_tokens, group),
                                 Cache(cache_k, cache_v, cache_bias, kappa, pos, ahead))
        return out, c.k, c.v, c.bias, c.kappa, c.pos, c.ahead
