"""The one skeleton: the SignLLM / Prompt2Sign 50-joint layout.

8 upper-body joints in OpenPose BODY_25 order 0-7, then 21 left-hand and 21 right-hand joints in
the OpenPose / MediaPipe hand order. "Left" and "right" are the signer's own sides.
"""

from __future__ import annotations

import numpy as np

BODY_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
)
HAND_POINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)  # fmt: skip

NUM_BODY = len(BODY_NAMES)
NUM_HAND = len(HAND_POINT_NAMES)
NUM_JOINTS = NUM_BODY + 2 * NUM_HAND  # 50
FRAME_VALUES = NUM_JOINTS * 3  # 150
STEP_VALUES = FRAME_VALUES + 1  # a model step: the joint values + the progress counter (engines.counter)

NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(NUM_BODY)
LEFT_HAND = NUM_BODY  # index of the left hand's wrist point; its 21 points follow
RIGHT_HAND = NUM_BODY + NUM_HAND

JOINT_NAMES: tuple[str, ...] = (
    BODY_NAMES
    + tuple(f"left_hand_{n}" for n in HAND_POINT_NAMES)
    + tuple(f"right_hand_{n}" for n in HAND_POINT_NAMES)
)

# Parent of each hand point inside its hand (index into HAND_POINT_NAMES; the wrist has none).
HAND_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)


def _parents() -> tuple[int, ...]:
    body = (NECK, -1, NECK, R_SHOULDER, R_ELBOW, NECK, L_SHOULDER, L_ELBOW)
    # A hand's wrist point hangs off the body wrist of the same side (a near-zero bone).
    left = tuple(L_WRIST if p < 0 else LEFT_HAND + p for p in HAND_PARENTS)
    right = tuple(R_WRIST if p < 0 else RIGHT_HAND + p for p in HAND_PARENTS)
    return body + left + right


PARENTS: tuple[int, ...] = _parents()
ROOT = NECK
# The 49 limbs of the tree as (parent, child) pairs, parents before children.
LIMBS: tuple[tuple[int, int], ...] = tuple((p, j) for j, p in enumerate(PARENTS) if p >= 0)

LEFT_HAND_SLICE = slice(LEFT_HAND, LEFT_HAND + NUM_HAND)
RIGHT_HAND_SLICE = slice(RIGHT_HAND, RIGHT_HAND + NUM_HAND)
BODY_SLICE = slice(0, NUM_BODY)

# Mirror image: swap sides (used for left-handed signers and augmentation).
MIRROR: tuple[int, ...] = (
    (NOSE, NECK, L_SHOULDER, L_ELBOW, L_WRIST, R_SHOULDER, R_ELBOW, R_WRIST)
    + tuple(range(RIGHT_HAND, RIGHT_HAND + NUM_HAND))
    + tuple(range(LEFT_HAND, LEFT_HAND + NUM_HAND))
)

# --- where each joint comes from in other keypoint layouts -------------------------------------

# MediaPipe Holistic POSE_LANDMARKS indices of the 8 body joints; the neck (None) is the
# midpoint of the shoulders (11 and 12), which MediaPipe does not track.
MEDIAPIPE_BODY: tuple[int | None, ...] = (0, None, 12, 14, 16, 11, 13, 15)
MEDIAPIPE_SHOULDERS: tuple[int, int] = (11, 12)
# OpenPose BODY_25 indices 0-7 are our body joints one to one.
OPENPOSE_BODY: tuple[int, ...] = tuple(range(NUM_BODY))
OPENPOSE_BODY_POINTS = 25
OPENPOSE_HAND_POINTS = 21


def bone_lengths(points: np.ndarray) -> np.ndarray:
    """Lengths of the 49 limbs for points shaped (..., 50, 3) → (..., 49)."""
    parents = np.array([p for p, _ in LIMBS])
    children = np.array([c for _, c in LIMBS])
    return np.linalg.norm(points[..., children, :] - points[..., parents, :], axis=-1)
