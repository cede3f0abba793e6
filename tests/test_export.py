"""Export: checked ONNX graphs with dynamic axes, and onnxruntime equal to the torch model."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engines.manifest import CACHE, DECODER_INPUTS, MEMORY, read_manifest
from engines.model import load_model
from engines.runtime_onnx import OnnxRuntime
from engines.tokenizer import PAD_ID, Tokenizer

DEFAULT = Path(__file__).resolve().parent.parent / "engines" / "default"


@pytest.fixture(params=["tiny", "default"])
def engine(request) -> Path:
    if request.param == "default" and not (DEFAULT / "engine.json").is_file():
        pytest.skip("engines/default has no exported model yet (awaiting training/checkpoints/default)")
    return request.getfixturevalue("tiny_engine") if request.param == "tiny" else DEFAULT


def test_graphs_pass_the_checker_with_dynamic_batch_and_cache_axes(tiny_engine):
    m = read_manifest(tiny_engine)
    dec = onnx.load(str(m.path(m.graphs["decoder"].file)))
    onnx.checker.check_model(dec, full_check=True)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in dec.graph.input}
    assert list(dims) == list(DECODER_INPUTS)
    assert isinstance(dims["cache_k"][1], str) and isinstance(dims["cache_k"][3], str)  # batch, cache length
    assert dims["cache_k"][0] == m.layers and dims["frame"] == [dims["cache_k"][1], 151]
    outs = [o.name for o in dec.graph.output]
    assert outs[0] == "next_frame" and outs[1:] == [f"{c}_out" for c in CACHE]
    assert m.provenance["checkpoint_sha256"] and m.provenance["torch"] == torch.__version__


def _words(tokenizer: Tokenizer, glosses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ids = [tokenizer.encode(g) for g in glosses]
    tokens = np.full((len(ids), max(map(len, ids))), PAD_ID, dtype=np.int64)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    return tokens, np.arange(len(ids), dtype=np.int64) % 2


def test_onnxruntime_matches_torch_over_100_frames(engine):
    m = read_manifest(engine)
    model = load_model(engine)
    lang0, lang1 = m.languages[0], m.languages[-1]
    tokens, lang = _words(Tokenizer.load(m.path(m.tokenizer)), [f"<{lang0}> FS:H-E-L-L-O", f"<{lang1}> FS:B-O-L-D"])
    lang = np.array([0, len(m.languages) - 1])
    rt = OnnxRuntime(m)
    enc = rt.encode(tokens, lang)
    L, B, H, _, D = enc["cross_k"].shape
    state = {k: enc[k] for k in MEMORY}
    state.update(frame=np.zeros((B, 151), np.float32), cache_k=np.zeros((L, B, H, 0, D), np.float32),
                 cache_v=np.zeros((L, B, H, 0, D), np.float32), cache_bias=np.zeros((B, 1, 1, 0), np.float32),
                 kappa=enc["kappa0"], pos=np.zeros(B, np.int64), ahead=enc["ahead0"])
    with torch.no_grad():
        mem = model.encode(torch.from_numpy(tokens), torch.from_numpy(lang))
        cache, frame = model.start(mem), model.bos(B)
        worst = 0.0
        for t in range(100):
            frame, cache = model.step(frame, mem, cache)
            out = rt.step({k: state[k] for k in DECODER_INPUTS})
            # The step hands back the past untouched and one new column: nothing is recomputed.
            assert np.array_equal(out["cache_k_out"][:, :, :, :t], state["cache_k"])
            assert out["cache_k_out"].shape[3] == t + 1
            state.update({c: out[f"{c}_out"] for c in CACHE}, frame=out["next_frame"])
            worst = max(worst, float(np.abs(out["next_frame"] - frame.numpy()).max()))
    assert worst <= 1e-4


def test_serving_with_onnxruntime_does_not_import_torch(tiny_engine):
    code = (
        "import sys\n"
        "from engines.engine import Scheduler\n"
        "from engines.signllm_backend import SignLLMBackend\n"
        f"b = SignLLMBackend.open({str(tiny_engine)!r}, 'onnxruntime')\n"
        "s = Scheduler([b]); s.submit('u', 'hello', 'ase')\n"
        "frames, _ = s.tick(); assert len(frames) == 1\n"
        "print('torch' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "False"
