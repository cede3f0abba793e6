"""OpenPose JSON folders: one file per frame, into 2D keypoint sequences of our 50 joints, and back.

A clip is a folder of `*.json` files taken in natural name order (`f2` before `f10`). Each file
holds `people`; the first person's `pose_keypoints_2d` (BODY_25: 25 × x, y, confidence = 75
values) gives our 8 body joints (BODY_25 indices 0-7), and `hand_left_keypoints_2d` /
`hand_right_keypoints_2d` (21 × 3 = 63 values each) give the hands.

Stated policies (counted, never silent):
- a frame with no people becomes an all-zero-confidence frame (`Keypoints2D.empty_frames`);
- a NaN or infinite value makes its point missing (`Keypoints2D.repaired`);
- a hand list that is empty or absent (OpenPose run without `--hand`) is a hand not tracked.
Anything else malformed (empty file, invalid JSON, wrong keypoint counts, non-numbers) raises
`PoseFormatError` naming the file and the frame.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import PoseFormatError
from engines.skeleton import (
    LEFT_HAND_SLICE,
    NUM_BODY,
    NUM_JOINTS,
    OPENPOSE_BODY,
    OPENPOSE_BODY_POINTS,
    OPENPOSE_HAND_POINTS,
    RIGHT_HAND_SLICE,
)

_BODY_VALUES = OPENPOSE_BODY_POINTS * 3  # 75
_HAND_VALUES = OPENPOSE_HAND_POINTS * 3  # 63
_HANDS = (("hand_left_keypoints_2d", LEFT_HAND_SLICE), ("hand_right_keypoints_2d", RIGHT_HAND_SLICE))


@dataclass
class Keypoints2D:
    """A clip of 2D keypoints of our 50 joints, as a detector saw them.

    points (T, 50, 2) float32 in image pixels (x right, y down); confidence (T, 50) in [0, 1],
    0 = missing (its coordinates are 0 and mean nothing); fps; `source` names where it came from.
    `empty_frames` counts frames in which nobody was detected; `repaired` counts points that were
    NaN/infinite and were marked missing.
    """

    points: np.ndarray
    confidence: np.ndarray
    fps: float
    source: str
    empty_frames: int = 0
    repaired: int = 0

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32)
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        if self.points.ndim != 3 or self.points.shape[1:] != (NUM_JOINTS, 2):
            raise ValueError(f"points must be (T, {NUM_JOINTS}, 2), got {self.points.shape}")
        if self.confidence.shape != self.points.shape[:2]:
            raise ValueError(f"confidence must be {self.points.shape[:2]}, got {self.confidence.shape}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        bad = ~np.isfinite(self.points).all(axis=-1) | ~np.isfinite(self.confidence)
        if bad.any():
            self.repaired += int(bad.sum())
        conf = np.where(bad, 0.0, np.clip(np.nan_to_num(self.confidence), 0.0, 1.0))
        self.confidence = conf.astype(np.float32)
        self.points = np.where((conf <= 0)[..., None], 0.0, self.points).astype(np.float32)

    def __len__(self) -> int:
        return len(self.points)


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders embedded numbers by value: `f2` before `f10`."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def frame_files(folder: str | Path) -> list[Path]:
    """The JSON frame files of a clip folder in natural name order."""
    return sorted(Path(folder).glob("*.json"), key=lambda p: natural_key(p.name))


def read_openpose_folder(folder: str | Path, fps: float = 25.0) -> Keypoints2D:
    """Read a folder of OpenPose JSON frames (first person of each frame) into `Keypoints2D`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PoseFormatError(folder, None, "not a folder of OpenPose JSON frames")
    files = frame_files(folder)
    if not files:
        raise PoseFormatError(folder, None, "no .json frame files")
    points = np.zeros((len(files), NUM_JOINTS, 2), dtype=np.float32)
    conf = np.zeros((len(files), NUM_JOINTS), dtype=np.float32)
    empty = 0
    for i, path in enumerate(files):
        person = _first_person(path, i)
        if person is None:
            empty += 1
            continue
        where = f"frame {i}"
        body = _values(person.get("pose_keypoints_2d"), path, where, "pose_keypoints_2d", _BODY_VALUES, optional=False)
        points[i, :NUM_BODY] = body[list(OPENPOSE_BODY), :2]
        conf[i, :NUM_BODY] = body[list(OPENPOSE_BODY), 2]
        for key, part in _HANDS:
            hand = _values(person.get(key), path, where, key, _HAND_VALUES, optional=True)
            if hand is not None:
                points[i, part] = hand[:, :2]
                conf[i, part] = hand[:, 2]
    return Keypoints2D(points, conf, fps, folder.name, empty_frames=empty)


def _first_person(path: Path, index: int) -> dict | None:
    where = f"frame {index}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PoseFormatError(path, where, f"not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise PoseFormatError(path, where, "empty file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PoseFormatError(path, where, f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
        raise PoseFormatError(path, where, "not an OpenPose frame: expected an object with a `people` list")
    if not doc["people"]:
        return None
    person = doc["people"][0]
    if not isinstance(person, dict):
        raise PoseFormatError(path, where, "people[0] is not an object")
    return person


def _values(raw: object, path: Path, where: str, key: str, expected: int, optional: bool) -> np.ndarray | None:
    """A keypoint list → (n, 3) array of x, y, confidence; None for an absent/empty optional list."""
    if optional and (raw is None or raw == []):
        return None
    if not isinstance(raw, list):
        raise PoseFormatError(path, where, f"people[0].{key} is missing or not a list")
    if len(raw) != expected:
        raise PoseFormatError(path, where, f"people[0].{key} has {len(raw)} values, expected {expected} ({expected // 3} points × x, y, confidence)")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise PoseFormatError(path, where, f"people[0].{key} holds a value that is not a number")
    return np.asarray(raw, dtype=np.float64).reshape(-1, 3)


def write_openpose_folder(kp: Keypoints2D, folder: str | Path, prefix: str | None = None) -> list[Path]:
    """Write one OpenPose JSON file per frame (`{prefix}_{i:012d}_keypoints.json`, OpenPose's naming).

    BODY_25 points we do not carry (8-24) are written as zeros; a frame with no seen point is
    written with an empty `people` list, as OpenPose does when it finds nobody.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = kp.source if prefix is None else prefix
    paths = []
    for i in range(len(kp)):
        seen = kp.confidence[i] > 0
        xyc = np.concatenate([np.where(seen[:, None], kp.points[i], 0.0), kp.confidence[i][:, None]], axis=1)
        people = []
        if seen.any():
            body = np.zeros((OPENPOSE_BODY_POINTS, 3))
            body[list(OPENPOSE_BODY)] = xyc[:NUM_BODY]
            person = {"person_id": [-1], "pose_keypoints_2d": _as_list(body)}
            for key, part in _HANDS:
                person[key] = _as_list(xyc[part])
            people.append(person)
        path = folder / f"{prefix}_{i:012d}_keypoints.json"
        path.write_text(json.dumps({"version": 1.3, "people": people}), encoding="utf-8")
        paths.append(path)
    return paths


def _as_list(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values.ravel()]
