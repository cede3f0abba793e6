"""The signer's body for synthesis: fixed head and shoulders, arm lengths, the documented body
sites of HamNoSys, and two-bone arm IK.

The body is the same standard figure the server's rest pose uses (the median frame of the ASL
"B" letter recording: see engines/rest.py), read from the engine's packed letters, so
a synthesized sign and the rest pose share shoulders and head. Sites are points on the body's
front surface in canonical units (origin neck, unit shoulder width, x to the signer's left, y up,
z forward), placed from the nose and shoulders by a simple head model; docs/notation.md lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from engines.lexicon import load_alphabets
from engines.rest import REST_SOURCE
from engines.skeleton import L_ELBOW, L_SHOULDER, L_WRIST, NOSE, NUM_BODY, R_ELBOW, R_SHOULDER, R_WRIST

BODY_SOURCE = REST_SOURCE  # the same standard figure as the rest pose

# name → (centre point, lateral offset of the site on the hand's side). Measured on the bundled
# avatar (server/avatar/assets/signer.glb, shoulder width 0.36 m, shoulder line y = 1.40 m): face
# front z 0.31, chin y 0.33, nose 0.58, eyes 0.69, forehead 0.83, top of head 1.0, half head width
# 0.28, torso front z 0.27-0.29. The retargeting keeps directions only, so the sites and the arm
# proportions below must be the avatar's for a hand placed at the chin to be drawn at its chin.
_SITES: dict[str, tuple[tuple[float, float, float], float]] = {
    "headtop": ((0.0, 1.00, 0.05), 0.12),
    "head": ((0.0, 0.78, 0.30), 0.20),  # the head as a whole: in front of it, at eye-brow height
    "forehead": ((0.0, 0.83, 0.29), 0.10),
    "eyebrows": ((0.0, 0.74, 0.30), 0.09),
    "eyes": ((0.0, 0.69, 0.29), 0.09),
    "nose": ((0.0, 0.58, 0.33), 0.04),
    "nostrils": ((0.0, 0.55, 0.32), 0.03),
    "cheek": ((0.0, 0.52, 0.24), 0.17),
    "ear": ((0.0, 0.62, 0.02), 0.29),
    "earlobe": ((0.0, 0.54, 0.03), 0.28),
    "lips": ((0.0, 0.45, 0.31), 0.06),
    "tongue": ((0.0, 0.45, 0.32), 0.03),
    "teeth": ((0.0, 0.45, 0.31), 0.04),
    "chin": ((0.0, 0.34, 0.29), 0.05),
    "underchin": ((0.0, 0.28, 0.20), 0.04),
    "neck": ((0.0, 0.17, 0.16), 0.07),
    "shouldertop": ((0.0, 0.08, 0.0), 0.50),
    "shoulders": ((0.0, -0.06, 0.28), 0.42),
    "chest": ((0.0, -0.35, 0.29), 0.30),
    "stomach": ((0.0, -0.80, 0.27), 0.30),
    "belowstomach": ((0.0, -1.05, 0.27), 0.30),
    "neutralspace": ((0.0, -0.45, 0.30), 0.22),
    # Sites on the other (non-dominant) arm, held at rest in front of the body.
    "upperarm": ((0.0, -0.35, 0.12), -0.58),
    "elbow": ((0.0, -0.78, 0.05), -0.55),
    "elbowinside": ((0.0, -0.74, 0.15), -0.50),
    "lowerarm": ((0.0, -0.70, 0.35), -0.30),
}
UPPER_ARM, FOREARM = 0.75, 0.667  # the avatar's arm bones, in shoulder widths
HAND_LENGTH = 0.288  # the avatar's wrist → middle-finger knuckle, in shoulder widths
BESIDE = 0.18  # hamlrbeside: this much further out than hamlrat
SIDE_SITES = ("ear", "earlobe", "cheek", "shouldertop")  # surfaces that face sideways
# Distance of the hand from the site's surface: no contact written ("in front of"), close, touch.
DISTANCE = {"": 0.20, "close": 0.07, "touch": 0.0, "brush": 0.0, "interlock": 0.0, "cross": 0.0}
DOMINANT_SIDE = -1.0  # the right hand signs: the signer's right is canonical -x


@dataclass(frozen=True)
class Body:
    """Fixed upper body points (8, 3) and arm bone lengths."""

    points: np.ndarray
    upper: float
    fore: float

    @property
    def nose(self) -> np.ndarray:
        return self.points[NOSE]

    def site(self, name: str, side: str, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """(point on the surface, outward normal) of a body site. `sign` is the hand's side
        (-1 right, +1 left); `side` "at" / "beside" moves the site to that side, "" keeps paired
        sites (ears, cheeks, shoulders) on the hand's side and central sites in the middle."""
        centre, lateral = _SITES[name]
        p = np.array(centre)
        if side or name in SIDE_SITES or name == "neutralspace":
            p[0] += sign * (lateral + (BESIDE if side == "beside" else 0.0))
        normal = np.array([0.0, 0.0, 1.0])
        if name in SIDE_SITES and name != "shouldertop":
            normal = np.array([sign * 0.9, 0.0, 0.45])
        elif name in ("headtop", "shouldertop"):
            normal = np.array([0.0, 1.0, 0.2])
        elif name == "underchin":
            normal = np.array([0.0, -0.8, 0.6])
        return p, normal / np.linalg.norm(normal)

    def shoulder(self, sign: float) -> np.ndarray:
        return self.points[R_SHOULDER if sign < 0 else L_SHOULDER]

    def arms(self, wrists: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """`arm` for many wrists (T, 3) at once → (elbows, reached wrists)."""
        s = self.shoulder(sign)
        a, b = self.upper, self.fore
        d_vec = wrists - s
        d = np.sqrt((d_vec * d_vec).sum(axis=1))[:, None]
        d_c = np.clip(d, abs(a - b) + 1e-3, a + b - 1e-3)
        u = d_vec / np.maximum(d, 1e-9)
        reached = s + u * d_c
        hint = np.array([sign * 0.5, -1.0, -0.35])
        v = hint - (u @ hint)[:, None] * u
        v /= np.maximum(np.sqrt((v * v).sum(axis=1)), 1e-9)[:, None]
        cos_a = (a * a + d_c * d_c - b * b) / (2 * a * d_c)
        elbows = s + a * (cos_a * u + np.sqrt(np.maximum(0.0, 1 - cos_a * cos_a)) * v)
        return elbows, reached

    def arm(self, wrist: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """(elbow, wrist) by two-bone IK for a wanted wrist; out of reach → the nearest reachable."""
        s = self.shoulder(sign)
        a, b = self.upper, self.fore
        d_vec = wrist - s
        d = math.sqrt(float(d_vec.dot(d_vec)))
        d_c = min(max(d, abs(a - b) + 1e-3), a + b - 1e-3)
        u = d_vec / d if d > 1e-9 else np.array([0.0, -1.0, 0.0])
        reached = s + u * d_c
        hint = np.array([sign * 0.5, -1.0, -0.35])  # elbows hang down, out and back
        v = hint - hint.dot(u) * u
        if math.sqrt(float(v.dot(v))) < 1e-6:
            v = np.array([0.0, 0.0, -1.0]) - u[2] * u
        v /= math.sqrt(float(v.dot(v)))
        cos_a = (a * a + d_c * d_c - b * b) / (2 * a * d_c)
        elbow = s + a * (cos_a * u + math.sqrt(max(0.0, 1 - cos_a * cos_a)) * v)
        return elbow, reached


@lru_cache(maxsize=4)
def standard_body(letters: Path) -> Body:
    """The standard figure from the packed letters file (see BODY_SOURCE)."""
    rec = load_alphabets(letters)[BODY_SOURCE[0]].letters[BODY_SOURCE[1]].recording
    assert rec is not None
    pts, conf = rec.frames.astype(np.float64), rec.confidence
    seen = conf > 0
    median = np.array([np.median(pts[seen[:, j], j], axis=0) if seen[:, j].any() else np.zeros(3)
                       for j in range(NUM_BODY)])
    points = median.copy()
    points[[R_ELBOW, R_WRIST, L_ELBOW, L_WRIST]] = 0.0  # set per frame by IK
    return Body(points, UPPER_ARM, FOREARM)
