"""The engine folder: `engine.json`, what it must say, and the graph contract it promises.

An engine is a folder:

    engine.json        this manifest (languages, fps, skeleton, vocabulary, graphs, provenance)
    tokenizer.model    the SentencePiece gloss tokenizer
    encoder.onnx       gloss tokens → cross-attention memory (+ the initial read position)
    decoder.onnx       one decoder step with explicit key/value-cache inputs and outputs
    model.safetensors  the weights (+ model.json), for the torch runtime (optional)
    *.plan             TensorRT plans built from the ONNX graphs (optional)
    letters.npz        packed letter recordings for fingerspelling (optional)

No torch and no onnx here: the server reads manifests with numpy and the standard library only.
Every problem is a SignStreamError subclass with a stable code and a message naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import SignStreamError
from engines.skeleton import NUM_JOINTS, STEP_VALUES

MANIFEST = "engine.json"
LETTERS_FILE = "letters.npz"
FORMAT = 2  # 2: the decoder carries `ahead` (FP ensembling); format-1 folders must be re-exported
SKELETON = "signllm-50"

# The graph contract. Shapes: B batch, N tokens, T cached frames (all dynamic); L decoder layers,
# H heads, D head width (static, in the manifest). The decoder returns the whole grown cache
# (T + 1), like the "present" outputs of other decoders: attention needs the concatenation anyway,
# so handing it back costs nothing and the next step feeds it straight in.
ENCODER_INPUTS = ("tokens", "lang")  # (B, N) int64, (B,) int64
MEMORY = ("cross_k", "cross_v", "mem_bias", "n_tokens", "group")  # (L,B,H,N,D) ×2, (B,1,1,N), (B,), (B,) int64
ENCODER_OUTPUTS = (*MEMORY, "kappa0", "ahead0")  # kappa0 (B,): where reading starts; ahead0 (B,A,151) zeros
# (L,B,H,T,D) ×2, (B,1,1,T), (B,), (B,) int64, (B,A,151): A static (the model's future − 1, at least 1)
CACHE = ("cache_k", "cache_v", "cache_bias", "kappa", "pos", "ahead")
# A masked slot in mem_bias / cache_bias (additive, 0 elsewhere); the torch model masks with it too.
# Finite, so fully masked rows stay NaN-free (and fp16-safe).
NEG = -1e4
DECODER_INPUTS = ("frame", *MEMORY, *CACHE)  # frame (B, 151): the previous frame, canonical
DECODER_OUTPUTS = ("next_frame", *(f"{name}_out" for name in CACHE))

RUNTIMES = ("onnxruntime", "tensorrt", "torch")


class EngineError(SignStreamError):
    """An engine folder is unusable."""

    code = "bad_engine"


class EngineFileMissing(EngineError):
    code = "engine_file_missing"


class EngineManifestError(EngineError):
    code = "bad_engine_manifest"


class EngineMismatch(EngineError):
    """A file does not match what the manifest says (checksum, graph inputs/outputs, shapes)."""

    code = "engine_mismatch"


class RuntimeUnavailable(EngineError):
    """The chosen runtime is not installed here, or cannot run this engine."""

    code = "runtime_unavailable"


@dataclass
class GraphFile:
    file: str
    sha256: str


@dataclass
class Manifest:
    """engine.json, checked. `folder` is where it was read from."""

    folder: Path
    name: str
    languages: list[str]
    fps: float
    vocab_size: int
    tokenizer: str
    layers: int  # decoder layers (L)
    heads: int  # H
    head_dim: int  # D
    max_frames: int  # generation cap per word
    graphs: dict[str, GraphFile]  # "encoder", "decoder"
    weights: str | None = None  # model folder-relative safetensors for the torch runtime
    tensorrt: dict[str, str] = field(default_factory=dict)  # "encoder"/"decoder" → plan file
    letters: str | None = None  # packed letter recordings (engines.lexicon)
    provenance: dict = field(default_factory=dict)

    def path(self, relative: str) -> Path:
        return self.folder / relative

    def language_index(self, language: str) -> int:
        return self.languages.index(language)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _need(raw: dict, key: str, kind: type | tuple[type, ...], where: Path) -> object:
    if key not in raw:
        raise EngineManifestError(f"{where}: missing key {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise EngineManifestError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def read_manifest(folder: str | Path, verify: bool = True) -> Manifest:
    """Read and check an engine folder's manifest; with `verify`, every named file must exist and
    the graphs must have the checksums the manifest records (a graph from another export is a
    mismatch, not a silent surprise)."""
    folder = Path(folder)
    where = folder / MANIFEST
    if not folder.is_dir():
        raise EngineFileMissing(f"{folder}: no such engine folder")
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineFileMissing(f"{where}: no such file (not an engine folder; make one: signstream export)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineManifestError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise EngineManifestError(f"{where}: must hold a JSON object")
    if raw.get("format") != FORMAT:
        raise EngineManifestError(f"{where}: format {raw.get('format')!r} is not {FORMAT} (re-export the engine)")
    skeleton = _need(raw, "skeleton", dict, where)
    if skeleton.get("name") != SKELETON or skeleton.get("joints") != NUM_JOINTS or skeleton.get("step_values") != STEP_VALUES:
        raise EngineManifestError(f"{where}: skeleton {skeleton} is not {SKELETON} ({NUM_JOINTS} joints, "
                                  f"{STEP_VALUES} values a step)")
    languages = _need(raw, "languages", list, where)
    if not languages or not all(isinstance(x, str) and x for x in languages):
        raise EngineManifestError(f"{where}: 'languages' must be a non-empty list of language codes")
    fps = float(_need(raw, "fps", (int, float), where))
    if not fps > 0:
        raise EngineManifestError(f"{where}: 'fps' must be positive, got {fps}")
    vocab = _need(raw, "vocabulary", dict, where)
    decoder = _need(raw, "decoder", dict, where)
    for key in ("layers", "heads", "head_dim", "max_frames"):
        if not isinstance(decoder.get(key), int) or decoder[key] < 1:
            raise EngineManifestError(f"{where}: 'decoder.{key}' must be a positive integer, got {decoder.get(key)!r}")
    if not isinstance(vocab.get("size"), int) or not isinstance(vocab.get("file"), str):
        raise EngineManifestError(f"{where}: 'vocabulary' must give 'file' and 'size'")
    graphs_raw = _need(raw, "graphs", dict, where)
    graphs = {}
    for role in ("encoder", "decoder"):
        g = graphs_raw.get(role)
        if not isinstance(g, dict) or not isinstance(g.get("file"), str) or not isinstance(g.get("sha256"), str):
            raise EngineManifestError(f"{where}: 'graphs.{role}' must give 'file' and 'sha256'")
        graphs[role] = GraphFile(g["file"], g["sha256"])
    tensorrt = raw.get("tensorrt", {})
    if not isinstance(tensorrt, dict):
        raise EngineManifestError(f"{where}: 'tensorrt' must map encoder/decoder to plan files")
    m = Manifest(folder, str(raw.get("name", folder.name)), languages, fps, vocab["size"], vocab["file"],
                 decoder["layers"], decoder["heads"], decoder["head_dim"], decoder["max_frames"], graphs,
                 raw.get("weights"), tensorrt, raw.get("letters"), raw.get("provenance", {}))
    if verify:
        for relative in [m.tokenizer, *(g.file for g in graphs.values()), *filter(None, [m.weights, m.letters])]:
            if not m.path(relative).is_file():
                raise EngineFileMissing(f"{m.path(relative)}: no such file (named in {where})")
        for role, g in graphs.items():
            got = sha256_of(m.path(g.file))
            if got != g.sha256:
                raise EngineMismatch(f"{m.path(g.file)}: sha256 {got[:12]}… is not the {role} graph {where} "
                                     f"names ({g.sha256[:12]}…); the folder mixes exports")
    return m


def write_manifest(folder: Path, body: dict) -> Path:
    """Write engine.json (the exporter builds `body`; format and skeleton are stamped here)."""
    body = {"format": FORMAT, "skeleton": {"name": SKELETON, "joints": NUM_JOINTS, "step_values": STEP_VALUES}, **body}
    path = folder / MANIFEST
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def check_graph_io(m: Manifest, role: str, inputs: dict[str, list], outputs: dict[str, list]) -> None:
    """Compare a graph's input/output names and static dims (as a runtime reports them: a list per
    tensor, ints for static dims, anything else for dynamic ones) with the contract and manifest."""
    want_in, want_out = (ENCODER_INPUTS, ENCODER_OUTPUTS) if role == "encoder" else (DECODER_INPUTS, DECODER_OUTPUTS)
    where = m.path(m.graphs[role].file)
    if tuple(inputs) != want_in or tuple(outputs) != want_out:
        raise EngineMismatch(f"{where}: inputs {list(inputs)} / outputs {list(outputs)} are not the {role} "
                             f"contract {list(want_in)} / {list(want_out)}")
    L, H, D = m.layers, m.heads, m.head_dim
    expect = {"cross_k": [L, None, H, None, D], "cross_v": [L, None, H, None, D],
              "cache_k": [L, None, H, None, D], "cache_v": [L, None, H, None, D], "frame": [None, STEP_VALUES],
              "ahead": [None, None, STEP_VALUES]}
    for name, shape in {**inputs, **outputs}.items():
        want = expect.get(name.removesuffix("_out"))
        if want is None:
            continue
        if len(shape) != len(want) or any(w is not None and s != w for s, w in zip(shape, want)):
            raise EngineMismatch(f"{where}: {name} has shape {shape}, the manifest says {want} "
                                 f"(L={L} layers, H={H} heads, D={D})")
