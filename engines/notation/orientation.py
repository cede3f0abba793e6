"""HamNoSys directions as vectors, and a hand's orientation from extended-finger direction and palm.

Directions are the signer's: l = the signer's left (canonical +x), u = up (+y), o = away from
the body (+z). A compound name (`ol`, `dr`, `ui`) is the normalised sum of its letters; two
directions written in a row mean the one halfway between them.

Palm orientation is relative to the extended-finger direction: its eight symbols name the palm
as for fingers pointing away from the body (`o`: palmd = palm down, palml = palm left); for any
other finger direction that reference is turned along, by the shortest rotation taking `o` to
the finger direction (for fingers pointing at the body, `i`, a half turn about the vertical).
So with fingers up, palmd faces away from the body and palmu towards it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~40x more for one pair)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(v.dot(v)), 1e-9)

_AXES = {"u": (0.0, 1.0, 0.0), "d": (0.0, -1.0, 0.0), "l": (1.0, 0.0, 0.0), "r": (-1.0, 0.0, 0.0),
         "o": (0.0, 0.0, 1.0), "i": (0.0, 0.0, -1.0)}


@lru_cache(maxsize=256)
def vector(name: str) -> tuple[float, float, float]:
    v = np.sum([_AXES[c] for c in name], axis=0)
    return tuple(v / np.linalg.norm(v))


def direction(names: tuple[str, ...]) -> np.ndarray:
    """The unit vector of one direction, or of the one halfway between two."""
    return np.array(_direction(tuple(names)))


@lru_cache(maxsize=1024)
def _direction(names: tuple[str, ...]) -> tuple[float, float, float]:
    v = np.sum([vector(n) for n in names], axis=0)
    n = math.sqrt(float(v.dot(v)))
    return tuple(v / n) if n > 1e-9 else vector(names[0])


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest rotation taking unit a onto unit b (a half turn about y when opposite)."""
    v, c = cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-9:
        return np.diag([-1.0, 1.0, -1.0])  # half a turn about the vertical
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def hand_axes(ext: tuple[str, ...], palm: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(finger direction, palm normal), orthonormal, for HamNoSys ext and palm symbols."""
    f, p = _hand_axes(tuple(ext), tuple(palm))
    return np.array(f), np.array(p)


@lru_cache(maxsize=1024)
def _hand_axes(ext: tuple[str, ...], palm: tuple[str, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    f = direction(ext)
    p = rotation_between(np.array(_AXES["o"]), f) @ direction(palm)
    p = p - p.dot(f) * f
    return tuple(f), tuple(p / np.linalg.norm(p))


def frame(f: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Rows x, y, z of a right hand's local frame in the world for finger direction f, palm p."""
    f = unit(f)
    p = unit(p - p.dot(f) * f)
    return np.array([cross(f, p), f, p])


def rotate(v: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rodrigues rotation of v about a unit axis."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return v * c + cross(axis, v) * s + axis * (axis.dot(v) * (1 - c))


MIRROR = np.array([-1.0, 1.0, 1.0])  # the other side of the body's midline
