"""The onnxruntime runtime: the engine's ONNX graphs on CPU (CUDA execution provider where present).

This is the serving default, so it imports numpy and onnxruntime only, never torch.
"""

from __future__ import annotations

import numpy as np

from engines.manifest import (
    DECODER_OUTPUTS,
    ENCODER_OUTPUTS,
    Manifest,
    RuntimeUnavailable,
    check_graph_io,
)


class OnnxRuntime:
    """Runs the encoder and the one-step decoder of an engine folder with onnxruntime."""

    name = "onnxruntime"

    def __init__(self, manifest: Manifest, threads: int = 1, device: str = "auto") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable("the onnxruntime runtime needs onnxruntime "
                                     "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from None
        self.manifest = manifest
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeUnavailable(f"onnxruntime here has no CUDA execution provider (it has {available}); "
                                     f"install onnxruntime-gpu")
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        # Steps are small: one thread a call avoids thread hand-offs that cost more than they save
        # on a busy 2-core machine; the server may ask for more.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.providers = providers
        self.encoder = ort.InferenceSession(str(manifest.path(manifest.graphs["encoder"].file)), opts, providers=providers)
        self.decoder = ort.InferenceSession(str(manifest.path(manifest.graphs["decoder"].file)), opts, providers=providers)
        for role, sess in (("encoder", self.encoder), ("decoder", self.decoder)):
            check_graph_io(manifest, role, {i.name: i.shape for i in sess.get_inputs()},
                           {o.name: o.shape for o in sess.get_outputs()})

    def encode(self, tokens: np.ndarray, lang: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.encoder.run(None, {"tokens": tokens.astype(np.int64, copy=False),
                                       "lang": lang.astype(np.int64, copy=False)})
        return dict(zip(ENCODER_OUTPUTS, outs))

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(DECODER_OUTPUTS, self.decoder.run(None, feeds)))
