"""The SignLLM backend: an engine folder behind the scheduler's Backend interface.

One `step` is one batched decoder call over every live generation, whatever their ages.

Batching choice: *pad to a common length with an attention mask* (not per-slot fixed-capacity
caches). The decoder graph takes the cache of the whole batch, (L, B, H, T, D), plus an additive
mask (B, 1, 1, T) that is 0 where a row has a frame and NEG where it does not, and returns the
grown cache (T + 1). A generation that joins mid-flight gets T masked columns; one that leaves is
dropped from the batch axis; columns that no live row uses any more are cut off, so T stays near
the age of the oldest live generation (a word: tens of frames). Attention does not care where a
key sits, only about its mask, and masked logits underflow to exactly 0 after softmax, so a
generation's frames do not depend on who it was batched with (tested). The attraction over fixed
slots: the graph attends over the live length only, the step's grown cache is fed straight back
(no scatter into a slot buffer), and there is no capacity to choose.

Memory (the encoder's keys/values) is padded the same way along the token axis.
Joins are encoded together: all generations that began since the last tick share one encoder call.

Confidence: the model generates points only; a joint it leaves at the neck (how its training data
marks a missing point) leaves the backend with confidence 0, so the avatar rests that arm or hand as
it does for a recording's unseen joint (`generated_confidence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from engines.counter import reached_end
from engines.engine import Kind
from engines.frame import PoseFrame, generated
from engines.langgloss import format_gloss
from engines.lexicon import Alphabet, CannotSpell, fold, load_alphabets
from engines.manifest import CACHE, MEMORY, NEG, RUNTIMES, Manifest, RuntimeUnavailable, read_manifest
from engines.skeleton import FRAME_VALUES, LEFT_HAND_SLICE, NECK, NUM_JOINTS, RIGHT_HAND_SLICE, STEP_VALUES
from engines.tokenizer import PAD_ID, UNK_ID, Tokenizer

# Token budget of one word: a longer one goes to the next path (the letter recordings). The encoder's
# cost grows with the square of the tokens (4,000 tokens: 2 s, blocking every session) and each step's
# with the frames generated so far, which a long word makes many; real words stay well under it.
MAX_TOKENS = 48
# Cut masked cache columns once this many pile up (cutting copies the cache; doing it every tick would
# cost more than attending over a few dead columns).
COMPACT_AFTER = 16
# The model has no confidence output. Its training targets (.skels) hold a missing point as exact
# zeros, the origin (the neck), which a regression approaches but never hits: a generated point this
# close to the neck is the model saying "missing" (the bundled model's unseen left wrist and hand land
# within 0.03). Shoulder widths; the nearest real joints to the neck, the shoulders, sit 0.5 away.
MISSING_RADIUS = 0.1


class Runtime(Protocol):
    """What the backend needs from a runtime: the two graphs, numpy in and out."""

    name: str
    manifest: Manifest

    def encode(self, tokens: np.ndarray, lang: np.ndarray) -> dict[str, np.ndarray]: ...

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def open_runtime(engine: str | Path | Manifest, runtime: str = "onnxruntime", threads: int = 1) -> Runtime:
    """Open an engine folder with a runtime by name (onnxruntime, tensorrt, torch). Only the
    chosen runtime's module is imported, so onnxruntime serving never loads torch."""
    manifest = engine if isinstance(engine, Manifest) else read_manifest(engine)
    if runtime == "onnxruntime":
        from engines.runtime_onnx import OnnxRuntime

        return OnnxRuntime(manifest, threads=threads)
    if runtime == "tensorrt":
        from engines.runtime_tensorrt import TensorRTRuntime

        return TensorRTRuntime(manifest)
    if runtime == "torch":
        try:
            from engines.runtime_torch import TorchRuntime
        except ImportError as exc:
            raise RuntimeUnavailable(f"the torch runtime needs torch (pip install 'signstream[train]'): {exc}") from None
        return TorchRuntime(manifest, threads=threads)
    raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


@dataclass
class _Join:
    key: int
    tokens: list[int]
    lang: int


class SignLLMBackend:
    """Fingerspells words with the SignLLM model; hands what it cannot (characters outside its
    vocabulary, languages it was not trained on) to the next backend through `plan`'s reason."""

    name = "signllm"

    def __init__(self, runtime: Runtime, alphabets: dict[str, Alphabet] | None = None) -> None:
        self.runtime = runtime
        m = runtime.manifest
        self.manifest = m
        self.fps = m.fps
        self.languages = frozenset(m.languages)
        self.tokenizer = Tokenizer.load(m.path(m.tokenizer))
        if self.tokenizer.vocab_size != m.vocab_size:
            from engines.manifest import EngineMismatch

            raise EngineMismatch(f"{m.path(m.tokenizer)}: {self.tokenizer.vocab_size} pieces, the manifest says {m.vocab_size}")
        if alphabets is None and m.letters:
            alphabets = load_alphabets(m.path(m.letters))
        self.alphabets = alphabets or {}
        self._keys: list[int] = []  # row i of the batch is generation self._keys[i]
        self._frames = np.zeros(0, dtype=np.int64)  # frames generated per row
        self._state: dict[str, np.ndarray] = {}  # MEMORY + CACHE + "frame", batch rows as _keys
        self._joins: list[_Join] = []
        self._leaving: set[int] = set()

    @classmethod
    def open(cls, engine: str | Path, runtime: str = "onnxruntime", threads: int = 1) -> SignLLMBackend:
        return cls(open_runtime(engine, runtime, threads))

    # --- planning -------------------------------------------------------------------------

    def gloss(self, word: str, language: str) -> str:
        """The fingerspelling gloss of a word (`<ase> FS:H-I`); letters by the manual alphabet
        where the engine packs one (digraphs such as LL), else character by character."""
        alphabet = self.alphabets.get(language)
        letters = [e.name for e in alphabet.spell(word)] if alphabet else list(fold(word))
        return format_gloss(language, letters)

    def plan(self, word: str, language: str) -> tuple[str, Kind] | str:
        if language not in self.languages:
            return f"the SignLLM engine was not trained on {language}"
        try:
            gloss = self.gloss(word, language)
        except CannotSpell as exc:
            return exc.message
        ids = self.tokenizer.encode(gloss)
        if len(ids) > MAX_TOKENS:
            return f"longer than the model takes ({len(ids)} tokens; at most {MAX_TOKENS})"
        unknown = [p for p, i in zip(self.tokenizer.pieces(gloss), ids) if i == UNK_ID]
        if unknown:
            return f"characters outside the SignLLM vocabulary: {' '.join(unknown)}"
        return gloss, "fingerspelling"

    # --- generation -----------------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self._keys) - len(self._leaving) + len(self._joins)

    def begin(self, key: int, word: str, language: str) -> None:
        gloss = self.gloss(word, language)
        self._joins.append(_Join(key, self.tokenizer.encode(gloss), self.manifest.language_index(language)))

    def end(self, key: int) -> None:
        self._joins = [j for j in self._joins if j.key != key]
        if key in self._keys:
            self._leaving.add(key)

    def step(self, keys: list[int]) -> dict[int, PoseFrame]:
        self._settle()
        rows = [self._keys.index(k) for k in keys] if keys != self._keys else None
        if rows is not None and len(rows) == len(self._keys):
            self._reorder(rows)  # the same generations in another order: make the batch follow keys
            rows = None
        feeds = self._state if rows is None else {k: np.take(v, rows, axis=_batch_axis(k)) for k, v in self._state.items()}
        previous = feeds["frame"][:, FRAME_VALUES].copy()  # the counters fed in (BOS: 0), before the state moves on
        out = self.runtime.step({k: feeds[k] for k in ("frame", *MEMORY, *CACHE)})
        grown = {name: out[f"{name}_out"] for name in CACHE}
        if rows is None:
            self._state.update(grown, frame=out["next_frame"])
            self._frames += 1
        else:
            self._grow_subset(rows, grown, out["next_frame"])
        frames = out["next_frame"]
        result = {}
        for i, key in enumerate(keys):
            row = i if rows is None else rows[i]
            counter = float(frames[i, FRAME_VALUES])
            # The model's own stopping rule (engines.counter), as in decode and evaluation.
            done = bool(reached_end(counter, float(previous[i]))) or self._frames[row] >= self.manifest.max_frames
            points, conf = generated_confidence(frames[i, :FRAME_VALUES].reshape(NUM_JOINTS, 3))
            result[key] = generated(points, conf, min(max(counter, 0.0), 1.0), done)
        return result

    # --- the batch ------------------------------------------------------------------------

    def _settle(self) -> None:
        """Apply the leaves and joins since the last tick, then cut dead cache columns."""
        if self._leaving:
            keep = [i for i, k in enumerate(self._keys) if k not in self._leaving]
            self._reorder(keep)
            self._leaving.clear()
            n = int(self._state["n_tokens"].max()) if keep else 0
            if keep and n < self._state["mem_bias"].shape[-1]:
                for name in ("cross_k", "cross_v", "mem_bias"):
                    self._state[name] = np.ascontiguousarray(self._state[name][..., :n, :] if name != "mem_bias"
                                                             else self._state[name][..., :n])
        if self._joins:
            self._join(self._joins)
            self._joins = []
        if self._keys:
            dead = (self._state["cache_bias"][:, 0, 0, :] < 0).all(axis=0)
            if int(dead.sum()) >= COMPACT_AFTER:
                live = np.flatnonzero(~dead)
                for name in ("cache_k", "cache_v", "cache_bias"):
                    self._state[name] = np.take(self._state[name], live, axis=3)

    def _reorder(self, rows: list[int]) -> None:
        self._keys = [self._keys[i] for i in rows]
        self._frames = self._frames[rows]
        self._state = {k: np.take(v, rows, axis=_batch_axis(k)) for k, v in self._state.items()}

    def _join(self, joins: list[_Join]) -> None:
        n = max(len(j.tokens) for j in joins)
        tokens = np.full((len(joins), n), PAD_ID, dtype=np.int64)
        for i, j in enumerate(joins):
            tokens[i, : len(j.tokens)] = j.tokens
        enc = self.runtime.encode(tokens, np.array([j.lang for j in joins], dtype=np.int64))
        L, b, H, _, D = enc["cross_k"].shape
        T = self._state["cache_k"].shape[3] if self._keys else 0
        new = {name: enc[name] for name in MEMORY}
        new.update(cache_k=np.zeros((L, b, H, T, D), np.float32), cache_v=np.zeros((L, b, H, T, D), np.float32),
                   cache_bias=np.full((b, 1, 1, T), NEG, np.float32), kappa=enc["kappa0"],
                   ahead=enc["ahead0"], pos=np.zeros(b, np.int64), frame=np.zeros((b, STEP_VALUES), np.float32))  # BOS: origin, counter 0
        if self._keys:
            n_old = self._state["mem_bias"].shape[-1]
            width = max(n, n_old)
            for state in (self._state, new):
                _pad_tokens(state, width)
            new = {k: np.concatenate([self._state[k], v], axis=_batch_axis(k)) for k, v in new.items()}
        self._state = new
        self._keys += [j.key for j in joins]
        self._frames = np.concatenate([self._frames, np.zeros(b, np.int64)])

    def _grow_subset(self, rows: list[int], grown: dict[str, np.ndarray], frames: np.ndarray) -> None:
        """Only some rows stepped: the others get a masked column so the cache stays rectangular."""
        s = self._state
        L, B, H, T, D = s["cache_k"].shape
        for name in ("cache_k", "cache_v"):
            full = np.concatenate([s[name], np.zeros((L, B, H, 1, D), np.float32)], axis=3)
            full[:, rows] = grown[name]
            s[name] = full
        bias = np.concatenate([s["cache_bias"], np.full((B, 1, 1, 1), NEG, np.float32)], axis=3)
        bias[rows] = grown["cache_bias"]
        s["cache_bias"] = bias
        for name in ("kappa", "pos", "ahead"):
            s[name][rows] = grown[name]
        s["frame"][rows] = frames
        self._frames[rows] += 1


def generated_confidence(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A generated frame (50, 3) → (points, confidence): 1 where the model placed a joint, 0 (and the
    point zeroed, the PoseSequence convention) where it said "missing" (within MISSING_RADIUS of the
    neck). A hand is seen or missing as a whole, by its median point, so its fingers do not flicker."""
    dist = np.linalg.norm(points, axis=-1)
    conf = (dist >= MISSING_RADIUS).astype(np.float32)
    conf[NECK] = 1.0  # the origin by construction
    for hand in (LEFT_HAND_SLICE, RIGHT_HAND_SLICE):
        conf[hand] = float(np.median(dist[hand]) >= MISSING_RADIUS)
    return np.where(conf[:, None] > 0, points, 0.0).astype(np.float32), conf


def _batch_axis(name: str) -> int:
    return 1 if name in ("cross_k", "cross_v", "cache_k", "cache_v") else 0


def _pad_tokens(state: dict[str, np.ndarray], width: int) -> None:
    """Pad memory along the token axis to `width` (zeros, masked)."""
    n = state["mem_bias"].shape[-1]
    if n == width:
        return
    extra = width - n
    for name in ("cross_k", "cross_v"):
        a = state[name]
        state[name] = np.concatenate([a, np.zeros((*a.shape[:3], extra, a.shape[4]), a.dtype)], axis=3)
    b = state["mem_bias"]
    state["mem_bias"] = np.concatenate([b, np.full((*b.shape[:3], extra), NEG, b.dtype)], axis=3)
