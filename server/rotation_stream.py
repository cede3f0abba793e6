"""The rotations stream: pose frames → the avatar's local bone rotations, for pages that draw it.

A page that draws the avatar itself (three.js, WebGL) needs per frame only the rotations of the
bones the retargeter drives (38 for a VRM humanoid: shoulders, arms, hands, finger segments), the
hips' displacement, and once, in `ready`, the bone order, the avatar's URL and the server's camera,
so the page's picture is the server's. That is 338 bytes a frame in binary, ~8.5 kB/s at 25 fps,
instead of a render and an encode.

`RotationRig` is loaded once per server (the configured avatar, its retargeting settings, the
ready fields). `RotationStream` is one stream's retargeter: a channel owns one, however many
clients watch (server/channels.py), so retargeting costs once per channel, never once per viewer.
Each `RotationFrame` it makes caches its encodings, so fan-out encodes once per format.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from server.avatar.retarget import Retargeter, RetargetSettings
from server.avatar.rotations import matrix_to_quat
from server.protocol import Format, PoseFrame, RotationFrame

if TYPE_CHECKING:
    from server.avatar.gltf import Avatar
    from server.config import Config

AVATAR_URL = "/avatar.glb"
_SOCKET_BUFFER = 16_384  # bytes unsent on a client's socket above which its frames queue (and the stale drop)
_STEADY = 3  # after this many equal poses in a row the smoothed output no longer changes: reuse it


@dataclass
class RotationRig:
    """What every rotations stream of a server shares: the avatar, how to retarget onto it, and
    the fields its clients' `ready` carries."""

    avatar: Avatar
    settings: RetargetSettings
    fps: float
    bones: tuple[str, ...]  # the bones each frame carries, in order (VRM humanoid names)
    joints: np.ndarray  # (B,) their rig joint indices
    ready: dict[str, Any]

    @classmethod
    def load(cls, cfg: Config) -> RotationRig:
        from server.avatar.gltf import load_avatar
        from server.avatar.render import frame_camera

        a, v = cfg.avatar, cfg.video
        avatar = load_avatar(cfg.resolve(a.path), a.bone_map)
        settings = RetargetSettings(a.min_confidence, a.hold_seconds, a.ease_seconds, a.smoothing, a.finger_limits)
        bones = tuple(Retargeter(avatar.rig, float(v.fps), settings).names)
        joints = np.array([avatar.rig.humanoid[b] for b in bones])
        cam = frame_camera(avatar, v.width, v.height)  # the video's camera: same picture at any size
        ready = {"frames": "rotations", "bones": list(bones), "avatar": {
            "url": AVATAR_URL,
            "joints": [int(j) for j in joints],
            "hips": int(avatar.rig.humanoid.get("hips", -1)),
            "turn": [round(float(x), 6) for x in matrix_to_quat(avatar.turn)],
            "camera": {"position": [round(float(x), 6) for x in cam.position], "yfov": cam.yfov,
                       "znear": cam.znear, "zfar": cam.zfar},
            "background": [float(c) for c in v.background[:3]],
        }}
        return cls(avatar, settings, float(v.fps), bones, joints, ready)


_rigs: dict[str, RotationRig] = {}
_lock = threading.Lock()


def rotation_rig(cfg: Config) -> RotationRig:
    """The server's one RotationRig for `cfg` (loaded on first use: ~0.1 s)."""
    a, v = cfg.avatar, cfg.video
    key = repr((str(cfg.resolve(a.path)), sorted(a.bone_map.items()), a.min_confidence, a.hold_seconds,
                a.ease_seconds, a.smoothing, a.finger_limits, v.fps, v.width, v.height, list(v.background)))
    with _lock:
        rig = _rigs.get(key)
        if rig is None:
            rig = _rigs[key] = RotationRig.load(cfg)
        return rig


class RotationStream:
    """One stream's retargeter: pose frames in, rotation frames out (one frame later: the
    retargeter's smoothing is centred, so frame n comes out when frame n+1 arrives)."""

    def __init__(self, rig: RotationRig) -> None:
        self.rig = rig
        self.retargeter = Retargeter(rig.avatar.rig, rig.fps, rig.settings)
        self.solved = 0  # frames retargeted (the rest were a steady pose, reused)
        self._prev: PoseFrame | None = None
        self._same = 0
        self._last: np.ndarray | None = None  # (B, 4) the last rotations sent
        self._root = np.zeros(3, dtype=np.float32)  # the retargeter moves no hips yet

    def push(self, frame: PoseFrame) -> RotationFrame | None:
        prev, self._prev = self._prev, frame
        same = prev is not None and np.array_equal(prev.points, frame.points) and np.array_equal(prev.confidence, frame.confidence)
        self._same = self._same + 1 if same else 0
        if self._same > _STEADY and self._last is not None:
            quats = self._last  # idle rest pose: nothing to solve
        else:
            local = self.retargeter.push(frame.points.astype(np.float64), frame.confidence)
            self.solved += 1
            if local is None or prev is None:  # the smoothing's first frame
                return None
            quats = self._last = matrix_to_quat(local[self.rig.joints]).astype(np.float32)
        assert prev is not None
        return RotationFrame(prev.unit, prev.segment, prev.frame, prev.t, prev.kind, quats, self._root)

    def rotations(self, frame: PoseFrame) -> np.ndarray:
        """Local rotation matrices (J, 3, 3) of every joint for `frame` alone, unsmoothed (tests, bench)."""
        return self.retargeter.solve(frame.points.astype(np.float64), frame.confidence)


def send_now(transport: asyncio.Transport, frame: RotationFrame, fmt: Format) -> bool:
    """Write `frame` onto a WebSocket client's socket now, as one prebuilt frame; False when it must
    queue instead (the socket is closing, or the client has not taken what was written before).

    A rotations viewer costs one write per frame this way: no task wake-up, no per-client encode,
    no per-client compression (an uncompressed message is allowed under permessage-deflate and leaves
    the compressor's state alone; ordering is kept because the caller writes only when nothing of
    its own is queued). Under load this is what lets one channel feed a thousand viewers.
    """
    if transport.is_closing() or transport.get_write_buffer_size() > _SOCKET_BUFFER:
        return False
    transport.write(frame.ws_frame(fmt))
    return True
