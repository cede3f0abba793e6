"""The canonical pose space, and the conversions into and out of it.

Canonical space is metric-free and body-centred: origin at the neck, unit = shoulder width,
right-handed and OpenGL-like as the viewer sees the signer: x to the viewer's right (the signer's
left), y up, z from the signer towards the viewer.

Image space is what keypoint detectors write: x to the right, y down, z away from the camera.
"""

from __future__ import annotations

import numpy as np

from engines.skeleton import L_SHOULDER, NECK, R_SHOULDER

# Image space → canonical orientation (before centring and scaling): flip y and z.
_IMAGE_AXES = np.array([1.0, -1.0, -1.0], dtype=np.float32)


def shoulder_width(points: np.ndarray, confidence: np.ndarray) -> float:
    """Median distance between the shoulders over the frames where both are seen.

    One scale per sequence, not per frame: a per-frame scale would turn a lean towards the
    camera into a shrinking signer.
    """
    seen = (confidence[:, R_SHOULDER] > 0) & (confidence[:, L_SHOULDER] > 0)
    if not seen.any():
        raise ValueError("no frame shows both shoulders: cannot find the shoulder width")
    widths = np.linalg.norm(points[seen, L_SHOULDER] - points[seen, R_SHOULDER], axis=-1)
    width = float(np.median(widths))
    if not np.isfinite(width) or width <= 1e-9:
        raise ValueError(f"degenerate shoulder width {width!r}")
    return width


def image_to_canonical(points: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Points (T, 50, 3) in image space → canonical space.

    Every frame is centred on its own neck (the body is the reference, so sway of the whole
    figure in the picture is removed); the scale is the sequence's median shoulder width.
    Frames whose neck is unseen are centred on the nearest frame's neck that is.
    """
    oriented = points.astype(np.float32) * _IMAGE_AXES
    return centre_and_scale(oriented, confidence)


def centre_and_scale(points: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Centre y-up points on the neck per frame and divide by the median shoulder width."""
    neck_seen = confidence[:, NECK] > 0
    if not neck_seen.any():
        raise ValueError("no frame shows the neck (or both shoulders): cannot centre the body")
    seen_idx = np.flatnonzero(neck_seen)
    # Nearest seen neck for every frame.
    t = np.arange(len(points))
    nearest = seen_idx[np.abs(t[:, None] - seen_idx[None, :]).argmin(axis=1)]
    centred = points - points[nearest, NECK][:, None, :]
    width = shoulder_width(centred, confidence)
    out = (centred / width).astype(np.float32)
    out[confidence <= 0] = 0.0
    return out


def canonical_to_image(points: np.ndarray, size: int = 512, pixels_per_unit: float = 128.0,
                       neck_at: tuple[float, float] = (0.5, 0.375)) -> np.ndarray:
    """Canonical points → image space of a `size`-pixel square with the neck at `neck_at`."""
    offset = np.array([neck_at[0] * size, neck_at[1] * size, 0.0], dtype=np.float32)
    return (points * _IMAGE_AXES * pixels_per_unit + offset).astype(np.float32)


def image_to_canonical_fixed(points: np.ndarray, size: int = 512, pixels_per_unit: float = 128.0,
                             neck_at: tuple[float, float] = (0.5, 0.375)) -> np.ndarray:
    """Exact inverse of `canonical_to_image` (no re-estimation of neck or scale)."""
    offset = np.array([neck_at[0] * size, neck_at[1] * size, 0.0], dtype=np.float32)
    return ((points - offset) / pixels_per_unit * _IMAGE_AXES).astype(np.float32)
