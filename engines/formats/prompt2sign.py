"""Prompt2Sign / Progressive Transformers split files: `.text`, `.gloss`, `.skels`, `.files`.

A split `train` in a folder is four line-aligned files: `train.text` (spoken text),
`train.gloss` (gloss), `train.files` (a name per sequence) and `train.skels`: one sequence per
line, T × 151 space-separated numbers, 150 for the 50 joints (x y z each) and the progress counter
i/T (i = 1..T, so it ends at 1.0).

Coordinates in a `.skels` file are canonical units divided by `scale`, a declared parameter:
Prompt2Sign divides its normalized coordinates by 9 and Progressive Transformers by 3; our own
corpus uses 1. `.skels` carries no confidence; the stated policy is that a joint whose three
values are exactly zero is missing, except the neck, which is the origin by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import PoseFormatError
from engines.sequence import PoseSequence
from engines.skeleton import FRAME_VALUES, NECK, NUM_JOINTS

SPLIT_FILES = ("text", "gloss", "skels", "files")
STEP = FRAME_VALUES + 1  # 151 values a frame


@dataclass
class Record:
    """One line of a split: a named sequence with its spoken text and its gloss."""

    name: str
    text: str
    gloss: str
    sequence: PoseSequence


def counter(length: int) -> np.ndarray:
    """The progress counter of a sequence of `length` frames: i/T for i = 1..T."""
    return (np.arange(1, length + 1) / length).astype(np.float32)


def format_skels(seq: PoseSequence, scale: float = 1.0) -> str:
    """One `.skels` line for a sequence."""
    values = np.concatenate([seq.frames.reshape(len(seq), FRAME_VALUES) / scale, counter(len(seq))[:, None]], axis=1)
    return " ".join(f"{v:.6g}" for v in values.ravel())


def parse_skels(line: str, fps: float, scale: float = 1.0, where: tuple[str | Path, int] = ("<string>", 0)) -> tuple[PoseSequence, np.ndarray]:
    """Parse one `.skels` line → (sequence, counter)."""
    path, lineno = where
    try:
        values = np.array(line.split(), dtype=np.float64)
    except ValueError as exc:
        raise PoseFormatError(path, f"line {lineno}", f"not a list of numbers ({exc})") from None
    if len(values) == 0:
        raise PoseFormatError(path, f"line {lineno}", "empty sequence")
    if len(values) % STEP:
        raise PoseFormatError(path, f"line {lineno}", f"{len(values)} values is not a multiple of {STEP} (150 + counter)")
    frames = values.reshape(-1, STEP)
    pts = frames[:, :FRAME_VALUES].reshape(-1, NUM_JOINTS, 3) * scale
    finite = np.isfinite(pts).all(axis=-1)
    conf = (finite & (np.abs(np.nan_to_num(pts)).sum(axis=-1) > 0)).astype(np.float32)
    conf[:, NECK] = finite[:, NECK]
    seq = PoseSequence(np.nan_to_num(pts), conf, fps)
    seq.repaired = int((~finite).sum())
    return seq, frames[:, -1].astype(np.float32)


def write_split(folder: str | Path, split: str, records: list[Record], scale: float = 1.0) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, lines in (
        ("text", [r.text for r in records]),
        ("gloss", [r.gloss for r in records]),
        ("files", [r.name for r in records]),
        ("skels", [format_skels(r.sequence, scale) for r in records]),
    ):
        for i, line in enumerate(lines):
            if "\n" in line:
                raise ValueError(f"{kind} of record {i} ({records[i].name}) holds a line break")
        (folder / f"{split}.{kind}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_split(folder: str | Path, split: str, fps: float = 25.0, scale: float = 1.0) -> list[Record]:
    """Read a split; every file must be present and all must have the same number of lines."""
    folder = Path(folder)
    lines: dict[str, list[str]] = {}
    for kind in SPLIT_FILES:
        path = folder / f"{split}.{kind}"
        try:
            lines[kind] = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise PoseFormatError(path, None, "missing split file") from None
        except UnicodeDecodeError as exc:
            raise PoseFormatError(path, f"byte {exc.start}", "not UTF-8") from None
    counts = {k: len(v) for k, v in lines.items()}
    if len(set(counts.values())) != 1:
        raise PoseFormatError(folder / f"{split}.*", None, f"files disagree on the number of sequences: {counts}")
    skels_path = folder / f"{split}.skels"
    records = []
    for i, (name, text, gloss, skels) in enumerate(zip(lines["files"], lines["text"], lines["gloss"], lines["skels"]), 1):
        seq, _ = parse_skels(skels, fps, scale, where=(skels_path, i))
        records.append(Record(name, text, gloss, seq))
    return records
