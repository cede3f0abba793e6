"""Export a SignLLM checkpoint to an engine folder: ONNX graphs + manifest (+ TensorRT plans).

Two graphs, tensor-only I/O (engines.manifest names them):
  encoder  tokens, lang → the model's Memory flattened to tensors, and the initial read position;
  decoder  one `SignLLM.step`: previous frame + memory + cache → next frame + the grown cache.
The graphs are `engines.graphs`' wrappers (the torch runtime runs the same); the maths is `engines.model`'s.
Batch, token count and cache length are dynamic axes (exported with batch > 1 so they stay so).
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import torch
from torch import nn

from engines.graphs import DecoderGraph, EncoderGraph
from engines.manifest import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    LETTERS_FILE,
    EngineError,
    read_manifest,
    sha256_of,
    write_manifest,
)
from engines.model import CONFIG, WEIGHTS, SignLLM, load_model, save_model

TOKENIZER = "tokenizer.model"
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
OPSET = 18


def example_inputs(model: SignLLM, batch: int = 2, tokens: int = 5, cached: int = 3) -> tuple[tuple, tuple]:
    """Encoder and decoder inputs of the given sizes (sizes > 1 so no axis is specialised)."""
    cfg = model.cfg
    tok = torch.randint(2, cfg.vocab_size, (batch, tokens))
    lang = torch.arange(batch) % len(cfg.languages)
    with torch.no_grad():
        mem = model.encode(tok, lang)
        cache = model.start(mem)
        frame = model.bos(batch)
        for _ in range(cached):
            frame, cache = model.step(frame, mem, cache)
    return (tok, lang), (frame, mem.cross_k, mem.cross_v, mem.bias, mem.n_tokens, mem.group,
                         cache.k, cache.v, cache.bias, cache.kappa, cache.pos, cache.ahead)


def _export(module: nn.Module, args: tuple, names_in: tuple, names_out: tuple, dynamic: dict, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, input_names=list(names_in),
                                    output_names=list(names_out), dynamic_shapes=dynamic, opset_version=OPSET,
                                    verbose=False, optimize=True)
    program.save(str(path))


def export_graphs(model: SignLLM, out: Path) -> None:
    """Write encoder.onnx and decoder.onnx for `model` (eval mode, fp32) into `out`, checked by onnx.checker."""
    import onnx

    model = model.eval().float()
    enc_args, dec_args = example_inputs(model)
    B, N, T = torch.export.Dim("batch", min=1), torch.export.Dim("tokens", min=1), torch.export.Dim("cached", min=0)
    _export(EncoderGraph(model), enc_args, ENCODER_INPUTS, ENCODER_OUTPUTS,
            {"tokens": {0: B, 1: N}, "lang": {0: B}}, out / ENCODER_FILE)
    mem = {"cross_k": {1: B, 3: N}, "cross_v": {1: B, 3: N}, "mem_bias": {0: B, 3: N}, "n_tokens": {0: B}, "group": {0: B}}
    cache = {"cache_k": {1: B, 3: T}, "cache_v": {1: B, 3: T}, "cache_bias": {0: B, 3: T}, "kappa": {0: B}, "pos": {0: B},
             "ahead": {0: B}}
    _export(DecoderGraph(model), dec_args, DECODER_INPUTS, DECODER_OUTPUTS,
            {"frame": {0: B}, **mem, **cache}, out / DECODER_FILE)
    for name in (ENCODER_FILE, DECODER_FILE):
        onnx.checker.check_model(str(out / name), full_check=True)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def export_engine(checkpoint: str | Path, out: str | Path, fps: float = 25.0, max_frames: int = 400,
                  fp16: bool = False, tensorrt: bool = False, letters: str | Path | None = None,
                  name: str | None = None) -> Path:
    """A checkpoint folder (model.json, model.safetensors, tokenizer.model) → an engine folder.

    fp16: store the torch weights in float16 and build TensorRT plans in fp16. The ONNX graphs
    stay fp32 (onnxruntime on CPU gains nothing from fp16); they are exported from the very
    weights stored, so every runtime of the folder computes the same function.
    letters: a fingerspelling lexicon folder (or packed .npz) whose letters are packed in.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    tokenizer = checkpoint / TOKENIZER
    if not tokenizer.is_file():
        raise EngineError(f"{tokenizer}: no such file (a checkpoint folder holds model.json, "
                          f"model.safetensors and {TOKENIZER})")
    model = load_model(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, model, half=fp16)
    model = load_model(out)  # the stored weights (fp16 rounded when asked) are what the graphs carry
    shutil.copyfile(tokenizer, out / TOKENIZER)
    export_graphs(model, out)
    cfg = model.cfg
    body: dict = {
        "name": name or out.name,
        "languages": cfg.languages,
        "fps": fps,
        "vocabulary": {"file": TOKENIZER, "size": cfg.vocab_size, "pad_id": cfg.pad_id},
        "decoder": {"layers": cfg.dec_layers, "heads": cfg.n_heads, "head_dim": cfg.d_model // cfg.n_heads,
                    "max_frames": max_frames},
        "graphs": {role: {"file": f, "sha256": sha256_of(out / f), "opset": OPSET}
                   for role, f in (("encoder", ENCODER_FILE), ("decoder", DECODER_FILE))},
        "weights": WEIGHTS,
        "precision": "fp16" if fp16 else "fp32",
        "provenance": {
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_of(checkpoint / WEIGHTS),
            "model": json.loads((checkpoint / CONFIG).read_text(encoding="utf-8")),
            "training": _training_record(checkpoint),
            "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "git_commit": _git_commit(),
        },
    }
    if letters is not None:
        from engines.lexicon import load_alphabets, pack_alphabets

        pack_alphabets(load_alphabets(letters), out / LETTERS_FILE)
        body["letters"] = LETTERS_FILE
    if tensorrt:
        from engines.runtime_tensorrt import build_plans

        body["tensorrt"] = build_plans(out, fp16=fp16)
    write_manifest(out, body)
    read_manifest(out)  # what we wrote must read back
    for path in out.iterdir():
        path.chmod(0o644)  # safetensors writes owner-only files; an engine folder is shared
    return out


def _training_record(checkpoint: Path) -> dict:
    """What the training run left next to the checkpoint: its summary, and the files (config,
    metrics, log) by digest, so an engine names exactly the run its weights came from."""
    record: dict = {}
    summary = checkpoint / "summary.json"
    if summary.is_file():
        try:
            record["summary"] = json.loads(summary.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            record["summary"] = {"file": str(summary), "unreadable": True}
    files = {p.name: sha256_of(p) for p in sorted(checkpoint.iterdir())
             if p.is_file() and p.suffix in (".toml", ".json", ".log") and p.name != CONFIG}
    if files:
        record["files"] = files
    return record
