"""Back-translation scores: the judge reads pose sequences back into text, and we compare with the
reference text: BLEU-1..4 (sacrebleu), ROUGE-L (rouge-score, F-measure), character error rate and
exact-match word accuracy (fingerspelling is read letter by letter, so CER is the telling one).

On one-word texts BLEU-2..4 have no higher-order n-grams to match and sacrebleu's smoothing decides
them; read CER and accuracy there. `score_poses` is what `signstream eval` calls for a production
engine: the scores of its generated poses beside those of the reference poses (the ceiling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engines.errors import PoseFormatError
from engines.formats.prompt2sign import Record, parse_skels, read_split
from engines.langgloss import marker_language
from engines.sequence import PoseSequence
from engines.skeleton import LEFT_HAND_SLICE, RIGHT_HAND_SLICE
from training.backtranslate.data import PoseExample, batch_tensors, corpus_languages, examples_from
from training.backtranslate.decoder import SignTranslator
from training.backtranslate.judge import load_judge

JUDGE_FPS = 25.0  # the corpus rate the judge was trained at; other rates are resampled to it
# Engines report every point as seen, and SignLLM learns the corpus's missing hand (zeros) as a hand
# collapsed at the neck (|x| ~0.01). The judge was trained with such points marked missing, and
# its hand features divide by the hand's size, so a collapsed hand within this radius of the
# origin (shoulder widths) is marked missing before it is read.
COLLAPSED_HAND = 0.05


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (characters)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class _Whitespace:
    """rouge-score's default tokenizer keeps only [a-z0-9]; ours keeps every script (Greek, Cyrillic...)."""

    def tokenize(self, text: str) -> list[str]:
        return text.lower().split()


def text_scores(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU-1..4, ROUGE-L F (0–100), CER (%) and exact-match accuracy (%) of a corpus of texts."""
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise ValueError("nothing to score: no references")
    out: dict = {}
    for n in range(1, 5):
        out[f"bleu{n}"] = round(BLEU(max_ngram_order=n).corpus_score(hypotheses, [references]).score, 2)
    scorer = RougeScorer(["rougeL"], tokenizer=_Whitespace())
    out["rougeL"] = round(100 * float(np.mean([scorer.score(r, h)["rougeL"].fmeasure
                                              for h, r in zip(hypotheses, references)])), 2)
    chars = sum(len(r) for r in references)
    out["cer"] = round(100 * sum(edit_distance(h, r) for h, r in zip(hypotheses, references)) / max(1, chars), 2)
    out["accuracy"] = round(100 * float(np.mean([h == r for h, r in zip(hypotheses, references)])), 2)
    out["n"] = len(references)
    return out


def translate(judge: SignTranslator, examples: list[PoseExample], batch_size: int = 64) -> list[str]:
    """The judge's reading of each example, in order (batched by length)."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].frames))
    out = [""] * len(examples)
    judge.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        frames, conf, lengths = batch_tensors([examples[i] for i in idx])
        for i, text in zip(idx, judge.generate(frames, conf, lengths, [examples[i].marker for i in idx])):
            out[i] = text
    return out


def evaluate_examples(judge: SignTranslator, examples: list[PoseExample], samples: int = 10) -> dict:
    """Scores overall and per language, with a few readings to look at."""
    hyps = translate(judge, examples)
    refs = [e.text for e in examples]
    result = text_scores(hyps, refs)
    per: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        per.setdefault(marker_language(e.marker), []).append(i)
    result["per_language"] = {lang: {k: v for k, v in text_scores([hyps[i] for i in idx], [refs[i] for i in idx]).items()
                                     if k in ("cer", "accuracy", "n")} for lang, idx in sorted(per.items())}
    result["samples"] = [{"reference": refs[i], "reading": hyps[i]}
                         for i in np.linspace(0, len(refs) - 1, min(samples, len(refs))).round().astype(int)]
    return result


def _as_judge(judge: SignTranslator | str | Path) -> SignTranslator:
    return judge if isinstance(judge, SignTranslator) else load_judge(judge)


def score_poses(judge: SignTranslator | str | Path, records: list[Record], poses: list[PoseSequence]) -> dict:
    """Back-translation scores of generated `poses` beside those of the `records`' own (reference)
    poses, the ceiling. `records[i]` gives the text and the language marker (its gloss) of `poses[i]`.

    For `signstream eval`: `score_poses(judge_dir, records, generated)` → {"generated": {...},
    "reference": {...}}, each with bleu1..4, rougeL, cer, accuracy, n, per_language, samples.
    """
    if len(records) != len(poses):
        raise ValueError(f"{len(poses)} generated sequences for {len(records)} records")
    judge = _as_judge(judge)
    generated = [Record(r.name, r.text, r.gloss, without_collapsed_hands(_at_judge_rate(p, r.name)))
                 for r, p in zip(records, poses)]
    reference = [Record(r.name, r.text, r.gloss, _at_judge_rate(r.sequence, r.name)) for r in records]
    return {"generated": evaluate_examples(judge, examples_from(generated)),
            "reference": evaluate_examples(judge, examples_from(reference))}


def _at_judge_rate(seq: PoseSequence, name: str) -> PoseSequence:
    if not isinstance(seq, PoseSequence):
        raise TypeError(f"{name}: expected a PoseSequence, got {type(seq).__name__}")
    if len(seq) == 0:
        raise ValueError(f"{name}: empty pose sequence")
    return seq.resample(JUDGE_FPS)


def without_collapsed_hands(seq: PoseSequence) -> PoseSequence:
    """The sequence with each frame's hand that lies entirely within COLLAPSED_HAND of the origin
    marked missing (confidence 0, coordinates 0), as the corpus marks a hand it does not see."""
    frames, conf = seq.frames.copy(), seq.confidence.copy()
    for hand in (LEFT_HAND_SLICE, RIGHT_HAND_SLICE):
        collapsed = np.abs(frames[:, hand]).max(axis=(1, 2)) < COLLAPSED_HAND
        frames[collapsed, hand] = 0.0
        conf[collapsed, hand] = 0.0
    return PoseSequence(frames, conf, seq.fps)


def read_poses(poses: Path, lang: str, split: str, records: list[Record]) -> list[PoseSequence]:
    """Generated poses for one language's split: `POSES/<lang>/<split>.skels`, line-aligned with the
    corpus split (what an engine writes with write_split)."""
    path = poses / lang / f"{split}.skels"
    if not path.exists():
        raise PoseFormatError(path, None, "missing: generated poses must mirror the corpus (<lang>/<split>.skels)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != len(records):
        raise PoseFormatError(path, None, f"{len(lines)} sequences, but the corpus split has {len(records)}")
    return [parse_skels(line, JUDGE_FPS, where=(path, i))[0] for i, line in enumerate(lines, 1)]


def evaluate_judge(judge_dir: str | Path, corpus: str | Path, split: str = "test", poses: str | Path | None = None,
                   languages: list[str] | None = None, limit: int = 0, threads: int = 1) -> dict:
    """Score a judge on a corpus split's reference poses, or, with `poses`, generated poses beside them."""
    torch.set_num_threads(threads)
    corpus = Path(corpus)
    judge = load_judge(judge_dir)
    records: list[Record] = []
    generated: list[PoseSequence] = []
    for lang in corpus_languages(corpus, languages or []):
        recs = read_split(corpus / lang, split)
        gen = read_poses(Path(poses), lang, split, recs) if poses is not None else []
        records += recs[:limit] if limit else recs
        generated += gen[:limit] if limit else gen
    meta = {"split": split, "judge": str(judge_dir), "corpus": str(corpus)}
    if poses is not None:
        return score_poses(judge, records, generated) | meta
    return evaluate_examples(judge, examples_from(records)) | meta
