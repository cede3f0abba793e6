"""The TensorRT runtime: plans built from the engine's ONNX graphs, run with the TensorRT Python API.

Plans are built per GPU (they are not portable), with one optimisation profile covering the batch,
token and cache-length ranges the scheduler produces; `--fp16` builds them in half precision.
Device buffers are torch CUDA tensors (torch is already there wherever TensorRT is), so this needs
tensorrt (10.x) and torch with CUDA.

Not exercised on a GPU in this repository's CI: the tests run it where tensorrt imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.manifest import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    EngineFileMissing,
    Manifest,
    RuntimeUnavailable,
)

# (min, opt, max) of each dynamic axis the profiles cover.
BATCH = (1, 32, 128)
TOKENS = (1, 16, 96)
CACHED = (0, 64, 512)
PLANS = {"encoder": "encoder.plan", "decoder": "decoder.plan"}


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeUnavailable("the tensorrt runtime needs NVIDIA TensorRT 10 and a CUDA GPU "
                                 "(pip install tensorrt; torch with CUDA for device buffers)") from None
    return trt


def _dims(name: str, static: list[int], pick: int) -> tuple[int, ...]:
    """One corner (0 min, 1 opt, 2 max) of the profile for a graph input, from its static dims (-1 dynamic)."""
    batch, tokens, cached = BATCH[pick], TOKENS[pick], CACHED[pick]
    axis_of = {"tokens": (batch, tokens), "lang": (batch,), "frame": (batch, static[1]),
               "n_tokens": (batch,), "group": (batch,), "kappa": (batch,), "pos": (batch,),
               "ahead": (batch, *static[1:])}
    if name in axis_of:
        return axis_of[name]
    L, _, H, _, D = static if len(static) == 5 else (0, 0, 0, 0, 0)
    return {"cross_k": (L, batch, H, tokens, D), "cross_v": (L, batch, H, tokens, D),
            "mem_bias": (batch, 1, 1, tokens), "cache_k": (L, batch, H, cached, D),
            "cache_v": (L, batch, H, cached, D), "cache_bias": (batch, 1, 1, cached)}[name]


def build_plans(folder: str | Path, fp16: bool = False) -> dict[str, str]:
    """Build encoder.plan and decoder.plan next to the ONNX graphs; returns role → plan file."""
    trt = _import_tensorrt()
    folder = Path(folder)
    logger = trt.Logger(trt.Logger.WARNING)
    for role, plan in PLANS.items():
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(folder / f"{role}.onnx")):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeUnavailable(f"{folder / f'{role}.onnx'}: TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            static = list(tensor.shape)
            profile.set_shape(tensor.name, *(_dims(tensor.name, static, k) for k in range(3)))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeUnavailable(f"{folder}: TensorRT could not build the {role} plan (see its log above)")
        (folder / plan).write_bytes(bytes(serialized))
    return dict(PLANS)


class TensorRTRuntime:
    name = "tensorrt"

    def __init__(self, manifest: Manifest) -> None:
        trt = _import_tensorrt()
        try:
            import torch
        except ImportError:
            raise RuntimeUnavailable("the tensorrt runtime uses torch CUDA tensors as buffers (pip install torch)") from None
        if not torch.cuda.is_available():
            raise RuntimeUnavailable("the tensorrt runtime needs a CUDA GPU; none is visible here")
        if not manifest.tensorrt:
            raise EngineFileMissing(f"{manifest.folder}: no TensorRT plans; build them: signstream export --tensorrt")
        self.torch, self.manifest = torch, manifest
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engines, self.contexts = {}, {}
        for role in ("encoder", "decoder"):
            path = manifest.path(manifest.tensorrt[role])
            if not path.is_file():
                raise EngineFileMissing(f"{path}: no such file (named in {manifest.folder / 'engine.json'})")
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeUnavailable(f"{path}: TensorRT cannot load this plan (built for another GPU or "
                                         f"TensorRT version? rebuild it: signstream export --tensorrt)")
            self.engines[role], self.contexts[role] = engine, engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def _run(self, role: str, names_in: tuple[str, ...], names_out: tuple[str, ...],
             feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch, ctx, engine = self.torch, self.contexts[role], self.engines[role]
        keep = []
        for name in names_in:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            keep.append(t)
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in names_out:
            dtype = torch.int64 if "int64" in str(engine.get_tensor_dtype(name)).lower() else (
                torch.float16 if "half" in str(engine.get_tensor_dtype(name)).lower() else torch.float32)
            t = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=dtype, device="cuda")
            ctx.set_tensor_address(name, t.data_ptr())
            outs[name] = t
        with torch.cuda.stream(self.stream):
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeUnavailable(f"TensorRT failed to run the {role} plan")
        self.stream.synchronize()
        return {k: v.float().cpu().numpy() if v.dtype == torch.float16 else v.cpu().numpy() for k, v in outs.items()}

    def encode(self, tokens: np.ndarray, lang: np.ndarray) -> dict[str, np.ndarray]:
        return self._run("encoder", ENCODER_INPUTS, ENCODER_OUTPUTS,
                         {"tokens": tokens.astype(np.int64), "lang": lang.astype(np.int64)})

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run("decoder", DECODER_INPUTS, DECODER_OUTPUTS, feeds)

