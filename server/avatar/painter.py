"""The one way from pose frames to pixels: retarget, the non-manual track on the rig, skin, draw.

An `AvatarPainter` holds one avatar and one renderer (one GL context, on the renderer's own
thread: any thread may paint, the GL calls all run there). A pose stream keeps state (the
retargeter's hold, ease and one-frame smoothing), so each stream paints through its own
`PoseStream`; many streams may share one painter (the live video track's channels do).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from server.avatar.face import FaceRig
from server.avatar.gltf import Avatar, load_avatar
from server.avatar.render import AvatarRenderer
from server.avatar.retarget import Retargeter, RetargetSettings
from server.avatar.skinning import SkinMode

if TYPE_CHECKING:
    from server.config import Config

# One input frame: canonical points (50, 3), confidence (50,), non-manual values (or None: neutral).
Pose = tuple[np.ndarray, np.ndarray, np.ndarray | None]
# What is drawn for one frame: world joint transforms (J, 4, 4) and morph target weights (or None).
Drawn = tuple[np.ndarray, np.ndarray | None]


class AvatarPainter:
    """Pose frames of `avatar` → uint8 images (H, W, 3), or (H, W, 4) when `background` is see-through."""

    def __init__(self, avatar: Avatar, width: int, height: int, background: Sequence[float],
                 settings: RetargetSettings = RetargetSettings(), fps: float = 25.0, skinning: SkinMode = "rigid",
                 samples: int = 0) -> None:
        self.avatar, self.settings, self.fps = avatar, settings, fps
        self.face = FaceRig.of_avatar(avatar)  # head turns, brows, mouth and eyelids from the track
        self.renderer = AvatarRenderer(avatar, width, height, tuple(background), skinning, samples)

    @classmethod
    def open(cls, cfg: Config, avatar_path: str | None = None,
             background: Sequence[float] | None = None) -> AvatarPainter:
        """The config's avatar (or `avatar_path`), retargeting settings, video size, fps and
        antialiasing, over `background` (RGBA; default the config's)."""
        v, a = cfg.video, cfg.avatar
        avatar = load_avatar(avatar_path or cfg.resolve(a.path), a.bone_map)
        settings = RetargetSettings(a.min_confidence, a.hold_seconds, a.ease_seconds, a.smoothing, a.finger_limits)
        return cls(avatar, v.width, v.height, v.background if background is None else background, settings,
                   float(v.fps), a.skinning, v.antialias)

    @property
    def rgba(self) -> bool:
        return self.renderer.rgba

    def stream(self) -> PoseStream:
        """A new pose stream (its own retargeter state) painted by this painter."""
        return PoseStream(self)

    def draw(self, world: np.ndarray, morph: np.ndarray | None = None) -> np.ndarray:
        """The picture of world joint transforms (J, 4, 4) and morph target weights (FaceRig.pose)."""
        return self.renderer.render(world, morph)

    def submit(self, world: np.ndarray, morph: np.ndarray | None = None) -> Future:
        """Skin on this thread, draw on the GL thread: the picture, later."""
        return self.renderer.submit(world, morph)

    def paint(self, points: np.ndarray, confidence: np.ndarray, face: np.ndarray | None = None) -> np.ndarray:
        """One pose on its own (a still): no history, so no hold, ease or smoothing."""
        local = Retargeter(self.avatar.rig, self.fps, self.settings).solve(np.asarray(points, np.float64), confidence)
        return self.draw(*self.face.pose(local, face))

    def paint_rest(self) -> np.ndarray:
        """The rest pose (engines/rest.py) as an idle stream settles to it, neutral face."""
        return self.draw(self.avatar.rig.fk(Retargeter(self.avatar.rig, self.fps, self.settings).rest))

    def worlds(self, poses: Iterable[Pose]) -> Iterator[Drawn]:
        """World transforms and morph weights for each pose of a finite stream, one per pose (the
        smoothing's delay taken back at the end)."""
        stream = self.stream()
        for points, confidence, face in poses:
            world = stream.push(points, confidence, face)
            if world is not None:
                yield world
        last = stream.flush()
        if last is not None:
            yield last

    def paint_all(self, poses: Iterable[Pose]) -> Iterator[np.ndarray]:
        """The pictures of a finite stream, one per pose; skins the next frame while the GL thread
        draws this one."""
        pending: Future | None = None
        for drawn in self.worlds(poses):
            job = self.submit(*drawn)
            if pending is not None:
                yield pending.result()
            pending = job
        if pending is not None:
            yield pending.result()

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> AvatarPainter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PoseStream:
    """One pose stream's retargeting state; its frames come out as world transforms of the rig,
    each with the non-manual values of its own pose (the smoothing delays both alike)."""

    def __init__(self, painter: AvatarPainter) -> None:
        self.painter = painter
        self._retargeter = Retargeter(painter.avatar.rig, painter.fps, painter.settings)
        self._faces: deque[np.ndarray | None] = deque()  # the track of the poses not given out yet

    def push(self, points: np.ndarray, confidence: np.ndarray, face: np.ndarray | None = None) -> Drawn | None:
        """The next pose; returns the world transforms and morph weights of the frame the
        retargeter gives out (with smoothing, the previous pose's; None after the very first)."""
        self._faces.append(face)
        local = self._retargeter.push(np.asarray(points, np.float64), confidence)
        return None if local is None else self.painter.face.pose(local, self._faces.popleft())

    def flush(self) -> Drawn | None:
        """The last pose's world transforms and morph weights once the stream ends (None if none
        is held back)."""
        local = self._retargeter.flush()
        return None if local is None else self.painter.face.pose(local, self._faces.popleft())

    def paint(self, points: np.ndarray, confidence: np.ndarray, face: np.ndarray | None = None) -> np.ndarray | None:
        """`push`, drawn: the picture of the frame given out, or None."""
        drawn = self.push(points, confidence, face)
        return None if drawn is None else self.painter.draw(*drawn)
