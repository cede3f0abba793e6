"""The torch runtime: the engine's weights in eager PyTorch (CPU, or CUDA where present).

It runs exactly what the ONNX graphs were exported from (engines.graphs), so it is the
reference the other runtimes are checked against.
"""

from __future__ import annotations

import numpy as np
import torch

from engines.graphs import DecoderGraph, EncoderGraph
from engines.manifest import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_OUTPUTS,
    EngineFileMissing,
    EngineMismatch,
    Manifest,
)
from engines.model import load_model


class TorchRuntime:
    name = "torch"

    def __init__(self, manifest: Manifest, threads: int = 1, device: str = "auto") -> None:
        if not manifest.weights:
            raise EngineFileMissing(f"{manifest.folder}: the manifest names no weights; the torch runtime needs "
                                    f"model.safetensors (re-export, or use the onnxruntime runtime)")
        self.manifest = manifest
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
        model = load_model(manifest.folder).to(self.device)
        cfg = model.cfg
        if (cfg.dec_layers, cfg.n_heads, cfg.d_model // cfg.n_heads) != (manifest.layers, manifest.heads, manifest.head_dim):
            raise EngineMismatch(f"{manifest.folder}: weights are {cfg.dec_layers} layers × {cfg.n_heads} heads × "
                                 f"{cfg.d_model // cfg.n_heads}, the manifest says {manifest.layers} × "
                                 f"{manifest.heads} × {manifest.head_dim}")
        self.encoder, self.decoder = EncoderGraph(model), DecoderGraph(model)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    @torch.inference_mode()
    def encode(self, tokens: np.ndarray, lang: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.encoder(self._tensor(tokens.astype(np.int64)), self._tensor(lang.astype(np.int64)))
        return {k: v.cpu().numpy() for k, v in zip(ENCODER_OUTPUTS, outs)}

    @torch.inference_mode()
    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.decoder(*(self._tensor(feeds[k]) for k in DECODER_INPUTS))
        return {k: v.cpu().numpy() for k, v in zip(DECODER_OUTPUTS, outs)}
