"""The rest pose: the one neutral figure, both arms down, in canonical space.

The motion timeline eases to it between units (server/motion.py); the avatar's retargeter solves
it for its own rest, the pose a missing arm, hand or finger eases to (server/avatar/retarget.py);
the notation synthesizer's body is the same recording (engines/notation/body.py). So the idle
avatar is one figure whichever path draws it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from engines.formats.posefile import read_pose
from engines.lexicon import load_alphabets
from engines.skeleton import (
    L_ELBOW,
    L_SHOULDER,
    L_WRIST,
    LEFT_HAND_SLICE,
    LIMBS,
    NUM_JOINTS,
    R_ELBOW,
    R_SHOULDER,
    R_WRIST,
    RIGHT_HAND_SLICE,
    bone_lengths,
)

# The recording the rest pose is derived from: ASL "B" (a flat hand), signed with the right hand
# while the left arm hangs at rest.
REST_SOURCE = ("ase", "b")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rotation(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rotation matrix turning direction `src` onto direction `dst` (Rodrigues)."""
    a, b = _unit(src), _unit(dst)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-9:  # opposite: half a turn about any axis orthogonal to a
        axis = _unit(np.cross(a, [1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.cross(a, [0.0, 1.0, 0.0]))
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


@lru_cache(maxsize=1)
def rest_pose() -> tuple[np.ndarray, np.ndarray]:
    """A neutral pose, both arms down, in canonical space: (points (50, 3), confidence (50,)).

    Derived once from a real recording (REST_SOURCE): head and shoulders are its median frame;
    arm bone lengths are its median right-arm lengths; both upper arms hang along the direction
    of the recording's resting left upper arm (mirrored for the right); forearms hang straight
    with the hands a little in front of the body; each hand is the recording's flat right hand,
    turned fingers-down with the palm towards the body (mirrored for the left hand).
    """
    entry = load_alphabets()[REST_SOURCE[0]].letters[REST_SOURCE[1]]
    seq = read_pose(entry.path).trim()
    pts, conf = seq.frames, seq.confidence
    seen = conf > 0
    median = np.array([np.median(pts[seen[:, j], j], axis=0) if seen[:, j].any() else np.zeros(3)
                       for j in range(NUM_JOINTS)], dtype=np.float64)
    lengths = {}
    for i, (p, c) in enumerate(LIMBS):
        both = seen[:, p] & seen[:, c]
        lengths[(p, c)] = float(np.median(bone_lengths(pts[both])[:, i])) if both.any() else 0.0
    upper, fore = lengths[(R_SHOULDER, R_ELBOW)], lengths[(R_ELBOW, R_WRIST)]
    hang = _unit(median[L_ELBOW] - median[L_SHOULDER])  # the resting left upper arm
    out = median.copy()
    for shoulder, elbow, wrist, side in ((L_SHOULDER, L_ELBOW, L_WRIST, 1.0), (R_SHOULDER, R_ELBOW, R_WRIST, -1.0)):
        direction = hang * np.array([side, 1.0, 1.0])
        out[elbow] = out[shoulder] + upper * _unit(direction * np.array([1.0, 1.0, 0.0]))
        out[wrist] = out[elbow] + fore * _unit(np.array([0.0, -1.0, 0.35]))
    # The flat right hand, relative to its wrist, turned so the fingers point down.
    hand = median[RIGHT_HAND_SLICE] - median[RIGHT_HAND_SLICE][0]
    turn = _rotation(hand[9], np.array([0.0, -1.0, 0.0]))  # wrist → middle finger base
    right = hand @ turn.T
    out[RIGHT_HAND_SLICE] = out[R_WRIST] + right
    out[LEFT_HAND_SLICE] = out[L_WRIST] + right * np.array([-1.0, 1.0, 1.0])
    return out.astype(np.float32), np.ones(NUM_JOINTS, dtype=np.float32)
