"""The judge's data: corpus records as pose examples, and the batches training and evaluation take
of them (deterministic for a seed and step, so a resumed run sees the batches it would have seen).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.formats.prompt2sign import Record, read_split
from engines.typed_config import ConfigError
from engines.langgloss import split_gloss
from training.backtranslate.lm import corpus_spoken


@dataclass
class PoseExample:
    marker: str  # '<ase>'
    text: str
    gloss: str
    frames: np.ndarray  # (T, 50, 3) float16, canonical
    confidence: np.ndarray  # (T, 50) float16


def examples_from(records: list[Record]) -> list[PoseExample]:
    out = []
    for r in records:
        if len(r.sequence) == 0:
            raise ValueError(f"record {r.name!r}: empty pose sequence")
        out.append(PoseExample(split_gloss(r.gloss)[0], r.text, r.gloss,
                               r.sequence.frames.astype(np.float16), r.sequence.confidence.astype(np.float16)))
    return out


def load_examples(corpus: Path, languages: list[str], split: str, per_language: int = 0,
                  max_frames: int = 0) -> list[PoseExample]:
    """A split of every language; `per_language` spreads the kept words over the frequency list."""
    out: list[PoseExample] = []
    for lang in languages:
        records = read_split(corpus / lang, split)
        if max_frames:
            records = [r for r in records if len(r.sequence) <= max_frames]
        if per_language and len(records) > per_language:
            records = [records[i] for i in np.linspace(0, len(records) - 1, per_language).round().astype(int)]
        out += examples_from(records)
    return out


def batch_tensors(examples: list[PoseExample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T, 50, 3) frames, (B, T, 50) confidence, (B,) lengths."""
    lengths = torch.tensor([len(e.frames) for e in examples])
    t = int(lengths.max())
    frames = torch.zeros(len(examples), t, *examples[0].frames.shape[1:])
    conf = torch.zeros(len(examples), t, examples[0].frames.shape[1])
    for i, e in enumerate(examples):
        frames[i, : len(e.frames)] = torch.from_numpy(e.frames.astype(np.float32))
        conf[i, : len(e.frames)] = torch.from_numpy(e.confidence.astype(np.float32))
    return frames, conf, lengths


def batch_at(examples: list[PoseExample], batch_size: int, seed: int, step: int) -> list[PoseExample]:
    """Batch `step` (from 1) of an endless sequence of epochs of similar-length batches in random
    order; a function of (seed, step) alone, so a resumed run sees the batches it would have seen."""
    n_chunks = math.ceil(len(examples) / batch_size)
    epoch, index = divmod(step - 1, n_chunks)
    rng = random.Random(seed * 1_000_003 + epoch)
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].frames), rng.random()))
    chunks = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(chunks)
    return [examples[i] for i in chunks[index]]


def spread(examples: list[PoseExample], n: int) -> list[PoseExample]:
    if n <= 0 or n >= len(examples):
        return examples
    return [examples[i] for i in np.linspace(0, len(examples) - 1, n).round().astype(int)]


def corpus_languages(corpus: Path, wanted: list[str]) -> list[str]:
    found = list(corpus_spoken(corpus))
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ConfigError(f"{corpus}: languages {missing} are not in the corpus (it has {found})")
    return [lang for lang in found if not wanted or lang in wanted]
