"""Evaluation: DTW-MJE of real inference on a corpus split, overall and per language, the trivial
mean-sequence baseline that gives the numbers a floor to beat, and, with a back-translation judge,
what the judge reads from the generated poses beside what it reads from the reference poses."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from engines.formats.prompt2sign import Record, read_split
from engines.model import load_model
from engines.sequence import PoseSequence
from engines.skeleton import FRAME_VALUES, NUM_JOINTS
from engines.tokenizer import Tokenizer
from training.dtw import dtw_mje
from training.train import Example, corpus_languages, decode, load_split

# The evaluation judge of the current corpus (depth 60, repaired recordings; issue 19). The first
# judge (checkpoints/judge, whose LM both share) reads this corpus's recordings at 10.6 % CER, this one at 3.2 %.
DEFAULT_JUDGE = Path(__file__).parent / "checkpoints" / "judge-eval"


def summarise(scores: list[float], examples: list[Example]) -> dict:
    """Overall mean DTW over sequences, and per language."""
    per: dict[str, list[float]] = {}
    for s, e in zip(scores, examples):
        per.setdefault(e.language, []).append(s)
    return {"dtw": float(np.mean(scores)), "n": len(scores),
            "per_language": {k: {"dtw": float(np.mean(v)), "n": len(v)} for k, v in sorted(per.items())}}


def first_per_language(examples: list[Example], n: int) -> list[Example]:
    """The first n examples of each language (all when n is 0): a stratified, reproducible subset."""
    if not n:
        return examples
    seen: dict[str, int] = {}
    out = []
    for e in examples:
        seen[e.language] = seen.get(e.language, 0) + 1
        if seen[e.language] <= n:
            out.append(e)
    return out


def evaluate_checkpoint(checkpoint: str | Path, corpus: str | Path, split: str = "test", max_frames: int = 400,
                        per_language: int = 0, threads: int = 1, cache: Path | None = None,
                        judge: str | Path | None = None, other_judges: tuple[str | Path, ...] = ()) -> dict:
    """Decode every sequence of a split (own frames, own counter) and score it against the reference;
    with a `judge`, also the back-translation scores of the generated poses beside the reference's
    (`other_judges`: the same poses read by further judges, e.g. the RL reward judge beside the
    evaluation judge, under "backtranslation_other")."""
    torch.set_num_threads(threads)
    checkpoint, corpus = Path(checkpoint), Path(corpus)
    model = load_model(checkpoint)
    tokenizer = Tokenizer.load(checkpoint / "tokenizer.model")
    languages = corpus_languages(corpus, [lang for lang in model.cfg.languages])
    examples = first_per_language(load_split(corpus, languages, split, cache=cache), per_language)
    start = time.perf_counter()
    generated = decode(model, tokenizer, model.cfg.languages, examples, max_frames)
    seconds = time.perf_counter() - start
    result = summarise([dtw_mje(e.steps, g) for e, g in zip(examples, generated)], examples)
    result |= {"split": split, "checkpoint": str(checkpoint), "decode_seconds": round(seconds, 1)}
    if judge is not None:
        result["backtranslation"] = backtranslate_generated(judge, corpus, split, languages, per_language,
                                                            examples, generated)
    if other_judges:
        result["backtranslation_other"] = {str(j): backtranslate_generated(j, corpus, split, languages, per_language,
                                                                           examples, generated) for j in other_judges}
    return result


def backtranslate_generated(judge: str | Path, corpus: Path, split: str, languages: list[str], per_language: int,
                            examples: list[Example], generated: list[np.ndarray]) -> dict:
    """The judge's scores of the generated (T, 151) steps beside those of the reference poses, read
    again from the corpus for their confidences (missing points), which the steps do not keep."""
    from training.backtranslate.evaluate import score_poses

    records: list[Record] = []
    for lang in languages:
        recs = read_split(corpus / lang, split)
        records += recs[:per_language] if per_language else recs
    if [r.text for r in records] != [e.text for e in examples]:
        raise ValueError(f"{corpus}: the {split} split changed while it was evaluated")
    poses = [PoseSequence(g[:, :FRAME_VALUES].reshape(-1, NUM_JOINTS, 3), np.ones((len(g), NUM_JOINTS), np.float32), 25.0)
             for g in generated]
    return score_poses(judge, records, poses) | {"judge": str(judge)}


def mean_sequence(examples: list[Example]) -> np.ndarray:
    """The average sequence: every sequence resampled to the median length, averaged frame by frame."""
    length = int(np.median([len(e.steps) for e in examples]))
    grid = np.linspace(0, 1, length)
    acc = np.zeros((length, FRAME_VALUES))
    for e in examples:
        src = np.linspace(0, 1, len(e.steps))
        acc += np.stack([np.interp(grid, src, e.steps[:, j]) for j in range(FRAME_VALUES)], axis=1)
    counter = np.arange(1, length + 1) / length
    return np.concatenate([acc / len(examples), counter[:, None]], axis=1).astype(np.float32)


def mean_baseline(corpus: str | Path, split: str = "test", languages: list[str] | None = None,
                  cache: Path | None = None, per_language: int = 0) -> dict:
    """DTW of predicting each language's mean training sequence for every input."""
    corpus = Path(corpus)
    langs = corpus_languages(corpus, languages or [])
    train = load_split(corpus, langs, "train", cache=cache)
    test = first_per_language(load_split(corpus, langs, split, cache=cache), per_language)
    means = {lang: mean_sequence([e for e in train if e.language == lang]) for lang in langs}
    scores = [dtw_mje(e.steps, means[e.language]) for e in test]
    return summarise(scores, test) | {"split": split, "model": "mean sequence per language"}
