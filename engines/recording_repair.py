"""Repairing tracked recordings: implausible points out, short gaps interpolated, every change counted.

The letter recordings were tracked by MediaPipe, and trackers fail: some gss recordings put a hand
5× its size or 14 shoulder widths from the shoulder. A model or a judge trained on them learns the
failure. `repair_recording` works in canonical space (unit = shoulder width) on one recording:

1. hand scale: a hand whose palm (wrist → the four finger bases) measures beyond
   HAND_SCALE_RANGE × PALM of an adult hand is rescaled about its own wrist to PALM (the hand
   model's shape survives its scale failures; what is read, the handshape, is kept);
2. reach: a body wrist farther from its shoulder than REACH × (the recording's median upper arm
   + forearm) is dropped, and so is any hand whose points lie beyond the arm's reach plus a hand
   (HAND_REACH), or whose wrist sits away from the body wrist (WRIST_OFFSET);
3. bones: a point whose bone to its parent is BONE_RATIO× longer or shorter than that bone's
   median over the recording is dropped (bones shorter than MIN_BONE are left to rule 2);
4. gaps: a point missing for at most MAX_GAP_SECONDS between two seen frames is linearly
   interpolated (confidence: the lower of the two ends). Longer gaps stay missing.

Thresholds are anatomical, measured on the 20 languages' recordings (docs/data.md, pose contract):
no clean language has a palm over 0.38 or a hand point beyond 1.9 shoulder widths.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from engines.sequence import PoseSequence
from engines.skeleton import (L_ELBOW, L_SHOULDER, L_WRIST, LEFT_HAND, LIMBS, NUM_HAND, R_ELBOW, R_SHOULDER, R_WRIST,
                              RIGHT_HAND)

PALM = 0.28  # median wrist → finger-base distance over all recordings, shoulder widths
HAND_SCALE_RANGE = (0.5, 2.0)
REACH = 1.25
HAND_REACH = 0.5  # a hand's farthest point (fingertip) beyond the wrist, shoulder widths, with margin
WRIST_OFFSET = 0.35  # hand-model wrist vs body-model wrist; clean recordings stay under 0.23
BONE_RATIO = 2.0
MIN_BONE = 0.1
MAX_GAP_SECONDS = 0.2
_BASES = (5, 9, 13, 17)
_ARMS = ((R_SHOULDER, R_ELBOW, R_WRIST, RIGHT_HAND), (L_SHOULDER, L_ELBOW, L_WRIST, LEFT_HAND))


@dataclass
class Repairs:
    """Points changed by `repair_recording`, by rule."""

    hands_rescaled: int = 0  # hand frames (21 points each) rescaled about their wrist
    beyond_reach: int = 0  # points dropped by the reach rules
    bone_outliers: int = 0  # points dropped by the bone-length rule
    interpolated: int = 0  # missing points filled from their neighbours in time

    def __add__(self, other: Repairs) -> Repairs:
        return Repairs(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def total(self) -> int:
        return self.hands_rescaled * NUM_HAND + self.beyond_reach + self.bone_outliers + self.interpolated


def _palm(hand: np.ndarray) -> np.ndarray:
    """(T, 21, 3) → (T,) mean wrist → finger-base distance."""
    return np.linalg.norm(hand[:, _BASES] - hand[:, :1], axis=-1).mean(-1)


def _median_length(pts: np.ndarray, seen: np.ndarray, a: int, b: int) -> float | None:
    ok = seen[:, a] & seen[:, b]
    return float(np.median(np.linalg.norm(pts[ok, b] - pts[ok, a], axis=-1))) if ok.any() else None


def repair_recording(seq: PoseSequence) -> tuple[PoseSequence, Repairs]:
    """The recording with implausible points repaired or dropped and short gaps filled; and what changed."""
    pts, conf = seq.frames.copy(), seq.confidence.copy()
    seen = conf > 0
    out = Repairs()
    hand_slices = [slice(h, h + NUM_HAND) for *_, h in _ARMS]

    # 1. Hand scale.
    for hs in hand_slices:
        whole = seen[:, hs].all(1)
        palm = _palm(pts[:, hs])
        bad = whole & ((palm < HAND_SCALE_RANGE[0] * PALM) | (palm > HAND_SCALE_RANGE[1] * PALM))
        if bad.any():
            wrist = pts[bad, hs.start][:, None]
            pts[bad, hs] = wrist + (pts[bad, hs] - wrist) * (PALM / palm[bad])[:, None, None]
            out.hands_rescaled += int(bad.sum())

    # 2. Reach.
    for shoulder, elbow, wrist, hand in _ARMS:
        upper = _median_length(pts, seen, shoulder, elbow)
        fore = _median_length(pts, seen, elbow, wrist)
        if upper is None or fore is None:
            continue
        reach = REACH * (upper + fore)
        dist = np.linalg.norm(pts[:, wrist] - pts[:, shoulder], axis=-1)
        far = seen[:, wrist] & seen[:, shoulder] & (dist > reach)
        out.beyond_reach += int(far.sum())
        seen[far, wrist] = False
        hs = slice(hand, hand + NUM_HAND)
        hand_dist = np.linalg.norm(pts[:, hs] - pts[:, shoulder, None], axis=-1)
        hand_far = (seen[:, hs] & (hand_dist > reach + HAND_REACH)).any(1) & seen[:, shoulder]
        offset = np.linalg.norm(pts[:, hand, :2] - pts[:, wrist, :2], axis=-1)
        hand_off = seen[:, hand] & seen[:, wrist] & (offset > WRIST_OFFSET)
        drop = hand_far | hand_off
        out.beyond_reach += int(seen[drop, hs].sum())
        seen[drop, hs] = False

    # 3. Bones (median over the recording's frames that see both ends).
    for parent, child in LIMBS:
        ok = seen[:, parent] & seen[:, child]
        if not ok.any():
            continue
        length = np.linalg.norm(pts[:, child] - pts[:, parent], axis=-1)
        median = float(np.median(length[ok]))
        if median < MIN_BONE:
            continue
        bad = ok & ((length > BONE_RATIO * median) | (length < median / BONE_RATIO))
        out.bone_outliers += int(bad.sum())
        seen[bad, child] = False

    # 4. Short gaps.
    max_gap = max(1, int(round(MAX_GAP_SECONDS * seq.fps)))
    conf = np.where(seen, conf, 0.0).astype(np.float32)
    for j in range(pts.shape[1]):
        idx = np.flatnonzero(seen[:, j])
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= max_gap + 1:
                w = ((np.arange(a + 1, b) - a) / (b - a))[:, None]
                pts[a + 1: b, j] = (1 - w) * pts[a, j] + w * pts[b, j]
                conf[a + 1: b, j] = min(conf[a, j], conf[b, j])
                out.interpolated += int(b - a - 1)
    repaired = PoseSequence(pts, conf, seq.fps, repaired=seq.repaired + out.total)
    return repaired, out
