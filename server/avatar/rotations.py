"""Rotation maths on 3×3 matrices and unit quaternions (x, y, z, w as glTF stores them)."""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-9


def normalize(v: np.ndarray) -> np.ndarray:
    if v.ndim == 1:  # one vector: skip the batched machinery, it dominates at this size
        return v / max(math.sqrt(float(v @ v)), _EPS)
    n = np.sqrt(np.einsum("...i,...i->...", v, v))[..., None]
    return v / np.maximum(n, _EPS)


# skew(v) = v @ _SKEW (as 3×3): [v]×, so that a × b = [a]× b in two matrix products.
_SKEW = np.array([[0, 0, 0, 0, 0, -1, 0, 1, 0], [0, 0, 1, 0, 0, 0, -1, 0, 0], [0, -1, 0, 1, 0, 0, 0, 0, 0]], float)
_I3 = np.eye(3)


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices [v]× (..., 3, 3)."""
    return (v @ _SKEW).reshape(v.shape[:-1] + (3, 3))


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross for (..., 3) as [a]× b: two matrix products, not np.cross's axis juggling or nine
    scalar-column operations (call overhead dominates on these tiny arrays)."""
    return (skew(a) @ b[..., None])[..., 0]


def axis_angle(axis: np.ndarray, angle: float | np.ndarray) -> np.ndarray:
    """Rotation matrices from axes (..., 3) and angles (...) (Rodrigues)."""
    axis = normalize(np.asarray(axis, dtype=np.float64))
    if axis.ndim == 1 and np.ndim(angle) == 0:
        x, y, z = (float(c) for c in axis)
        c, s = math.cos(angle), math.sin(angle)
        t = 1 - c
        return np.array([[c + t * x * x, t * x * y - s * z, t * x * z + s * y],
                         [t * x * y + s * z, c + t * y * y, t * y * z - s * x],
                         [t * x * z - s * y, t * y * z + s * x, c + t * z * z]])
    angle = np.asarray(angle, dtype=np.float64)
    if angle.shape != axis.shape[:-1]:
        axis = np.broadcast_to(axis, np.broadcast_shapes(axis.shape, angle.shape + (3,)))
        angle = np.broadcast_to(angle, axis.shape[:-1])
    # Rodrigues as c·I + s·[a]× + (1 − c)·a aᵀ: a few whole-array products, not nine entries.
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    return c * _I3 + s * skew(axis) + (1 - c) * (axis[..., :, None] * axis[..., None, :])


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction a to direction b (no twist about either).

    For unit a, b with v = a × b and c = a · b it is c·I + [v]× + v vᵀ / (1 + c): no trigonometry.
    """
    a, b = normalize(a), normalize(b)
    v = cross(a, b)
    c = np.einsum("...i,...i->...", a, b)
    k = (1.0 / np.maximum(1.0 + c, 1e-12))[..., None, None]
    out = c[..., None, None] * _I3 + skew(v) + k * (v[..., :, None] * v[..., None, :])
    opposite = c < -1 + 1e-9
    if np.any(opposite):  # half a turn about any axis perpendicular to a
        perp = cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0]))
        out = np.where(opposite[..., None, None], axis_angle(perp, np.pi), out)
    return out


def twist_angle(rot: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle of the twist part of `rot` about unit `axis` (swing-twist decomposition).

    With q = (v sin(θ/2), cos(θ/2)) the twist is 2·atan2(q_v·axis, q_w); scaling both by
    4·q_w = (1 + trace)/q_w avoids taking the quaternion (stable below half a turn).
    """
    v = np.stack([rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]], -1)
    w = 1 + np.trace(rot, axis1=-2, axis2=-1)
    if np.logical_and.reduce(w > 0.1, axis=None):
        return 2.0 * np.arctan2(np.einsum("...i,...i->...", v, axis), w)
    q = matrix_to_quat(rot)
    return 2.0 * np.arctan2(np.sum(q[..., :3] * axis, axis=-1), q[..., 3])


def signed_angle(a: np.ndarray, b: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle from a to b about `axis` (both assumed perpendicular to it)."""
    return np.arctan2(np.einsum("...i,...i->...", cross(a, b), axis), np.einsum("...i,...i->...", a, b))


def frame(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns) with x along `primary` and z along `secondary` made perpendicular."""
    x = normalize(primary)
    z = normalize(secondary - np.sum(secondary * x, axis=-1, keepdims=True) * x)
    out = np.empty(x.shape + (3,))
    out[..., 0], out[..., 1], out[..., 2] = x, cross(z, x), z
    return out


def orthonormalize(m: np.ndarray) -> np.ndarray:
    """Gram–Schmidt on the columns: the cheap projection for near-rotations (a blend of close ones)."""
    x = normalize(m[..., :, 0])
    y = m[..., :, 1]
    y = normalize(y - np.einsum("...i,...i->...", x, y)[..., None] * x)
    out = np.empty(m.shape)
    out[..., :, 0], out[..., :, 1], out[..., :, 2] = x, y, cross(x, y)
    return out


def project_to_rotation(m: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (polar decomposition), for averages of rotations."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    return u @ vt


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) → quaternions (..., 4) as x, y, z, w with w ≥ 0."""
    m = np.asarray(m, dtype=np.float64)
    t = np.trace(m, axis1=-2, axis2=-1)
    cands = np.stack([
        np.stack([1 + 2 * m[..., 0, 0] - t, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]], -1),
        np.stack([m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - t, m[..., 1, 2] + m[..., 2, 1], m[..., 0, 2] - m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 + 2 * m[..., 2, 2] - t, m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1], 1 + t], -1),
    ], -2)  # (..., 4 candidates, 4): each is q scaled by 4·q_i; pick the best-conditioned one
    best = np.argmax(np.stack([cands[..., i, i] for i in range(4)], -1), axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = normalize(q)
    return np.where(q[..., 3:] < 0, -q, q)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = normalize(np.asarray(q, dtype=np.float64))
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) of the rotation between rotation matrices a and b (..., 3, 3)."""
    tr = np.einsum("...ij,...ij->...", a, b)  # trace(aᵀ b)
    return np.arccos(np.minimum(np.maximum((tr - 1) / 2, -1.0), 1.0))


def slerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Spherical interpolation between rotation matrices a and b (..., 3, 3) at t in [0, 1]."""
    qa, qb = matrix_to_quat(a), matrix_to_quat(b)
    dot = np.sum(qa * qb, axis=-1, keepdims=True)
    qb = np.where(dot < 0, -qb, qb)
    dot = np.abs(dot)
    t = np.asarray(t, dtype=np.float64)[..., None] if np.ndim(t) else t
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-6
    wa = np.where(small, 1 - t, np.sin((1 - t) * theta) / np.where(small, 1, sin))
    wb = np.where(small, t, np.sin(t * theta) / np.where(small, 1, sin))
    return quat_to_matrix(wa * qa + wb * qb)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in radians between vectors (..., 3)."""
    return np.arctan2(np.linalg.norm(cross(a, b), axis=-1), np.sum(a * b, axis=-1))
