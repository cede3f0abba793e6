"""PoseSequence: a clip of 50-joint frames in canonical space, and what we do to clips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.skeleton import LEFT_HAND_SLICE, NUM_JOINTS, RIGHT_HAND_SLICE


@dataclass
class PoseSequence:
    """frames (T, 50, 3) float32 in canonical space; confidence (T, 50) in [0, 1]; fps.

    A point with confidence 0 is missing; its coordinates are 0 and mean nothing.
    `repaired` counts the points a reader found NaN/infinite and marked missing.
    """

    frames: np.ndarray
    confidence: np.ndarray
    fps: float
    repaired: int = 0

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.float32)
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        if self.frames.ndim != 3 or self.frames.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"frames must be (T, {NUM_JOINTS}, 3), got {self.frames.shape}")
        if self.confidence.shape != self.frames.shape[:2]:
            raise ValueError(f"confidence must be {self.frames.shape[:2]}, got {self.confidence.shape}")
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        bad = ~np.isfinite(self.frames).all(axis=-1) | ~np.isfinite(self.confidence)
        if bad.any():
            # Policy: a non-finite point becomes a missing point, and is counted.
            self.repaired += int(bad.sum())
            self.confidence = np.where(bad, 0.0, self.confidence).astype(np.float32)
        missing = (self.confidence <= 0)[..., None]
        if missing.any():
            self.frames = np.where(missing, 0.0, self.frames).astype(np.float32)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def duration(self) -> float:
        return len(self) / self.fps

    def slice(self, start: int, stop: int) -> PoseSequence:
        return PoseSequence(self.frames[start:stop].copy(), self.confidence[start:stop].copy(), self.fps)

    def resample(self, fps: float) -> PoseSequence:
        """Linear resampling in time to `fps`, keeping the duration.

        Where one of the two neighbouring frames misses a point, the nearer frame's value (and
        confidence) is taken instead of interpolating towards a meaningless zero.
        """
        if len(self) == 0 or abs(fps - self.fps) < 1e-9:
            return PoseSequence(self.frames.copy(), self.confidence.copy(), fps)
        n = max(1, int(round(len(self) * fps / self.fps)))
        t = np.arange(n) * (self.fps / fps)
        i0 = np.clip(np.floor(t).astype(int), 0, len(self) - 1)
        i1 = np.clip(i0 + 1, 0, len(self) - 1)
        w = (t - i0).astype(np.float32)[:, None]
        c0, c1 = self.confidence[i0], self.confidence[i1]
        both = (c0 > 0) & (c1 > 0)
        lerp = self.frames[i0] * (1 - w[..., None]) + self.frames[i1] * w[..., None]
        nearest = np.where((w < 0.5)[..., None], self.frames[i0], self.frames[i1])
        near_c = np.where(w < 0.5, c0, c1)
        # If the nearer frame misses the point, fall back to the other one.
        nearest = np.where((near_c > 0)[..., None], nearest, np.where((c0 > 0)[..., None], self.frames[i0], self.frames[i1]))
        near_c = np.where(near_c > 0, near_c, np.maximum(c0, c1))
        frames = np.where(both[..., None], lerp, nearest)
        conf = np.where(both, c0 * (1 - w) + c1 * w, near_c)
        return PoseSequence(frames, conf, fps)

    def hands_seen(self) -> np.ndarray:
        """(T,) bool: frames where at least one hand is seen."""
        left = (self.confidence[:, LEFT_HAND_SLICE] > 0).any(axis=1)
        right = (self.confidence[:, RIGHT_HAND_SLICE] > 0).any(axis=1)
        return left | right

    def trim(self) -> PoseSequence:
        """Drop leading and trailing frames in which no hand is seen."""
        seen = np.flatnonzero(self.hands_seen())
        if len(seen) == 0:
            return self.slice(0, 0)
        return self.slice(int(seen[0]), int(seen[-1]) + 1)


def _smoothstep(n: int) -> np.ndarray:
    x = (np.arange(1, n + 1) / (n + 1)).astype(np.float32)
    return x * x * (3 - 2 * x)


def _smooth_around(frames: np.ndarray, conf: np.ndarray, centres: list[int], radius: int) -> None:
    """Gaussian smoothing (sigma 1 frame) of seen points within `radius` of each join, in place."""
    kernel = np.exp(-0.5 * np.arange(-2, 3) ** 2).astype(np.float32)
    n = len(frames)
    near = np.zeros(n, dtype=bool)
    for c in centres:
        near[max(0, c - radius): min(n, c + radius + 1)] = True
    t = np.flatnonzero(near)  # every frame near a join at once (a long word has many joins)
    if len(t) == 0:
        return
    idx = np.clip(t[:, None] + np.arange(-2, 3)[None], 0, n - 1)  # (K, 5)
    weights = kernel[None, :, None] * (conf[idx] > 0)  # (K, 5, J)
    total = weights.sum(axis=1)  # (K, J)
    ok = (total > 0) & (conf[t] > 0)
    avg = (frames[idx] * weights[..., None]).sum(axis=1) / np.maximum(total, 1e-9)[..., None]  # (K, J, 3)
    frames[t] = np.where(ok[..., None], avg, frames[t])


def concatenate(parts: list[PoseSequence], fps: float, transition: float = 0.2) -> PoseSequence:
    """Join clips at `fps` with natural transitions.

    Between two clips, `transition` seconds of frames ease (smoothstep) from the last frame of
    one to the first of the next; a point seen on one side only holds that side's position.
    The frames around each join are then smoothed so velocity has no jump, as spoken-to-signed
    does for its lexicon.
    """
    parts = [p.resample(fps) for p in parts if len(p) > 0]
    if not parts:
        raise ValueError("nothing to concatenate: every part is empty")
    n_trans = max(0, int(round(transition * fps)))
    frames: list[np.ndarray] = [parts[0].frames]
    conf: list[np.ndarray] = [parts[0].confidence]
    joins: list[int] = []
    length = len(parts[0])
    for prev, nxt in zip(parts, parts[1:]):
        a, ca = prev.frames[-1], prev.confidence[-1]
        b, cb = nxt.frames[0], nxt.confidence[0]
        if n_trans:
            w = _smoothstep(n_trans)[:, None]
            both = (ca > 0) & (cb > 0)
            lerp = a[None] * (1 - w[..., None]) + b[None] * w[..., None]
            one = np.where((ca > 0)[:, None], a, b)[None].repeat(n_trans, axis=0)
            frames.append(np.where(both[None, :, None], lerp, one))
            conf.append(ca[None] * (1 - w) + cb[None] * w)
        joins.append(length + n_trans // 2)
        length += n_trans + len(nxt)
        frames.append(nxt.frames)
        conf.append(nxt.confidence)
    out_f = np.concatenate(frames).astype(np.float32)
    out_c = np.concatenate(conf).astype(np.float32)
    _smooth_around(out_f, out_c, joins, radius=n_trans // 2 + 2)
    return PoseSequence(out_f, out_c, fps, repaired=sum(p.repaired for p in parts))
