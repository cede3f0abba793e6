"""Measuring the lift: real 3D sign motion → 2D with noise and dropped points → lift → compare.

The real motion is the bundled fingerspelling lexicon (MediaPipe recordings carrying 3D). The
comparison aligns each frame by a similarity transform (Procrustes: rotation, scale, translation;
no reflection, so a mirrored depth still counts as an error) and reports MPJPE in shoulder widths,
and the error of each clip's bone lengths against the recording's median bone lengths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from engines.formats.openpose import Keypoints2D
from engines.formats.posefile import LEXICON_DEPTH, MediaPipeDepth, read_pose
from engines.sequence import PoseSequence
from engines.skeleton import LIMBS, bone_lengths
from training.lift_stages import LIMB_CHILD, LIMB_PARENT
MIN_BONE = 0.05  # shoulder widths: shorter bones (body wrist → hand wrist) have no meaningful relative error


# The recordings' body depth is MediaPipe's, in its own units (DATA.md). The reference takes the one
# lexicon depth (posefile.LEXICON_DEPTH, chosen by arm symmetry and MediaPipe's world landmarks:
# docs/data.md, pose contract); `depth` lets a caller measure against another.
REFERENCE_DEPTH = LEXICON_DEPTH  # one depth definition (docs/data.md, pose contract)
# Points MediaPipe itself was unsure of are no ground truth (a body wrist at confidence 0.02 can lie
# a shoulder width from its hand's wrist): the reference treats them as missing.
REFERENCE_MIN_CONFIDENCE = 0.5
# Nor are points out of a person's reach: MediaPipe's hand tracker sometimes leaves a hand many
# shoulder widths off-frame at confidence 1. Shoulder + arm + hand ≈ 0.5 + 0.85 + 0.7 + 0.35.
REFERENCE_REACH = 2.5  # shoulder widths from the neck


def lexicon_clips(limit: int, seed: int = 0, depth: MediaPipeDepth = REFERENCE_DEPTH) -> Iterator[tuple[str, PoseSequence]]:
    """Distinct recordings of the bundled fingerspelling lexicon, in an order shuffled by `seed`."""
    from engines.lexicon import bundled_lexicon_dir

    paths = sorted(bundled_lexicon_dir().glob("*/*.pose"))
    for i in np.random.default_rng(seed).permutation(len(paths))[:limit]:
        seq = read_pose(paths[i], depth)
        ok = (seq.confidence >= REFERENCE_MIN_CONFIDENCE) & (np.linalg.norm(seq.frames, axis=-1) <= REFERENCE_REACH)
        conf = np.where(ok, seq.confidence, 0.0)
        yield f"{paths[i].parent.name}_{paths[i].stem}", PoseSequence(seq.frames, conf, seq.fps)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in front of the signer, looking at the neck."""

    distance: float = 8.0  # shoulder widths (≈ 3 m for a 0.38 m shoulder width)
    pixels_per_unit: float = 150.0  # at the neck's depth
    size: int = 640


def project(seq: PoseSequence, name: str, rng: np.random.Generator, noise_px: float = 2.0, drop: float = 0.1,
            camera: Camera = Camera()) -> Keypoints2D:
    """Canonical 3D → the 2D keypoints a detector would give: perspective, pixel noise, lost points."""
    depth = camera.distance - seq.frames[..., 2]  # z points towards the viewer
    f = camera.pixels_per_unit * camera.distance
    x = camera.size / 2 + f * seq.frames[..., 0] / depth
    y = camera.size / 2 - f * seq.frames[..., 1] / depth
    points = np.stack([x, y], axis=-1) + rng.normal(0.0, noise_px, size=x.shape + (2,))
    conf = np.where(seq.confidence > 0, rng.uniform(0.6, 1.0, size=x.shape), 0.0)
    conf[rng.random(size=x.shape) < drop] = 0.0
    return Keypoints2D(points, conf, seq.fps, name)


def _similarity_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pred (N, 3) moved by the rotation, scale and translation that best fit gt (Umeyama)."""
    mp, mg = pred.mean(axis=0), gt.mean(axis=0)
    p, g = pred - mp, gt - mg
    u, s, vt = np.linalg.svd(p.T @ g)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    scale = (s * np.diag(fix)).sum() / max((p**2).sum(), 1e-12)
    return scale * p @ rot + mg


def mpjpe(pred: PoseSequence, gt: PoseSequence, align: bool = True) -> float:
    """Mean per-joint position error over the joints both sequences see, in gt units.

    pred and gt must be frame-aligned. `align`: per-frame similarity alignment first (PA-MPJPE).
    """
    errors = []
    for t in range(len(gt)):
        both = (pred.confidence[t] > 0) & (gt.confidence[t] > 0)
        if both.sum() < 4:
            continue
        p, g = pred.frames[t, both].astype(np.float64), gt.frames[t, both].astype(np.float64)
        if align:
            p = _similarity_align(p, g)
        errors.append(np.linalg.norm(p - g, axis=-1))
    return float(np.concatenate(errors).mean()) if errors else float("nan")


def bone_lengths_of(seq: PoseSequence) -> np.ndarray:
    """(49,) median length of each limb over the frames that see both its ends (NaN if none)."""
    seen = (seq.confidence[:, LIMB_PARENT] > 0) & (seq.confidence[:, LIMB_CHILD] > 0)
    length = bone_lengths(seq.frames)
    return np.array([np.median(length[seen[:, k], k]) if seen[:, k].any() else np.nan for k in range(len(LIMBS))])


def bone_length_error(pred: PoseSequence, gt: PoseSequence) -> tuple[float, float]:
    """(mean absolute error in gt units, mean relative error) over limbs both see, gt ≥ MIN_BONE long."""
    p, g = bone_lengths_of(pred), bone_lengths_of(gt)
    ok = np.isfinite(p) & np.isfinite(g) & (g >= MIN_BONE)
    if not ok.any():
        return float("nan"), float("nan")
    err = np.abs(p[ok] - g[ok])
    return float(err.mean()), float((err / g[ok]).mean())


def select(seq: PoseSequence, frames: np.ndarray) -> PoseSequence:
    """The given frames of a sequence (a lift drops pruned frames; compare like with like)."""
    return PoseSequence(seq.frames[frames], seq.confidence[frames], seq.fps)


def flat(kp: Keypoints2D) -> PoseSequence:
    """The baseline a lift must beat: the 2D points with zero depth, in canonical space."""
    from engines.canonical import image_to_canonical

    pts = np.concatenate([kp.points, np.zeros(kp.points.shape[:2] + (1,), np.float32)], axis=-1)
    return PoseSequence(image_to_canonical(pts, kp.confidence), kp.confidence, kp.fps)
