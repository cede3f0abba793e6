"""Hand shapes from the letter recordings, in a hand-local frame, with HamNoSys modifiers.

Local frame of a right hand: origin the wrist, +y wrist → middle-finger knuckle (the extended-
finger direction of HamNoSys), +z the palm normal (out of the palm), +x = y × z (the thumb side).
Each of the 12 HamNoSys bases takes its palm and fingers from one real recording (the median
frame of a letter whose shape it is; `BASES`), its thumb from another where the thumb modifier
asks for it (`THUMBS`); bending modifiers rotate the finger chains at their joints (the only
part not recorded). Every shape is scaled to the avatar's hand length.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from engines.lexicon import load_alphabets
from engines.notation.body import HAND_LENGTH
from engines.notation.description import Handshape
from engines.skeleton import RIGHT_HAND_SLICE

# HamNoSys base → (sign language, letter) of the recording it is taken from (docs/notation.md).
BASES: dict[str, tuple[str, str]] = {
    "fist": ("sgg", "s"),
    "flathand": ("sgg", "b"),
    "finger2": ("sgg", "g"),
    "finger23": ("sgg", "h"),
    "finger23spread": ("ase", "v"),
    "finger2345": ("sgg", "sch"),
    "pinch12": ("sgg", "f"),
    "pinchall": ("sgg", "o"),
    "pinch12open": ("ase", "f"),
    "cee12": ("sgg", "f"),  # index and thumb replaced by the C's (below)
    "ceeall": ("sgg", "c"),
    "ceeopen": ("ase", "c"),
}
# Chains taken from another recording: base → {finger: (language, letter)}.
MIXED: dict[str, dict[str, tuple[str, str]]] = {"cee12": {"thumb": ("sgg", "c"), "index": ("sgg", "c")}}
THUMBS: dict[str, tuple[str, str]] = {"out": ("sgg", "l"), "across": ("sgg", "s"), "open": ("sgg", "c")}
STRAIGHT_SOURCE = ("sgg", "b")  # straight fingers (extra fingers, straight and bent modifiers)
# The fingers each base extends (its "selected" fingers, which bending modifiers act on).
SELECTED: dict[str, tuple[str, ...]] = {
    "fist": (), "flathand": ("index", "middle", "ring", "little"), "finger2": ("index",),
    "finger23": ("index", "middle"), "finger23spread": ("index", "middle"),
    "finger2345": ("index", "middle", "ring", "little"), "pinch12": ("index",),
    "pinchall": ("index", "middle", "ring", "little"), "pinch12open": ("index",), "cee12": ("index",),
    "ceeall": ("index", "middle", "ring", "little"), "ceeopen": ("index", "middle", "ring", "little"),
}  # fmt: skip
RECORDED_STRAIGHT = ("flathand", "finger2345", "finger2", "finger23", "finger23spread")
CHAINS: dict[str, tuple[int, ...]] = {"thumb": (1, 2, 3, 4), "index": (5, 6, 7, 8), "middle": (9, 10, 11, 12),
                                      "ring": (13, 14, 15, 16), "little": (17, 18, 19, 20)}
FINGER_NAMES = {"thumb": "thumb", "indexfinger": "index", "middlefinger": "middle", "ringfinger": "ring",
                "pinky": "little"}
# Flexion (degrees) at the base, middle and end joint for each bending modifier.
BENDS: dict[str, tuple[float, float, float]] = {
    "straight": (0.0, 0.0, 0.0), "bend": (75.0, 0.0, 0.0), "hook": (0.0, 80.0, 60.0),
    "doublebent": (45.0, 50.0, 20.0), "doublehooked": (20.0, 95.0, 80.0),
}  # fmt: skip


def hand_frame(hand: np.ndarray) -> np.ndarray:
    """Rows x, y, z of the local frame of a right hand's 21 points."""
    y = hand[9] - hand[0]
    y = y / np.linalg.norm(y)
    z = np.cross(hand[5] - hand[0], hand[17] - hand[0])
    z = z - z.dot(y) * y
    z = z / np.linalg.norm(z)
    return np.stack([np.cross(y, z), y, z])


@lru_cache(maxsize=4)
def recorded_hands(letters: Path) -> dict[tuple[str, str], np.ndarray]:
    """(language, letter) → the letter's right hand (21, 3) in the local frame, avatar-sized."""
    alphabets = load_alphabets(letters)
    out = {}
    for key in set(BASES.values()) | set(THUMBS.values()) | {STRAIGHT_SOURCE} | {
            v for m in MIXED.values() for v in m.values()}:
        rec = alphabets[key[0]].letters[key[1]].recording
        assert rec is not None
        seen = rec.confidence[:, RIGHT_HAND_SLICE].min(axis=1) > 0
        hands = rec.frames[seen][:, RIGHT_HAND_SLICE].astype(np.float64)
        hand = np.median(hands, axis=0)  # the held shape (letters hold still)
        local = (hand - hand[0]) @ hand_frame(hand).T
        out[key] = local * (HAND_LENGTH / np.linalg.norm(local[9]))
    return out


def _chain(src: np.ndarray, dst: np.ndarray, finger: str) -> None:
    """Copy a finger chain from `src` onto `dst`, attached at `dst`'s own base point."""
    idx = list(CHAINS[finger])
    dst[idx] = dst[idx[0]] + (src[idx] - src[idx[0]])


def _rotate(points: np.ndarray, pivot: np.ndarray, angle: float) -> np.ndarray:
    """Flex points about the local x axis through `pivot`: +angle turns y towards +z (the palm)."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rel = points - pivot
    y, z = rel[:, 1] * c - rel[:, 2] * s, rel[:, 1] * s + rel[:, 2] * c
    return pivot + np.stack([rel[:, 0], y, z], axis=1)


def bend_finger(hand: np.ndarray, finger: str, bend: str) -> None:
    """Straighten a finger chain, then flex its joints as `bend` says (in place)."""
    idx = list(CHAINS[finger])
    seg = hand[idx]
    # A straight chain along the hand's y axis, keeping the recorded segment lengths.
    lengths = np.linalg.norm(np.diff(seg, axis=0), axis=1)
    straight = seg[0] + np.outer(np.concatenate([[0.0], np.cumsum(lengths)]), [0.0, 1.0, 0.0])
    for joint, angle in enumerate(BENDS[bend]):
        if angle:
            straight[joint + 1:] = _rotate(straight[joint + 1:], straight[joint], angle)
    hand[idx] = straight


@lru_cache(maxsize=512)
def shape_points(shape: Handshape, letters: Path) -> np.ndarray:
    """The right hand's 21 local points of a handshape (cached: shapes repeat across signs)."""
    rec = recorded_hands(letters)
    hand = rec[BASES[shape.base]].copy()
    for finger, source in MIXED.get(shape.base, {}).items():
        _chain(rec[source], hand, finger)
    if shape.thumb:
        _chain(rec[THUMBS[shape.thumb]], hand, "thumb")
    for name in shape.extra_fingers:
        finger = FINGER_NAMES[name]
        if finger == "thumb":
            _chain(rec[THUMBS["out"]], hand, "thumb")
        else:
            bend_finger(hand, finger, "straight")
    if shape.bend:
        for finger in SELECTED[shape.base]:
            if shape.bend == "straight" and shape.base in RECORDED_STRAIGHT:
                continue  # straight in the recording already
            bend_finger(hand, finger, shape.bend)
    for name, bend in shape.finger_bends:
        bend_finger(hand, FINGER_NAMES[name], bend)
    if shape.between is not None:
        hand = 0.5 * (hand + shape_points(shape.between, letters))
    return hand
