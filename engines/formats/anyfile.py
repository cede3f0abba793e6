"""Open a pose sequence from any file format we read, chosen by the file's suffix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.errors import PoseFormatError
from engines.formats.posefile import read_pose_and_face
from engines.formats.prompt2sign import parse_skels
from engines.sequence import PoseSequence

SUFFIXES = (".pose", ".skels")


def load_sequence(path: str | Path, index: int = 0, fps: float = 25.0, scale: float = 1.0) -> PoseSequence:
    """A `.pose` file, or sequence number `index` (0-based line) of a `.skels` file."""
    return load_sequence_and_face(path, index, fps, scale)[0]


def load_sequence_and_face(path: str | Path, index: int = 0, fps: float = 25.0,
                           scale: float = 1.0) -> tuple[PoseSequence, np.ndarray | None]:
    """`load_sequence`, and the file's non-manual track (T, C), or None without one (`.skels`
    files carry none)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pose":
        return read_pose_and_face(path)
    if suffix == ".skels":
        count = 0
        try:
            with open(path, encoding="utf-8") as f:
                for count, line in enumerate(f, 1):
                    if count == index + 1:
                        return parse_skels(line, fps, scale, where=(path, count))[0], None
        except FileNotFoundError:
            raise PoseFormatError(path, None, "no such file") from None
        except UnicodeDecodeError as exc:
            raise PoseFormatError(path, f"line {count + 1}", f"not UTF-8 ({exc.reason})") from None
        raise PoseFormatError(path, f"line {index + 1}", f"the file holds only {count} sequences")
    raise PoseFormatError(path, None, f"unknown pose file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
